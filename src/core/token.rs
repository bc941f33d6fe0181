//! Finding the token in a request, and splitting / decoding / JSON-parsing it strictly.
//!
//! Owns DESIGN §4.1: size cap first, exactly three base64url segments, canonical unpadded
//! base64url, header and claims JSON objects with no duplicate member names (at any depth).
//! Nothing here trusts the token: it only turns bytes into values for `verify` to judge.
//! It never looks at keys and never does I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

pub use crate::core::binding::AuthScheme;
use crate::decision::{Deny, Reason};

/// Where a token may be found (DESIGN §3 `token.sources`), tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header. `authorization` carries `Bearer <jwt>` (scheme case-insensitive, RFC 6750 §2.1);
    /// any other header carries the raw JWT.
    Header(String),
    /// A cookie whose value is the raw JWT (flask-jwt-oidc's `JWT_OIDC_AUTH_COOKIE_NAME`).
    Cookie(String),
}

/// The request headers, as Envoy sent them, with lower-case names.
///
/// Envoy either sends `headers` (a map: repeated headers already joined with `,`) or, with
/// `encode_raw_headers`, `header_map` (a list that may repeat a name). Both end up here.
#[derive(Debug, Default, Clone)]
pub struct Headers<'a> {
    entries: Vec<(&'a str, &'a str)>,
}

/// A header appeared twice where only one is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateHeader;

impl<'a> Headers<'a> {
    pub fn new() -> Self {
        Headers {
            entries: Vec::new(),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// Add one header; `name` must already be lower case (Envoy sends lower-case names).
    pub fn push(&mut self, name: &'a str, value: &'a str) {
        self.entries.push((name, value));
    }

    /// The single value of `name`, or `Err` when it appears more than once.
    pub fn get_one(&self, name: &str) -> Result<Option<&'a str>, DuplicateHeader> {
        let mut found = None;
        for (n, v) in &self.entries {
            if n.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(DuplicateHeader);
                }
                found = Some(*v);
            }
        }
        Ok(found)
    }

    /// Every value of `name` (cookies may legitimately arrive in several headers).
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

const MALFORMED: Reason = Reason::TokenMalformed;

/// Find the token: the first configured source that is present wins.
///
/// `Ok(None)`: no source present. `Err`: a source is present but unusable (wrong scheme, two
/// Authorization headers, characters a token cannot contain, too long).
pub fn extract<'a>(
    sources: &[TokenSource],
    headers: &Headers<'a>,
    max_bytes: usize,
) -> Result<Option<&'a str>, Deny> {
    Ok(extract_with_scheme(sources, headers, max_bytes)?.map(|(t, _)| t))
}

/// [`extract`], also telling which `Authorization` scheme carried the token: `Bearer` or `DPoP`
/// (RFC 9449 §7.1). A token from a cookie or another header counts as `Bearer` (DESIGN §10: a
/// DPoP-bound token there is a downgrade).
pub fn extract_with_scheme<'a>(
    sources: &[TokenSource],
    headers: &Headers<'a>,
    max_bytes: usize,
) -> Result<Option<(&'a str, AuthScheme)>, Deny> {
    for source in sources {
        let mut scheme = AuthScheme::Bearer;
        let raw = match source {
            TokenSource::Header(name) => {
                let Some(value) = headers
                    .get_one(name)
                    .map_err(|_| Deny::new(MALFORMED, "the token header appears more than once"))?
                else {
                    continue;
                };
                if name == "authorization" {
                    let (token, s) = credentials(value)?;
                    scheme = s;
                    token
                } else {
                    value.trim_matches(|c| c == ' ' || c == '\t')
                }
            }
            TokenSource::Cookie(name) => match find_cookie(headers, name)? {
                Some(v) => v,
                None => continue,
            },
        };
        // Size cap before any parsing (and before looking at a single character of it).
        if raw.len() > max_bytes {
            return Err(Deny::new(
                MALFORMED,
                "the token is longer than token.max_bytes",
            ));
        }
        if raw.is_empty() {
            return Err(Deny::new(MALFORMED, "the token is empty"));
        }
        if !is_b64token(raw) {
            return Err(Deny::new(
                MALFORMED,
                "the token contains characters a JWT cannot contain",
            ));
        }
        return Ok(Some((raw, scheme)));
    }
    Ok(None)
}

/// `Bearer <token>` (RFC 6750 §2.1) or `DPoP <token>` (RFC 9449 §7.1): scheme
/// case-insensitive, one or more spaces, then the token.
fn credentials(value: &str) -> Result<(&str, AuthScheme), Deny> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = match value.find(' ') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        AuthScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        AuthScheme::Dpop
    } else {
        return Err(Deny::new(
            MALFORMED,
            "the Authorization scheme is neither Bearer nor DPoP",
        ));
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Deny::new(
            MALFORMED,
            "the Authorization header has no token",
        ));
    }
    Ok((token, scheme))
}

/// A cookie by name from every `cookie` header (`a=b; c=d`). Two cookies of that name: malformed
/// (which one the app would read is undefined, so we refuse to guess).
fn find_cookie<'a>(headers: &Headers<'a>, name: &str) -> Result<Option<&'a str>, Deny> {
    let mut found = None;
    for header in headers.get_all("cookie") {
        for pair in header.split(';') {
            let pair = pair.trim_matches(|c| c == ' ' || c == '\t');
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim_end() == name {
                if found.is_some() {
                    return Err(Deny::new(
                        MALFORMED,
                        "the token cookie appears more than once",
                    ));
                }
                let v = v.trim_start();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                found = Some(v);
            }
        }
    }
    Ok(found)
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// (A JWS uses a subset; opaque tokens for introspection may use the rest.)
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=').as_bytes();
    // Runs over every byte of every token, once per Check: whole chunks without an early exit
    // inside, so the compiler vectorises it (a per-byte loop with a branch does not).
    let mut chunks = body.chunks_exact(32);
    let whole = chunks
        .by_ref()
        .all(|c| c.iter().fold(true, |ok, &b| ok & is_b64token_byte(b)));
    !body.is_empty() && whole && chunks.remainder().iter().all(|&b| is_b64token_byte(b))
}

/// RFC 6750 `b64token` characters: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/".
#[inline(always)]
fn is_b64token_byte(b: u8) -> bool {
    let lower = b | 0x20; // maps A-Z onto a-z; nothing else lands in a-z
    (lower.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// The decoded parts of a compact JWS, not yet trusted.
#[derive(Debug, Clone)]
pub struct Jwt<'a> {
    pub header: JwtHeader,
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(claims)`: the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// The header members we act on. Everything else is ignored; key-bearing members (`jwk`, `jku`,
/// `x5u`, `x5c`) are deliberately never read: keys only ever come from the configured key set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub cty: Option<String>,
    /// `crit` present (any value): no extension is understood, so such tokens are rejected.
    pub has_crit: bool,
    /// `b64` present (RFC 7797 unencoded payload): never accepted.
    pub has_b64: bool,
}

/// Split and decode a compact JWS. Length was already capped by [`extract`].
pub fn parse(token: &str) -> Result<Jwt<'_>, Deny> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Deny::new(
            MALFORMED,
            "a JWT has three dot-separated segments",
        ));
    };
    if parts.next().is_some() {
        return Err(Deny::new(
            MALFORMED,
            "more than three segments (a JWE or trailing data is not accepted)",
        ));
    }
    if h.is_empty() || c.is_empty() {
        return Err(Deny::new(MALFORMED, "an empty header or claims segment"));
    }
    let header_bytes = b64(h)?;
    let claims_bytes = b64(c)?;
    let signature = b64(s)?;
    let header = parse_header(&header_bytes)?;
    let claims = strict_object(&claims_bytes)
        .map_err(|_| Deny::new(MALFORMED, "the claims are not one strict JSON object"))?;
    Ok(Jwt {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + c.len()],
        signature,
    })
}

/// Canonical, unpadded base64url: the engine rejects padding and non-zero trailing bits, so each
/// byte string has exactly one accepted encoding.
fn b64(segment: &str) -> Result<Vec<u8>, Deny> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Deny::new(MALFORMED, "a segment is not canonical base64url"))
}

fn parse_header(bytes: &[u8]) -> Result<JwtHeader, Deny> {
    let obj = strict_object(bytes)
        .map_err(|_| Deny::new(MALFORMED, "the header is not one strict JSON object"))?;
    let alg = match obj.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(Deny::new(MALFORMED, "the header alg is not a string")),
        None => return Err(Deny::new(MALFORMED, "the header has no alg")),
    };
    let opt_string = |name: &str, what: &'static str| -> Result<Option<String>, Deny> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Deny::new(MALFORMED, what)),
        }
    };
    Ok(JwtHeader {
        alg,
        kid: opt_string("kid", "the header kid is not a string")?,
        typ: opt_string("typ", "the header typ is not a string")?,
        cty: opt_string("cty", "the header cty is not a string")?,
        has_crit: obj.contains_key("crit"),
        has_b64: obj.contains_key("b64"),
    })
}

pub use crate::json::{strict_object, strict_value};

/// Look up a claim by a dotted path (`realm_access.roles`). At each level the whole remaining
/// path is tried as one member name first, so URL-shaped claim names (`https://x.org/roles`) work.
pub fn claim<'v>(claims: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match claims.get(head)? {
        Value::Object(inner) => claim(inner, rest),
        _ => None,
    }
}

/// Render a claim for an upstream header: strings as-is, arrays joined with ",", numbers and
/// booleans as JSON, objects as compact JSON. `None` for null.
pub fn claim_header_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
            }
            Some(out)
        }
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_charset_matches_rfc6750_at_every_position() {
        let reference = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        for b in 0..=127u8 {
            for len in [1usize, 2, 31, 32, 33, 63, 64, 65, 100] {
                for pos in [0, len / 2, len - 1] {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    let s = std::str::from_utf8(&v).unwrap();
                    // a trailing '=' is padding; anywhere else it is not a b64token character
                    let want = reference(b) || (b == b'=' && pos == len - 1 && len > 1);
                    assert_eq!(is_b64token(s), want, "byte {b:#x} at {pos} of {len}");
                }
            }
        }
        assert!(!is_b64token(""));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("aé"));
    }

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn tok(h: &str, c: &str) -> String {
        format!("{}.{}.{}", enc(h), enc(c), enc("sig"))
    }

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Headers<'a> {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.push(k, v);
        }
        h
    }

    fn auth() -> Vec<TokenSource> {
        vec![
            TokenSource::Header("authorization".into()),
            TokenSource::Cookie("oidc-jwt".into()),
        ]
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_malformed() {
        let h = headers(&[("authorization", "bEaReR   abc.def.ghi")]);
        assert_eq!(extract(&auth(), &h, 100).unwrap(), Some("abc.def.ghi"));
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc.def.ghi",
            "abc.def.ghi",
        ] {
            let h = headers(&[("authorization", bad)]);
            assert_eq!(
                extract(&auth(), &h, 100).unwrap_err().reason,
                Reason::TokenMalformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_characters_two_headers_and_oversize_are_malformed() {
        for bad in [
            "Bearer a b",
            "Bearer a\tb",
            "Bearer a,Bearer b",
            "Bearer é.a.b",
            "Bearer a\u{1}.b.c",
        ] {
            let h = headers(&[("authorization", bad)]);
            assert_eq!(
                extract(&auth(), &h, 100).unwrap_err().reason,
                Reason::TokenMalformed,
                "{bad:?}"
            );
        }
        let h = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer a.b.c"),
        ]);
        assert!(extract(&auth(), &h, 100).is_err());
        let h = headers(&[("authorization", "Bearer aaaaaaaaaaa")]);
        assert_eq!(
            extract(&auth(), &h, 10).unwrap_err().detail,
            "the token is longer than token.max_bytes"
        );
    }

    #[test]
    fn cookie_source_is_used_when_no_header_and_duplicates_are_refused() {
        let h = headers(&[("cookie", "a=1; oidc-jwt=x.y.z; b=2")]);
        assert_eq!(extract(&auth(), &h, 100).unwrap(), Some("x.y.z"));
        let h = headers(&[("cookie", "oidc-jwt=x.y.z"), ("cookie", "oidc-jwt=q.y.z")]);
        assert!(extract(&auth(), &h, 100).is_err());
        let h = headers(&[("cookie", "other=x.y.z")]);
        assert_eq!(extract(&auth(), &h, 100).unwrap(), None);
        let h = headers(&[("cookie", "oidc-jwt=")]);
        assert!(extract(&auth(), &h, 100).is_err());
        // header wins over cookie: sources are tried in order
        let h = headers(&[
            ("cookie", "oidc-jwt=c.c.c"),
            ("authorization", "Bearer h.h.h"),
        ]);
        assert_eq!(extract(&auth(), &h, 100).unwrap(), Some("h.h.h"));
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"i","a":{"b":[1,2]}}"#,
        );
        let jwt = parse(&t).unwrap();
        assert_eq!(jwt.header.alg, "RS256");
        assert_eq!(jwt.header.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.signature, b"sig");
        assert_eq!(
            claim(&jwt.claims, "a.b").unwrap(),
            &serde_json::json!([1, 2])
        );
        assert!(t.starts_with(jwt.signing_input));
    }

    #[test]
    fn rejects_structural_problems() {
        let good_h = r#"{"alg":"RS256"}"#;
        let cases = [
            "a.b".to_string(),
            format!("{}.{}.{}.{}", enc(good_h), enc("{}"), enc("s"), enc("x")),
            format!(
                "{}.{}.{}.{}.{}",
                enc(good_h),
                enc("{}"),
                enc("s"),
                enc("x"),
                enc("y")
            ),
            format!("{}==.{}.{}", enc(good_h), enc("{}"), enc("s")),
            format!(".{}.{}", enc("{}"), enc("s")),
            tok(r#"{"alg":"RS256","alg":"none"}"#, "{}"),
            tok(good_h, r#"{"sub":"a","sub":"b"}"#),
            tok(good_h, r#"{"a":{"x":1,"x":2}}"#),
            tok(good_h, "[1]"),
            tok(good_h, r#"{} trailing"#),
            tok("\u{feff}{\"alg\":\"RS256\"}", "{}"),
            tok(r#"{"kid":"x"}"#, "{}"),
            tok(r#"{"alg":1}"#, "{}"),
            tok(r#"{"alg":"RS256","kid":7}"#, "{}"),
            tok(good_h, "not json"),
        ];
        for t in &cases {
            assert_eq!(parse(t).unwrap_err().reason, Reason::TokenMalformed, "{t}");
        }
    }

    #[test]
    fn non_canonical_base64url_is_rejected() {
        // "{}" encodes as "e30"; "e31" decodes to the same bytes with non-zero trailing bits.
        assert_eq!(URL_SAFE_NO_PAD.encode("{}"), "e30");
        let t = format!("{}.e31.{}", enc(r#"{"alg":"RS256"}"#), enc("s"));
        assert!(parse(&t).is_err());
        let t = format!("{}.e30.{}", enc(r#"{"alg":"RS256"}"#), enc("s"));
        assert!(parse(&t).is_ok());
        // standard-alphabet characters are not base64url
        let t = format!("{}.e30.ab+/", enc(r#"{"alg":"RS256"}"#));
        assert!(parse(&t).is_err());
    }

    #[test]
    fn claim_header_values() {
        use serde_json::json;
        assert_eq!(claim_header_value(&json!("a")).unwrap(), "a");
        assert_eq!(claim_header_value(&json!(["a", "b", 3])).unwrap(), "a,b,3");
        assert_eq!(
            claim_header_value(&json!({"k":[1]})).unwrap(),
            r#"{"k":[1]}"#
        );
        assert_eq!(claim_header_value(&json!(true)).unwrap(), "true");
        assert!(claim_header_value(&json!(null)).is_none());
    }

    #[test]
    fn url_shaped_claim_names_are_found() {
        let m = strict_object(br#"{"https://x.org/roles":["a"],"realm_access":{"roles":["r"]}}"#)
            .unwrap();
        assert!(claim(&m, "https://x.org/roles").is_some());
        assert_eq!(
            claim(&m, "realm_access.roles").unwrap(),
            &serde_json::json!(["r"])
        );
        assert!(claim(&m, "realm_access.nope").is_none());
    }
}
