//! The HTTP authorization API (DESIGN §9): the front door for proxies that speak HTTP "forward
//! auth" instead of the gRPC Check. Served on `listen.http` (optional) by [`crate::server`], with
//! the Check port's connection cap and request-head deadline.
//!
//! * `/forward-auth` (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`), any
//!   method, matched on the path only (Caddy appends the original query): the original request is
//!   described by `X-Forwarded-Method` / `X-Original-Method`, `X-Forwarded-Uri` /
//!   `X-Original-URI`, `X-Forwarded-Host` / `Host` (the first present wins). No method or no URI
//!   → `400 invalid_request`: the proxy is misconfigured, never guess.
//! * `/ext-authz/<path>` (Envoy `ext_authz` `http_service` with `path_prefix: /ext-authz`): the
//!   request describes itself: its method, the target after the prefix (query included), `Host`.
//!   `X-Forwarded-*` / `X-Original-*` are ignored.
//!
//! * Scheme (the `htu` of a DPoP proof, DESIGN §10): `X-Forwarded-Proto` on both endpoints
//!   (default `http`; Envoy sets it on every request it proxies and `envoy-http.yaml` forwards
//!   it). The peer certificate of the original connection is not available here: an
//!   mTLS-bound token of a client with `certificate: peer` is denied `binding_mismatch`; with
//!   `certificate: xfcc` the `x-forwarded-client-cert` header is read as on the gRPC door.
//! * Traces: a sampled Check's span has `api="forward_auth"` / `"envoy_http"` and its parent
//!   from the request's `traceparent` (and `tracestate`) header.
//!
//! This module only converts: HTTP request → the same [`CheckInput`] the gRPC door builds →
//! [`crate::core::check::decide_bound`] (the one decision path, with the token cache, metrics and the DPoP
//! replay memory) → [`Decision::into_answer`] (the one place answers are built) → HTTP
//! response. Sampling, counting and the log line are [`super::run_sampled`] and
//! [`super::finish`], shared with the gRPC door.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;

use crate::config::ListenLimits;
use crate::core::check::CheckInput;
use crate::core::token::Headers;
use crate::decision::{Answer, Decision, Deny, Reason};
use crate::observe::metrics::Api;
use crate::ops::state::ServerState;

use super::grpc::InFlight;
use super::{clean_request_id, finish, run_sampled};

/// nginx / Traefik / Caddy endpoint.
pub const FORWARD_AUTH: &str = "/forward-auth";
/// Envoy `http_service` `path_prefix`.
pub const EXT_AUTHZ: &str = "/ext-authz";
/// The Envoy response header listing the upstream headers to remove.
pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

#[derive(Clone)]
struct Door {
    state: Arc<ServerState>,
    inflight: Arc<InFlight>,
    /// `listen.max_request_bytes` at start: a longer request head is denied `request_too_large`.
    max_request_bytes: usize,
}

/// The door's router: every path and method reaches [`handle`].
pub fn router(state: Arc<ServerState>, inflight: Arc<InFlight>) -> axum::Router {
    let max_request_bytes = state.snapshot().config.listen.limits.max_request_bytes;
    axum::Router::new().fallback(handle).with_state(Door {
        state,
        inflight,
        max_request_bytes,
    })
}

/// hyper's head buffer for the door: twice `max_request_bytes`, so a head somewhat over the limit
/// still gets a JSON `request_too_large` deny (as on the gRPC port); beyond that hyper answers 431.
pub fn max_head_bytes(limits: &ListenLimits) -> usize {
    limits.max_request_bytes.saturating_mul(2)
}

async fn handle(State(door): State<Door>, req: Request) -> Response {
    // The body is never read: nothing in it describes the request to check.
    let (parts, _body) = req.into_parts();
    let Some((api, target)) = endpoint(&parts.uri) else {
        let mut resp = Response::new(Body::from("not found\n"));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    let _inflight = door.inflight.enter();
    let started = Instant::now();
    // Sampling first (traceparent flag or ratio draw): an unsampled Check does no span work.
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let sampled =
        crate::observe::spans::sample_check(header("traceparent"), header("tracestate"), || None);
    let decision = run_sampled(sampled, door.decide(api, target, &parts), api).await;
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or("", clean_request_id);
    finish(&door.state, api, &decision, started.elapsed(), request_id);
    respond(api, decision)
}

/// Which endpoint, and for `/ext-authz` the original request target (after the prefix, query
/// included, exactly as received). `None`: not an endpoint of this door (404).
fn endpoint(uri: &Uri) -> Option<(Api, &str)> {
    let path = uri.path();
    if path == FORWARD_AUTH {
        return Some((Api::ForwardAuth, ""));
    }
    let rest = path.strip_prefix(EXT_AUTHZ)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    // An empty rest (`/ext-authz`, `/ext-authz?q`) is no origin-form path: `invalid_path`.
    let target = uri
        .path_and_query()
        .and_then(|pq| pq.as_str().get(EXT_AUTHZ.len()..))
        .unwrap_or(rest);
    Some((Api::EnvoyHttp, target))
}

fn bad(reason: Reason, detail: &'static str) -> Decision {
    Decision::Deny {
        deny: Deny::new(reason, detail),
        rule: None,
        client: None,
        token_presented: false,
    }
}

/// The first of `names` present with a non-empty value. The same name twice or a value that is
/// not UTF-8 is an error: the original request would be ambiguous.
fn first_of<'a>(headers: &'a HeaderMap, names: &[&str]) -> Result<Option<&'a str>, &'static str> {
    for name in names {
        let mut values = headers.get_all(*name).iter();
        let Some(v) = values.next() else { continue };
        if values.next().is_some() {
            return Err("a header describing the original request appears twice");
        }
        let v = std::str::from_utf8(v.as_bytes())
            .map_err(|_| "a header describing the original request is not UTF-8")?;
        if !v.is_empty() {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

impl Door {
    async fn decide(&self, api: Api, target: &str, parts: &Parts) -> Decision {
        let head_bytes: usize = parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if head_bytes > self.max_request_bytes {
            return bad(
                Reason::RequestTooLarge,
                "the request head is larger than listen.max_request_bytes",
            );
        }
        let described = match api {
            Api::ForwardAuth => forwarded(&parts.headers),
            _ => own(target, parts),
        };
        let Described {
            method,
            host,
            path,
            scheme,
        } = match described {
            Ok(d) => d,
            Err(detail) => return bad(Reason::InvalidRequest, detail),
        };
        // Names from hyper are lower-case already; a value that is not UTF-8 is kept as "!"
        // (never a token), as on the gRPC door.
        let mut headers = Headers::with_capacity(parts.headers.len());
        for (k, v) in &parts.headers {
            headers.push(k.as_str(), std::str::from_utf8(v.as_bytes()).unwrap_or("!"));
        }
        let input = CheckInput {
            method,
            host,
            path,
            headers,
            scheme,
            // Not available behind an HTTP proxy: `certificate: peer` bindings fail closed.
            peer_certificate: "",
        };
        super::decide(&self.state, &input).await
    }
}

/// The original request as the door's headers describe it.
#[derive(Debug, PartialEq, Eq)]
struct Described<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    scheme: &'a str,
}

/// `X-Forwarded-Proto`, else `http` (DESIGN §9): the scheme a DPoP proof's `htu` is compared
/// with.
fn scheme(h: &HeaderMap) -> Result<&str, &'static str> {
    Ok(first_of(h, &["x-forwarded-proto"])?.unwrap_or("http"))
}

/// `/forward-auth`: method, URI, host and scheme from the proxy's headers (DESIGN §9).
fn forwarded(h: &HeaderMap) -> Result<Described<'_>, &'static str> {
    let method = first_of(h, &["x-forwarded-method", "x-original-method"])?
        .ok_or("no X-Forwarded-Method or X-Original-Method header")?;
    let uri = first_of(h, &["x-forwarded-uri", "x-original-uri"])?
        .ok_or("no X-Forwarded-Uri or X-Original-URI header")?;
    let host = first_of(h, &["x-forwarded-host", "host"])?.unwrap_or("");
    Ok(Described {
        method,
        host,
        path: uri,
        scheme: scheme(h)?,
    })
}

/// `/ext-authz/…`: the request itself (Envoy forwards `Host` as the original `:authority`);
/// only the scheme comes from `X-Forwarded-Proto`, which Envoy sets on what it proxies.
fn own<'a>(target: &'a str, parts: &'a Parts) -> Result<Described<'a>, &'static str> {
    let host = match first_of(&parts.headers, &["host"])? {
        Some(h) => h,
        None => parts.uri.authority().map_or("", |a| a.as_str()),
    };
    Ok(Described {
        method: parts.method.as_str(),
        host,
        path: target,
        scheme: scheme(&parts.headers)?,
    })
}

/// The shared answer as an HTTP response.
fn respond(api: Api, decision: Decision) -> Response {
    match decision.into_answer() {
        Answer::Allow(a) => {
            let mut resp = Response::new(Body::empty());
            let mut remove: Vec<String> = a
                .remove_headers
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect();
            let h = resp.headers_mut();
            for (k, v) in &a.set_headers {
                match (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_bytes(v.as_bytes()),
                ) {
                    (Ok(k), Ok(v)) => {
                        h.insert(k, v);
                    }
                    // Cannot happen for values `check` renders; if it did, the header is
                    // neither set nor left to the caller.
                    _ => remove.push(k.to_ascii_lowercase()),
                }
            }
            if api == Api::EnvoyHttp
                && !remove.is_empty()
                && let Ok(v) = HeaderValue::from_str(&remove.join(","))
            {
                h.insert(HEADERS_TO_REMOVE, v);
            }
            resp
        }
        Answer::Deny(d) => {
            let mut resp = Response::new(Body::from(d.body));
            *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::BAD_REQUEST);
            let h = resp.headers_mut();
            for (k, v) in d.headers {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(HeaderName::from_static(k), v);
                }
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_targets() {
        let at = |s: &str| {
            let uri: Uri = s.parse().unwrap();
            endpoint(&uri).map(|(a, t)| (a, t.to_owned()))
        };
        assert_eq!(at("/forward-auth"), Some((Api::ForwardAuth, String::new())));
        assert_eq!(
            at("/forward-auth?a=/x"),
            Some((Api::ForwardAuth, String::new()))
        );
        assert_eq!(
            at("/ext-authz/api/x?q=1"),
            Some((Api::EnvoyHttp, "/api/x?q=1".into()))
        );
        assert_eq!(
            at("http://h.example/ext-authz/a"),
            Some((Api::EnvoyHttp, "/a".into()))
        );
        assert_eq!(at("/ext-authz?q"), Some((Api::EnvoyHttp, "?q".into())));
        assert_eq!(at("/ext-authzx"), None);
        assert_eq!(at("/forward-auth/x"), None);
        assert_eq!(at("/"), None);
    }

    #[test]
    fn forwarded_headers_precedence_and_errors() {
        let mut h = HeaderMap::new();
        assert!(forwarded(&h).is_err());
        h.insert("x-original-method", HeaderValue::from_static("GET"));
        h.insert("x-original-uri", HeaderValue::from_static("/o"));
        h.insert("host", HeaderValue::from_static("h"));
        let d = |method, host, path, scheme| {
            Ok(Described {
                method,
                host,
                path,
                scheme,
            })
        };
        assert_eq!(forwarded(&h), d("GET", "h", "/o", "http"));
        h.insert("x-forwarded-method", HeaderValue::from_static("POST"));
        h.insert("x-forwarded-uri", HeaderValue::from_static("/f"));
        h.insert("x-forwarded-host", HeaderValue::from_static("fh"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(forwarded(&h), d("POST", "fh", "/f", "https"));
        h.append("x-forwarded-uri", HeaderValue::from_static("/g"));
        assert!(forwarded(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-method", HeaderValue::from_static("GET"));
        h.insert(
            "x-forwarded-uri",
            HeaderValue::from_bytes(b"/\xff").unwrap(),
        );
        assert!(forwarded(&h).is_err());
    }
}
