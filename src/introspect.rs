//! RFC 7662 token introspection, optional per client: revocation checks on verified JWTs and
//! the validation of opaque (non-JWT) tokens.
//!
//! The endpoint comes from the config or the issuer's discovery document
//! (`introspection_endpoint`); the client authenticates with HTTP Basic (client id + secret,
//! RFC 6749 §2.3.1). Answers are cached per token until the token's `exp`, never longer than
//! `cache_ttl`, so a revocation takes effect within that bound. Any failure to get an answer is a
//! deny with `introspection_unavailable` (503): fail closed. The secret is never logged.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::check_fetch_url;

/// A secret from the config: usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A client's `introspection` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// None: from the issuer's discovery document.
    pub endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    /// Accept opaque (non-JWT) tokens for this client.
    pub opaque: bool,
    /// Also ask about verified JWTs (revocation).
    pub check_jwts: bool,
    pub cache_ttl: Duration,
    pub timeout: Duration,
}

/// What the endpoint said.
#[derive(Debug)]
pub enum Answer {
    /// `active: true`, with the response members (RFC 7662 §2.2) as claims.
    Active(Map<String, Value>),
    Inactive,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("introspection: {0}")]
pub struct IntrospectError(pub String);

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
    http: reqwest::Client,
    endpoint: Mutex<Option<String>>,
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
    pub fn new(cfg: IntrospectionConfig, issuer: &str, http: reqwest::Client) -> Self {
        Introspector {
            endpoint: Mutex::new(cfg.endpoint.clone()),
            cfg,
            issuer: issuer.to_owned(),
            http,
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
        let answer = Arc::new(self.ask(token).await?);
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

    async fn endpoint(&self) -> Result<String, IntrospectError> {
        if let Some(e) = self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(e);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let body = self.send(self.http.get(&url)).await?;
        let doc = crate::token::strict_object(&body)
            .map_err(|e| IntrospectError(format!("discovery document: {e}")))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(IntrospectError(
                "discovery document issuer does not equal the configured issuer".into(),
            ));
        }
        let ep = doc
            .get("introspection_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                IntrospectError("the discovery document has no introspection_endpoint".into())
            })?;
        check_fetch_url(ep).map_err(|m| IntrospectError(format!("introspection_endpoint: {m}")))?;
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ep.to_owned());
        Ok(ep.to_owned())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, IntrospectError> {
        let mut resp = req
            .timeout(self.cfg.timeout)
            .send()
            .await
            .map_err(|e| IntrospectError(format!("request failed: {e}")))?;
        if resp.status().as_u16() != 200 {
            return Err(IntrospectError(format!("HTTP {}", resp.status().as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = tokio::time::timeout(self.cfg.timeout, resp.chunk())
            .await
            .map_err(|_| IntrospectError("timed out reading the body".into()))?
            .map_err(|e| IntrospectError(format!("reading the body: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(IntrospectError("response larger than 256 KiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn ask(&self, token: &str) -> Result<Answer, IntrospectError> {
        let endpoint = self.endpoint().await?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&self.cfg.client_id),
            form_encode(self.cfg.client_secret.expose())
        ));
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let resp = self
            .send(
                self.http
                    .post(&endpoint)
                    .header("authorization", format!("Basic {basic}"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(body),
            )
            .await?;
        let doc = crate::token::strict_object(&resp)
            .map_err(|e| IntrospectError(format!("response is not a JSON object: {e}")))?;
        match doc.get("active") {
            Some(Value::Bool(true)) => Ok(Answer::Active(doc)),
            Some(Value::Bool(false)) => Ok(Answer::Inactive),
            _ => Err(IntrospectError("response has no boolean `active`".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_never_print() {
        let s = super::Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(super::form_encode("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
