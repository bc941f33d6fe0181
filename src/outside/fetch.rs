//! The outside world over HTTP: the one outbound client, URL rules, and the discovery
//! documents shared by key sets and introspection.
//!
//! Every outbound request of the process goes through a [`Fetcher`]: one `reqwest::Client`
//! (https-only rules, same-origin redirects, optional extra CA), size-capped GET/POST with one
//! overall timeout. URLs are validated by [`validate_url`] with the same parser that performs the
//! request (`reqwest::Url`), and the request is made on exactly the `Url` that was validated, so
//! what the check saw is what is fetched (a hand-written check and a different fetch-time parser
//! disagreed about `http://host\@127.0.0.1/`). Every URL that is printed or used as a label goes
//! through [`crate::observe::redact`]. This module takes plain parameters and never imports `config`, so
//! `config → fetch` stays one-way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;

use crate::observe::redact;
use serde_json::Value;

/// Why a request (or a URL) was refused. Every `url` in here is already redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("`{url}` {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {message}")]
    Body { url: String, message: String },
    #[error("discovery document issuer `{found}` does not equal the configured issuer")]
    IssuerMismatch { found: String },
    #[error("the discovery document at {url} has no {field}")]
    MissingField { url: String, field: &'static str },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The URL rule (DESIGN §5), for configured and discovered URLs alike:
/// * parsed by `reqwest::Url` (the parser the request uses); the caller fetches the returned `Url`;
/// * no backslash, whitespace or control character anywhere: the WHATWG parser silently turns `\`
///   into `/` and drops tabs and newlines, which is how a validator and a fetcher come to see
///   different hosts;
/// * `https`, or `http` only to a loopback host (`localhost`, 127.0.0.0/8, `::1`);
/// * userinfo (`user:password@`) only with `https`: reqwest sends it as `Authorization: Basic`,
///   which must never travel in clear text. Printed URLs never show it ([`crate::observe::redact`]).
pub fn validate_url(raw: &str) -> Result<Url, FetchError> {
    let invalid = |reason: &str| FetchError::InvalidUrl {
        url: redact(raw),
        reason: reason.to_owned(),
    };
    if raw.contains('\\') {
        return Err(invalid(
            "contains a backslash (URL parsers disagree about where its host ends)",
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or a control character"));
    }
    let url = Url::parse(raw).map_err(|e| invalid(&format!("is not an absolute URL ({e})")))?;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => return Err(invalid("has no host")),
    };
    // The parser has already normalised the host (IPv4 forms, IDNA, `[v6]`).
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let userinfo = !url.username().is_empty() || url.password().is_some();
    match url.scheme() {
        "https" => {}
        "http" if loopback && !userinfo => {}
        "http" if loopback => {
            return Err(invalid(
                "carries credentials (user:password@) over plain http; use https",
            ));
        }
        "http" => {
            return Err(invalid(
                "must use https (http is allowed only for loopback hosts)",
            ));
        }
        _ => return Err(invalid("must be an https URL")),
    }
    Ok(url)
}

/// A successful answer: the body (at most the caller's cap) and its Cache-Control max-age.
#[derive(Debug)]
pub struct Response {
    pub body: Vec<u8>,
    pub max_age: Option<Duration>,
}

/// What an issuer's discovery document says, each URL already validated by [`validate_url`].
#[derive(Debug)]
pub struct Discovery {
    pub jwks_uri: Result<Url, FetchError>,
    pub introspection_endpoint: Result<Url, FetchError>,
}

/// Discovery and JWKS documents are small; 1 MiB leaves room for large key sets.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The one outbound HTTP client with its discovery cache.
pub struct Fetcher {
    http: reqwest::Client,
    /// Issuer → its discovery document, shared by every key set and introspector of the issuer;
    /// dropped by [`Fetcher::forget_discovery`] when a URL from it stops working.
    discovery: Mutex<HashMap<String, Arc<Discovery>>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    /// `ca_pem`: an extra trust anchor bundle (the content of `jwks.ca_file`).
    pub fn new(ca_pem: Option<&[u8]>) -> Result<Self, FetchError> {
        // Redirects only within the same scheme, host and port; never to another host (a
        // redirect is also never a way around the https rule: the scheme must stay the same).
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first();
            let same = first.is_some_and(|f| {
                f.scheme() == attempt.url().scheme()
                    && f.host_str() == attempt.url().host_str()
                    && f.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if same && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let mut b = reqwest::Client::builder()
            .redirect(policy)
            .no_proxy()
            .user_agent(concat!("oidc-authz/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| FetchError::Client(format!("jwks.ca_file: {}", error_chain(&e))))?;
            b = b.tls_certs_merge(certs);
        }
        Ok(Fetcher {
            http: b.build().map_err(|e| FetchError::Client(error_chain(&e)))?,
            discovery: Mutex::new(HashMap::new()),
        })
    }

    /// GET `url` (already validated) with one overall `timeout` and a body cap.
    pub async fn get(
        &self,
        url: &Url,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Response, FetchError> {
        let req = self
            .http
            .get(url.clone())
            .header("accept", "application/json");
        self.send(url, req, timeout, max_bytes).await
    }

    /// POST a form to `url` (already validated) with HTTP Basic client authentication.
    pub async fn post_form(
        &self,
        url: &Url,
        basic: &str,
        form: String,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Response, FetchError> {
        let req = self
            .http
            .post(url.clone())
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form);
        self.send(url, req, timeout, max_bytes).await
    }

    async fn send(
        &self,
        url: &Url,
        req: reqwest::RequestBuilder,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Response, FetchError> {
        let shown = || redact(url.as_str());
        // One deadline for connect, headers and body together: a peer trickling bytes cannot
        // hold a caller longer than `timeout`.
        let work = async {
            // reqwest's message names the full URL (userinfo and query included): drop it, the
            // error names the redacted one.
            let http_err = |e: reqwest::Error| FetchError::Http {
                url: shown(),
                message: error_chain(&e.without_url()),
            };
            let mut resp = req.send().await.map_err(http_err)?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(FetchError::Status {
                    url: shown(),
                    status,
                });
            }
            let max_age = resp
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_max_age);
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(FetchError::TooLarge {
                        url: shown(),
                        limit: max_bytes,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response { body, max_age })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::Timeout {
                url: shown(),
                timeout,
            })?
    }

    /// `{issuer}/.well-known/openid-configuration`, cached per issuer. Its `issuer` must equal
    /// ours; its URLs pass [`validate_url`] like configured ones.
    pub async fn discover(
        &self,
        issuer: &str,
        timeout: Duration,
    ) -> Result<Arc<Discovery>, FetchError> {
        if let Some(d) = lock(&self.discovery).get(issuer) {
            return Ok(d.clone());
        }
        let raw = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let url = validate_url(&raw)?;
        let resp = self.get(&url, timeout, MAX_DOCUMENT_BYTES).await?;
        let doc = crate::json::strict_object(&resp.body).map_err(|e| FetchError::Body {
            url: redact(&raw),
            message: format!("not a JSON object: {e}"),
        })?;
        let found = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if found != issuer {
            return Err(FetchError::IssuerMismatch {
                found: redact(&found.chars().take(200).collect::<String>()),
            });
        }
        let field = |name: &'static str| {
            doc.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| FetchError::MissingField {
                    url: redact(&raw),
                    field: name,
                })
                .and_then(validate_url)
        };
        let d = Arc::new(Discovery {
            jwks_uri: field("jwks_uri"),
            introspection_endpoint: field("introspection_endpoint"),
        });
        lock(&self.discovery).insert(issuer.to_owned(), d.clone());
        Ok(d)
    }

    /// Discover again next time (a URL from the document answered 404: the IdP moved it).
    pub fn forget_discovery(&self, issuer: &str) {
        lock(&self.discovery).remove(issuer);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error with its sources (reqwest hides the useful part in them).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `Cache-Control: max-age=N` (the first one).
pub fn parse_max_age(v: &str) -> Option<Duration> {
    v.split(',').find_map(|d| {
        let (k, val) = d.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            val.trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        for ok in [
            "https://idp.example.org/x",
            "http://127.0.0.1:8080/x",
            "http://[::1]:8080/x",
            "http://localhost/x",
            "https://user:pw@idp.example.org/x",
        ] {
            assert!(validate_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.org/x",
            "http://127.0.0.1.evil.org/x",
            "http://localhost@evil.org/x",
            "file:///etc/passwd",
            "idp.example.org",
            // finding 4: the old validator took the host after the last `@` (127.0.0.1); the
            // fetcher's parser ends the authority at `\` and connects to evil.org over http.
            "http://evil.org:80\\@127.0.0.1/jwks",
            "https://idp.example.org\\@127.0.0.1/jwks",
            "http://user:pw@127.0.0.1/x",
            "http://127.0.0.1/x\tfoo",
            "http://127.0.0.1/x\n",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
        // The URL that passes is the URL that is fetched: its host is the one checked.
        let u = validate_url("https://idp.example.org:8443/a?b=c").unwrap();
        assert_eq!(u.host_str(), Some("idp.example.org"));
        assert_eq!(u.port(), Some(8443));
    }

    #[test]
    fn refused_urls_are_redacted() {
        let e = validate_url("http://u:hunter2@idp.example.org/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn max_age() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_max_age("no-store"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
