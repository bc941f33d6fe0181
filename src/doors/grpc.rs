//! The gRPC `envoy.service.auth.v3.Authorization/Check` service.
//!
//! Converts a `CheckRequest` into a [`CheckInput`] at the top, runs [`check::decide`] on the
//! current snapshot, and converts the [`Decision`] into a `CheckResponse` in exactly two helpers
//! ([`allow_response`], [`deny_response`]). It never answers with a transport error: a bad
//! request is a deny inside a normal CheckResponse, so Envoy's `failure_mode_allow` never
//! decides for us.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use crate::core::check::{CheckInput, lower_name};
use crate::core::token::Headers;
use crate::decision::{Allow, Answer, Decision, DenyAnswer, DenyKind, Reason};
use crate::observe::metrics::Api;
use crate::ops::state::ServerState;

use super::{clean_request_id, finish, run_sampled};

/// The Authorization service; cheap to clone (shares the server state).
#[derive(Clone)]
pub struct AuthzService {
    state: Arc<ServerState>,
    inflight: Arc<InFlight>,
    /// `listen.max_request_bytes` at start (listeners are not reloaded).
    max_request_bytes: usize,
}

/// Checks being decided right now. The drain waits for these, not for connections: an idle or
/// half-open connection holds no Check and must not hold up the shutdown.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Counts one Check while alive.
pub(crate) struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub(crate) fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once no Check is in flight (at once if none is).
    pub async fn wait_idle(&self) {
        loop {
            // Register before reading the count, so a decrement in between is not missed.
            let idle = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl AuthzService {
    pub fn new(state: Arc<ServerState>) -> Self {
        let max_request_bytes = state.snapshot().config.listen.limits.max_request_bytes;
        AuthzService {
            state,
            inflight: Arc::new(InFlight::default()),
            max_request_bytes,
        }
    }

    /// The in-flight Check counter (shared by clones of this service).
    pub fn inflight(&self) -> Arc<InFlight> {
        self.inflight.clone()
    }

    /// The decode limit for the transport: twice `max_request_bytes`, so a request somewhat over
    /// the limit (the usual case: one huge header) still gets a CheckResponse deny
    /// (`request_too_large`) instead of a gRPC error that leaves the decision to Envoy's
    /// `failure_mode_allow`. tonic reserves the announced message size up front, so this cap is
    /// also what one stream can make the server allocate.
    pub fn max_decoding_message_size(&self) -> usize {
        self.max_request_bytes.saturating_mul(2)
    }

    /// Decide one CheckRequest (also used directly by handler tests).
    pub async fn decide(&self, req: &CheckRequest) -> Decision {
        let http = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let Some(http) = http else {
            return Decision::Deny {
                deny: crate::decision::Deny::new(
                    Reason::InvalidPath,
                    "the CheckRequest has no HTTP request attributes",
                ),
                rule: None,
                client: None,
                token_presented: false,
            };
        };
        // Names from header_map may arrive in any case; lower-case them once here.
        let mut lowered: Vec<(std::borrow::Cow<'_, str>, &str)> = Vec::new();
        let mut headers = Headers::with_capacity(http.headers.len());
        match &http.header_map {
            Some(map) if !map.headers.is_empty() => {
                for h in &map.headers {
                    // raw_value is bytes; a header that is not UTF-8 is kept as "!" (never a token)
                    let v = if h.raw_value.is_empty() {
                        h.value.as_str()
                    } else {
                        std::str::from_utf8(&h.raw_value).unwrap_or("!")
                    };
                    lowered.push((lower_name(&h.key), v));
                }
                for (k, v) in &lowered {
                    headers.push(k, v);
                }
            }
            _ => {
                for (k, v) in &http.headers {
                    headers.push(k, v);
                }
            }
        }
        let peer_certificate = req
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .map_or("", |s| s.certificate.as_str());
        let input = CheckInput {
            method: &http.method,
            host: &http.host,
            path: &http.path,
            headers,
            scheme: &http.scheme,
            peer_certificate,
        };
        super::decide(&self.state, &input).await
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let _inflight = self.inflight.enter();
        let started = Instant::now();
        let (metadata, _, req) = request.into_parts();
        // Sampling first, from the traceparent flag or a ratio draw: an unsampled Check does no
        // span work at all (telemetry.rs).
        let traced = crate::observe::spans::sample_check(
            metadata.get("traceparent").and_then(|v| v.to_str().ok()),
            metadata.get("tracestate").and_then(|v| v.to_str().ok()),
            || http_traceparent(&req),
        );
        let decide = async {
            if prost::Message::encoded_len(&req) > self.max_request_bytes {
                Decision::Deny {
                    deny: crate::decision::Deny::new(
                        Reason::RequestTooLarge,
                        "the CheckRequest is larger than listen.max_request_bytes",
                    ),
                    rule: None,
                    client: None,
                    token_presented: false,
                }
            } else {
                self.decide(&req).await
            }
        };
        let decision = run_sampled(traced, decide, Api::Grpc).await;
        finish(
            &self.state,
            Api::Grpc,
            &decision,
            started.elapsed(),
            request_id(&req),
        );
        Ok(tonic::Response::new(response(decision)))
    }
}

/// The client's `traceparent` among the forwarded request headers (the fallback parent when
/// the gRPC metadata carries none).
fn http_traceparent(req: &CheckRequest) -> Option<&str> {
    let http = req.attributes.as_ref()?.request.as_ref()?.http.as_ref()?;
    if let Some(v) = http.headers.get("traceparent") {
        return Some(v.as_str());
    }
    http.header_map.as_ref().and_then(|m| {
        m.headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case("traceparent"))
            .and_then(|h| {
                if h.raw_value.is_empty() {
                    Some(h.value.as_str())
                } else {
                    std::str::from_utf8(&h.raw_value).ok()
                }
            })
    })
}

/// The request id for logs: the `x-request-id` header, else Envoy's request id attribute.
/// Truncated and restricted to printable ASCII so a caller cannot forge log structure.
fn request_id(req: &CheckRequest) -> &str {
    let Some(http) = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return "";
    };
    let from_header = http
        .headers
        .get("x-request-id")
        .map(String::as_str)
        .or_else(|| {
            http.header_map.as_ref().and_then(|m| {
                m.headers
                    .iter()
                    .find(|h| h.key.eq_ignore_ascii_case("x-request-id"))
                    .and_then(|h| {
                        if h.raw_value.is_empty() {
                            Some(h.value.as_str())
                        } else {
                            std::str::from_utf8(&h.raw_value).ok()
                        }
                    })
            })
        });
    clean_request_id(from_header.unwrap_or(http.id.as_str()))
}

/// Decision → CheckResponse (consumes the decision: its strings move into the answer). The
/// answer itself (status, body, headers) is built once for every door: [`Decision::into_answer`].
pub fn response(decision: Decision) -> CheckResponse {
    match decision.into_answer() {
        Answer::Allow(a) => allow_response(a),
        Answer::Deny(d) => deny_answer_response(d),
    }
}

fn header(key: impl Into<String>, value: impl Into<String>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn string_value(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

/// Allow: set the verified claim headers (overwriting any caller-supplied value), remove the
/// other spoofable ones, and hand `{client, rule, sub}` to Envoy's dynamic metadata.
pub fn allow_response(a: Allow) -> CheckResponse {
    let mut fields = HashMap::with_capacity(3);
    fields.insert("rule".to_owned(), string_value(a.rule));
    if let Some(c) = a.client {
        fields.insert("client".to_owned(), string_value(c));
    }
    if let Some(s) = a.subject {
        fields.insert("sub".to_owned(), string_value(s));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            ..Default::default()
        }),
        dynamic_metadata: Some(Struct { fields }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: a
                .set_headers
                .into_iter()
                .map(|(k, v)| header(k, v))
                .collect(),
            headers_to_remove: a.remove_headers,
            ..Default::default()
        })),
    }
}

/// Deny: gRPC status, HTTP status, JSON body `{code, description}`, `x-authz-reason`, and the
/// RFC 6750 challenge on 401 (and on 403 for role/scope failures).
pub fn deny_response(reason: Reason, token_presented: bool) -> CheckResponse {
    deny_answer_response(DenyAnswer::new(reason, token_presented))
}

/// A [`DenyAnswer`] as a CheckResponse: the gRPC code for the reason's kind, the rest as is
/// (the DPoP challenge and `DPoP-Nonce` of DESIGN §10 included, built in `decision`).
fn deny_answer_response(d: DenyAnswer) -> CheckResponse {
    let (grpc, http) = match d.reason.kind() {
        DenyKind::Unauthenticated => (tonic::Code::Unauthenticated, HttpStatusCode::Unauthorized),
        DenyKind::Forbidden => (tonic::Code::PermissionDenied, HttpStatusCode::Forbidden),
        DenyKind::Unavailable => (tonic::Code::Unavailable, HttpStatusCode::ServiceUnavailable),
        DenyKind::BadRequest => (tonic::Code::InvalidArgument, HttpStatusCode::BadRequest),
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc as i32,
            message: d.reason.code().to_owned(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers: d.headers.into_iter().map(|(k, v)| header(k, v)).collect(),
            body: d.body,
        })),
    }
}

/// RFC 6750 §3 `WWW-Authenticate` value, if this deny carries one, and the same with the DPoP
/// challenge of DESIGN §10 (both built in `decision`, shared by every door).
pub use crate::decision::{challenge, challenge_with};
