//! The outcome of a Check: [`Decision`] (allow or deny) and [`Reason`], the stable deny codes.
//!
//! Every deny has exactly one `Reason`; its code is used in the JSON body, the `x-authz-reason`
//! header, the logs and the `reason` label of `oidc_authz_checks_total`. This module owns the one
//! table that maps a reason to its HTTP status and description (DESIGN §6). It does no I/O.

use std::fmt;

/// Why a request was denied. The `code()` strings are a stable, public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    AuthorizationHeaderMissing,
    TokenMalformed,
    UnknownIssuer,
    UnknownAudience,
    AmbiguousClient,
    UnsupportedAlgorithm,
    UnknownKey,
    InvalidSignature,
    TokenExpired,
    TokenNotYetValid,
    InvalidClaims,
    KeysUnavailable,
    InvalidPath,
    MissingRequiredRoles,
    MissingAValidRole,
    InsufficientScope,
    ClaimMismatch,
    ClientNotAllowed,
    NoMatchingRule,
    /// RFC 7662 introspection answered `active: false` (revoked, or unknown to the issuer).
    TokenInactive,
    /// The introspection endpoint could not be asked (fail closed).
    IntrospectionUnavailable,
    /// The CheckRequest is larger than `listen.max_request_bytes` (headers or body too big).
    RequestTooLarge,
    /// DPoP proof missing, duplicated or failing an RFC 9449 §4.3 check (DESIGN §10).
    InvalidDpopProof,
    /// The client demands DPoP server nonces and the proof's is missing or stale.
    UseDpopNonce,
    /// The token's binding (`cnf`) does not fit the request: scheme downgrade, DPoP scheme
    /// with an unbound token, wrong or missing client certificate.
    BindingMismatch,
    /// `binding.require: true` and the token has no `cnf`.
    BindingRequired,
    /// An HTTP-door request that does not describe the original request: `/forward-auth`
    /// without a method or URI header, or such a header twice or not UTF-8 (DESIGN §9).
    InvalidRequest,
}

/// What kind of deny a reason is, which decides the HTTP status, the gRPC code and the challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyKind {
    /// 401: the caller did not prove who it is.
    Unauthenticated,
    /// 403: authenticated (or anonymous) but not allowed.
    Forbidden,
    /// 503: we cannot decide safely right now (fail closed).
    Unavailable,
    /// 400: the request itself is not something we will guess about.
    BadRequest,
}

impl Reason {
    /// Every reason, in table order (used by tests and docs).
    pub const ALL: [Reason; 27] = [
        Reason::AuthorizationHeaderMissing,
        Reason::TokenMalformed,
        Reason::UnknownIssuer,
        Reason::UnknownAudience,
        Reason::AmbiguousClient,
        Reason::UnsupportedAlgorithm,
        Reason::UnknownKey,
        Reason::InvalidSignature,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::InvalidClaims,
        Reason::KeysUnavailable,
        Reason::InvalidPath,
        Reason::MissingRequiredRoles,
        Reason::MissingAValidRole,
        Reason::InsufficientScope,
        Reason::ClaimMismatch,
        Reason::ClientNotAllowed,
        Reason::NoMatchingRule,
        Reason::TokenInactive,
        Reason::IntrospectionUnavailable,
        Reason::RequestTooLarge,
        Reason::InvalidDpopProof,
        Reason::UseDpopNonce,
        Reason::BindingMismatch,
        Reason::BindingRequired,
        Reason::InvalidRequest,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Reason::AuthorizationHeaderMissing => "authorization_header_missing",
            Reason::TokenMalformed => "token_malformed",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::UnknownAudience => "unknown_audience",
            Reason::AmbiguousClient => "ambiguous_client",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::UnknownKey => "unknown_key",
            Reason::InvalidSignature => "invalid_signature",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::InvalidClaims => "invalid_claims",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::InvalidPath => "invalid_path",
            Reason::MissingRequiredRoles => "missing_required_roles",
            Reason::MissingAValidRole => "missing_a_valid_role",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::ClientNotAllowed => "client_not_allowed",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::TokenInactive => "token_inactive",
            Reason::IntrospectionUnavailable => "introspection_unavailable",
            Reason::RequestTooLarge => "request_too_large",
            Reason::InvalidDpopProof => "invalid_dpop_proof",
            Reason::UseDpopNonce => "use_dpop_nonce",
            Reason::BindingMismatch => "binding_mismatch",
            Reason::BindingRequired => "binding_required",
            Reason::InvalidRequest => "invalid_request",
        }
    }

    pub const fn kind(self) -> DenyKind {
        match self {
            Reason::KeysUnavailable | Reason::IntrospectionUnavailable => DenyKind::Unavailable,
            Reason::InvalidPath | Reason::RequestTooLarge | Reason::InvalidRequest => {
                DenyKind::BadRequest
            }
            Reason::MissingRequiredRoles
            | Reason::MissingAValidRole
            | Reason::InsufficientScope
            | Reason::ClaimMismatch
            | Reason::ClientNotAllowed
            | Reason::NoMatchingRule => DenyKind::Forbidden,
            _ => DenyKind::Unauthenticated,
        }
    }

    pub const fn http_status(self) -> u16 {
        match self.kind() {
            DenyKind::Unauthenticated => 401,
            DenyKind::Forbidden => 403,
            DenyKind::Unavailable => 503,
            DenyKind::BadRequest => 400,
        }
    }

    /// One sentence for the JSON body. Static on purpose: nothing from the request is echoed.
    pub const fn description(self) -> &'static str {
        match self {
            Reason::AuthorizationHeaderMissing => "Authorization header is expected.",
            Reason::TokenMalformed => "The bearer token or the Authorization header is malformed.",
            Reason::UnknownIssuer => "The token was issued by an issuer that is not configured.",
            Reason::UnknownAudience => "The token's audience matches no configured client.",
            Reason::AmbiguousClient => {
                "The token's issuer and audience match more than one client."
            }
            Reason::UnsupportedAlgorithm => {
                "The token's signing algorithm is not allowed for this client or key."
            }
            Reason::UnknownKey => "The token was signed with a key the issuer does not publish.",
            Reason::InvalidSignature => "The token's signature is invalid.",
            Reason::TokenExpired => "The token has expired.",
            Reason::TokenNotYetValid => "The token is not valid yet.",
            Reason::InvalidClaims => "The token's claims are invalid.",
            Reason::KeysUnavailable => {
                "The issuer's signing keys are unavailable; the request cannot be verified."
            }
            Reason::InvalidPath => "The request path is not a valid, unambiguous path.",
            Reason::MissingRequiredRoles => "The token is missing one or more required roles.",
            Reason::MissingAValidRole => "The token has none of the roles allowed here.",
            Reason::InsufficientScope => "The token lacks the scope required here.",
            Reason::ClaimMismatch => "The token's claims do not match what this route requires.",
            Reason::ClientNotAllowed => "Tokens of this client are not allowed here.",
            Reason::NoMatchingRule => "No rule allows this request.",
            Reason::TokenInactive => "The token is not active (revoked, or unknown to the issuer).",
            Reason::IntrospectionUnavailable => {
                "The issuer's introspection endpoint is unavailable; the token cannot be checked."
            }
            Reason::RequestTooLarge => {
                "The request's headers or body are larger than the authorization server accepts."
            }
            Reason::InvalidDpopProof => "The DPoP proof is missing or invalid.",
            Reason::UseDpopNonce => "A DPoP proof with a fresh server nonce is required.",
            Reason::BindingMismatch => {
                "The token is bound to a key or certificate this request does not prove."
            }
            Reason::BindingRequired => {
                "This client accepts only sender-constrained (DPoP or mTLS-bound) tokens."
            }
            Reason::InvalidRequest => {
                "The authorization request does not say which method and URI to check."
            }
        }
    }

    /// Whether a 401/403 carries `error="insufficient_scope"` (RFC 6750 §3.1).
    pub const fn is_insufficient_scope(self) -> bool {
        matches!(
            self,
            Reason::MissingRequiredRoles | Reason::MissingAValidRole | Reason::InsufficientScope
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A deny: the reason plus, for logs and `explain`, a static detail saying exactly what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub reason: Reason,
    /// Static text (never request data) such as "header is not a JSON object".
    pub detail: &'static str,
    /// The `WWW-Authenticate: DPoP …` challenge (and `DPoP-Nonce`), for clients with DPoP
    /// configured and for DPoP proof failures (DESIGN §10).
    pub dpop: Option<Box<DpopChallenge>>,
}

impl Deny {
    pub const fn new(reason: Reason, detail: &'static str) -> Self {
        Deny {
            reason,
            detail,
            dpop: None,
        }
    }
}

/// An allow: which rule let it through, the routed client (if a token was verified), and the
/// upstream headers to set / remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allow {
    pub rule: String,
    pub client: Option<String>,
    pub subject: Option<String>,
    /// Headers to set on the upstream request (overwriting any caller-supplied value).
    pub set_headers: Vec<(String, String)>,
    /// Headers to remove from the upstream request (spoofable names this request does not set).
    pub remove_headers: Vec<String>,
    /// Set when a `mode: audit` rule would have denied: the real deny (logged and counted as
    /// `decision="audit_deny"`), the request allowed all the same (DESIGN §11).
    pub audit: Option<Box<Deny>>,
}

/// The result of a Check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allow),
    Deny {
        deny: Deny,
        /// The rule that matched, if any (for metrics / logs).
        rule: Option<String>,
        /// The client the token was routed to, if routing got that far.
        client: Option<String>,
        /// Whether a token was presented (decides the RFC 6750 `error=` attributes).
        token_presented: bool,
    },
}

impl Decision {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny { deny, .. } => Some(deny.reason),
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// The realm of every RFC 6750 challenge.
const REALM: &str = "Bearer realm=\"oidc-authz\"";

/// RFC 6750 §3 `WWW-Authenticate` value, if this deny carries one.
pub fn challenge(reason: Reason, token_presented: bool) -> Option<String> {
    match reason.kind() {
        DenyKind::Unauthenticated if token_presented => Some(format!(
            "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
            reason.description()
        )),
        DenyKind::Unauthenticated => Some(REALM.to_owned()),
        DenyKind::Forbidden if reason.is_insufficient_scope() => Some(format!(
            "{REALM}, error=\"insufficient_scope\", error_description=\"{}\"",
            reason.description()
        )),
        _ => None,
    }
}

/// The `WWW-Authenticate` value with the DPoP challenge (RFC 9449 §7.1) after the Bearer one
/// (one header value: Envoy would let a second `www-authenticate` overwrite the first). When
/// the proof was the problem, the Bearer challenge carries no `error` (the token is fine) and
/// the DPoP challenge carries `error` and `error_description`.
pub fn challenge_with(
    reason: Reason,
    token_presented: bool,
    dpop: Option<&DpopChallenge>,
) -> Option<String> {
    let Some(d) = dpop else {
        return challenge(reason, token_presented);
    };
    let mut value = if d.error.is_some() {
        REALM.to_owned()
    } else {
        challenge(reason, token_presented).unwrap_or_else(|| REALM.to_owned())
    };
    value.push_str(", DPoP realm=\"oidc-authz\"");
    if let Some(e) = d.error {
        value.push_str(&format!(
            ", error=\"{}\", error_description=\"{}\"",
            e.code(),
            e.description()
        ));
    }
    value.push_str(&format!(", algs=\"{}\"", d.algs));
    Some(value)
}

/// A deny as every front door answers it (DESIGN §6, §9, §10): the HTTP status, the headers
/// (`content-type`, `x-authz-reason`, `www-authenticate` when there is one, `dpop-nonce` for
/// `use_dpop_nonce`) and the JSON body `{code, description}`. Built here only; each door maps
/// it to its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyAnswer {
    pub reason: Reason,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl DenyAnswer {
    pub fn new(reason: Reason, token_presented: bool) -> Self {
        Self::with_dpop(reason, token_presented, None)
    }

    /// [`DenyAnswer::new`] with the DPoP challenge (and a fresh `DPoP-Nonce`) of DESIGN §10.
    pub fn with_dpop(reason: Reason, token_presented: bool, dpop: Option<&DpopChallenge>) -> Self {
        let body = serde_json::json!({"code": reason.code(), "description": reason.description()})
            .to_string();
        let mut headers = Vec::with_capacity(4);
        headers.push(("content-type", "application/json".to_owned()));
        headers.push(("x-authz-reason", reason.code().to_owned()));
        if let Some(c) = challenge_with(reason, token_presented, dpop) {
            headers.push(("www-authenticate", c));
        }
        if let Some(nonce) = dpop.and_then(|d| d.nonce.as_deref()) {
            headers.push(("dpop-nonce", nonce.to_owned()));
        }
        DenyAnswer {
            reason,
            status: reason.http_status(),
            headers,
            body,
        }
    }
}

/// The answer to one Check, transport-neutral: an allow carries the upstream headers to set and
/// to remove ([`Allow`]), a deny its [`DenyAnswer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allow(Allow),
    Deny(DenyAnswer),
}

impl Decision {
    /// The answer every door sends for this decision (consumes it: strings move).
    pub fn into_answer(self) -> Answer {
        match self {
            Decision::Allow(a) => Answer::Allow(a),
            Decision::Deny {
                deny,
                token_presented,
                ..
            } => Answer::Deny(DenyAnswer::with_dpop(
                deny.reason,
                token_presented,
                deny.dpop.as_deref(),
            )),
        }
    }
}

/// The DPoP part of a 401's `WWW-Authenticate` (and the `DPoP-Nonce` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopChallenge {
    /// The client's accepted proof algorithms, space-separated (`algs="…"`).
    pub algs: String,
    /// `invalid_dpop_proof` / `use_dpop_nonce` when the proof was the problem.
    pub error: Option<Reason>,
    /// A fresh server nonce (`use_dpop_nonce` only).
    pub nonce: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_match_the_design_table() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(r.description().ends_with('.'));
        }
        assert_eq!(Reason::AuthorizationHeaderMissing.http_status(), 401);
        assert_eq!(Reason::TokenExpired.http_status(), 401);
        assert_eq!(Reason::KeysUnavailable.http_status(), 503);
        assert_eq!(Reason::InvalidPath.http_status(), 400);
        assert_eq!(Reason::MissingRequiredRoles.http_status(), 403);
        assert_eq!(Reason::NoMatchingRule.http_status(), 403);
        assert_eq!(Reason::InvalidRequest.http_status(), 400);
        assert!(Reason::MissingAValidRole.is_insufficient_scope());
        assert!(!Reason::ClaimMismatch.is_insufficient_scope());
        for r in [
            Reason::InvalidDpopProof,
            Reason::UseDpopNonce,
            Reason::BindingMismatch,
            Reason::BindingRequired,
        ] {
            assert_eq!(r.http_status(), 401, "{r}");
        }
    }
}
