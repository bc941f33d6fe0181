//! RFC 7662 token introspection, optional per client: revocation checks on verified JWTs and
//! the validation of opaque (non-JWT) tokens.
//!
//! The endpoint comes from the config or the issuer's discovery document
//! (`introspection_endpoint`); the client authenticates with HTTP Basic (client id + secret,
//! RFC 6749 §2.3.1). Answers are cached per token until the token's `exp`, never longer than
//! `cache_ttl`, so a revocation takes effect within that bound. Any failure to get an answer is a
//! deny with `introspection_unavailable` (503): fail closed. The secret is never logged.

use std::hash::BuildHasher;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use crate::core::model::IntrospectionConfig;
pub use crate::core::ports::Answer;
use crate::core::ports::{BoxFuture, Introspect, IntrospectFailure};
use crate::outside::fetch::{self, Fetcher};

/// Why no answer was had (URLs in it are redacted; never the secret or the token).
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntrospectError {
    #[error("introspection: {0}")]
    Fetch(#[from] fetch::FetchError),
    #[error("introspection: the discovery document's introspection_endpoint: {0}")]
    Endpoint(fetch::FetchError),
    #[error("introspection: response is not a JSON object: {0}")]
    NotJson(String),
    #[error("introspection: response has no boolean `active`")]
    NoActive,
}

struct Cached {
    token: Box<str>,
    answer: Arc<Answer>,
    until: i64,
}

const MAX_CACHED: usize = 10_000;
const MAX_BODY: usize = 256 * 1024;

pub struct Introspector {
    cfg: IntrospectionConfig,
    issuer: String,
    fetcher: Arc<Fetcher>,
    cache: std::sync::RwLock<std::collections::HashMap<u64, Arc<Cached>>>,
    keys: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.issuer)
            .field("client_id", &self.cfg.client_id)
            .finish()
    }
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Introspector {
    pub fn new(cfg: IntrospectionConfig, issuer: &str, fetcher: Arc<Fetcher>) -> Self {
        Introspector {
            cfg,
            issuer: issuer.to_owned(),
            fetcher,
            cache: std::sync::RwLock::new(std::collections::HashMap::new()),
            keys: std::collections::hash_map::RandomState::new(),
        }
    }

    pub fn config(&self) -> &IntrospectionConfig {
        &self.cfg
    }

    fn key(&self, token: &str) -> u64 {
        self.keys.hash_one(token)
    }

    /// Ask about `token` (cached). `token_exp`: the JWT's verified `exp`, if known.
    pub async fn introspect(
        &self,
        token: &str,
        token_exp: Option<i64>,
        now: i64,
    ) -> Result<Arc<Answer>, IntrospectError> {
        let key = self.key(token);
        let hit = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(c) = hit
            && *c.token == *token
            && c.until > now
        {
            return Ok(c.answer.clone());
        }
        let span =
            crate::observe::spans::call_span("oidc_authz.introspect", "issuer", &self.issuer);
        let asked = self.ask(token).await;
        // A fixed description: the error may quote the endpoint's answer.
        span.end(asked.as_ref().err().map(|_| "introspection failed".into()));
        let answer = Arc::new(asked?);
        let exp = match &*answer {
            Answer::Active(m) => m.get("exp").and_then(Value::as_i64).or(token_exp),
            Answer::Inactive => token_exp,
        };
        let ttl = i64::try_from(self.cfg.cache_ttl.as_secs()).unwrap_or(0);
        let until = exp.map_or(now + ttl, |e| e.min(now + ttl));
        if until > now {
            let mut cache = self
                .cache
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, c| c.until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Arc::new(Cached {
                    token: token.into(),
                    answer: answer.clone(),
                    until,
                }),
            );
        }
        Ok(answer)
    }

    /// The configured endpoint, or the one from the issuer's discovery document (cached by the
    /// shared [`Fetcher`]). Either way parsed by [`fetch::validate_url`] and this parsed URL is
    /// the one the client credentials are sent to: never over plain http to a non-loopback host.
    async fn endpoint(&self) -> Result<reqwest::Url, IntrospectError> {
        if let Some(e) = &self.cfg.endpoint {
            return Ok(fetch::validate_url(e)?);
        }
        let d = self
            .fetcher
            .discover(&self.issuer, self.cfg.timeout)
            .await?;
        d.introspection_endpoint.clone().map_err(|e| {
            self.fetcher.forget_discovery(&self.issuer);
            IntrospectError::Endpoint(e)
        })
    }

    async fn ask(&self, token: &str) -> Result<Answer, IntrospectError> {
        let endpoint = self.endpoint().await?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&self.cfg.client_id),
            form_encode(self.cfg.client_secret.expose())
        ));
        let form = format!("token={}&token_type_hint=access_token", form_encode(token));
        let resp = self
            .fetcher
            .post_form(&endpoint, &basic, form, self.cfg.timeout, MAX_BODY)
            .await?;
        let doc = crate::json::strict_object(&resp.body)
            .map_err(|e| IntrospectError::NotJson(e.to_string()))?;
        match doc.get("active") {
            Some(Value::Bool(true)) => Ok(Answer::Active(doc)),
            Some(Value::Bool(false)) => Ok(Answer::Inactive),
            _ => Err(IntrospectError::NoActive),
        }
    }
}

impl Introspect for Introspector {
    fn config(&self) -> &IntrospectionConfig {
        &self.cfg
    }
    fn introspect<'a>(
        &'a self,
        token: &'a str,
        token_exp: Option<i64>,
        now: i64,
    ) -> BoxFuture<'a, Result<Arc<Answer>, IntrospectFailure>> {
        Box::pin(async move {
            Introspector::introspect(self, token, token_exp, now)
                .await
                .map_err(|e| Box::new(e) as IntrospectFailure)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_never_print() {
        let s = crate::core::model::Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(super::form_encode("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
