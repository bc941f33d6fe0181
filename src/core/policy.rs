//! Path-keyed rules: compiled matchers, path normalisation, first-match lookup and conditions.
//!
//! Pure functions over values. Matching always uses the normalised path (no query, dot-segments
//! resolved, repeated slashes merged, unreserved percent-escapes decoded); a path that cannot be
//! normalised unambiguously (encoded `/` or `\`, bad escapes, not origin-form) is `invalid_path`,
//! because path confusion is how path-keyed authorization is bypassed. No I/O, no token parsing.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use crate::core::token::claim;
use crate::decision::{Deny, Reason};

/// Paths longer than this (after the query is cut) are `invalid_path`.
pub const MAX_PATH_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is needed (default).
    Required,
    /// No token: anonymous allow. A token that is present must be valid.
    Optional,
    /// Anonymous; any token is ignored.
    None,
}

#[derive(Debug, Clone)]
pub enum PathMatcher {
    Exact(String),
    /// Segment-aware prefix, stored without a trailing slash (except the root `/`).
    Prefix(String),
    Glob(Vec<GlobSegment>),
    Regex(regex::Regex),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobSegment {
    /// `**`: any number of segments (including none).
    AnyDepth,
    /// A segment pattern; `*` inside it matches any run of characters within the segment.
    Pattern(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatcher {
    Exact(String),
    /// `*.example.org`: stored as `.example.org`; matches any subdomain, not the apex.
    Suffix(String),
}

/// What must hold about the verified token (all conditions of a rule must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    RolesAll(Vec<String>),
    RolesAny(Vec<String>),
    ScopesAll(Vec<String>),
    ScopesAny(Vec<String>),
    Claim {
        path: String,
        values: Vec<Value>,
    },
    /// Indices into the config's clients.
    Clients(Vec<usize>),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub path: PathMatcher,
    /// Upper-case methods; `None` = any.
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<HostMatcher>>,
    pub auth: AuthMode,
    pub conditions: Vec<Condition>,
}

/// Why a rule's path or host matcher cannot be compiled (config validation names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("`{0}` must start with /")]
    NotAbsolute(String),
    #[error("`{given}` can never match: requests are matched in normalised form (`{normalised}`)")]
    NotNormalised { given: String, normalised: String },
    #[error("`{0}` is not a valid path")]
    InvalidPath(String),
    #[error("`{0}` can never match: requests are matched with repeated slashes merged")]
    EmptySegment(String),
    #[error("`{0}`: ** must be a whole segment")]
    PartialAnyDepth(String),
    #[error("`{0}`: segments must not be dot-segments or escapes")]
    DotOrEscapeSegment(String),
    #[error("invalid regex: {0}")]
    Regex(String),
    #[error("`{0}` is not a host name (or *.domain)")]
    InvalidHost(String),
}

impl From<MatcherError> for String {
    fn from(e: MatcherError) -> String {
        e.to_string()
    }
}

fn require_normalised(p: &str) -> Result<(), MatcherError> {
    if !p.starts_with('/') {
        return Err(MatcherError::NotAbsolute(p.to_owned()));
    }
    match normalize_path(p) {
        Ok(n) if n == p => Ok(()),
        Ok(n) => Err(MatcherError::NotNormalised {
            given: p.to_owned(),
            normalised: n.into_owned(),
        }),
        Err(_) => Err(MatcherError::InvalidPath(p.to_owned())),
    }
}

impl PathMatcher {
    pub fn exact(p: &str) -> Result<Self, MatcherError> {
        require_normalised(p)?;
        Ok(PathMatcher::Exact(p.to_owned()))
    }

    pub fn prefix(p: &str) -> Result<Self, MatcherError> {
        require_normalised(p)?;
        let trimmed = if p.len() > 1 {
            p.trim_end_matches('/')
        } else {
            p
        };
        Ok(PathMatcher::Prefix(trimmed.to_owned()))
    }

    pub fn glob(g: &str) -> Result<Self, MatcherError> {
        if !g.starts_with('/') {
            return Err(MatcherError::NotAbsolute(g.to_owned()));
        }
        let mut segs = Vec::new();
        let parts: Vec<&str> = g[1..].split('/').collect();
        if parts
            .iter()
            .take(parts.len().saturating_sub(1))
            .any(|p| p.is_empty())
        {
            return Err(MatcherError::EmptySegment(g.to_owned()));
        }
        for seg in parts {
            if seg == "**" {
                segs.push(GlobSegment::AnyDepth);
            } else if seg.contains("**") {
                return Err(MatcherError::PartialAnyDepth(g.to_owned()));
            } else if seg == "." || seg == ".." || seg.contains('%') || seg.contains('\\') {
                return Err(MatcherError::DotOrEscapeSegment(g.to_owned()));
            } else {
                segs.push(GlobSegment::Pattern(seg.to_owned()));
            }
        }
        Ok(PathMatcher::Glob(segs))
    }

    pub fn regex(r: &str) -> Result<Self, MatcherError> {
        // Anchored on both ends; the regex crate is a linear-time engine (no backtracking).
        regex::RegexBuilder::new(&format!("^(?:{r})$"))
            .size_limit(1 << 20)
            .build()
            .map(PathMatcher::Regex)
            .map_err(|e| MatcherError::Regex(e.to_string()))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Prefix(p) => {
                p == "/"
                    || (path.starts_with(p.as_str())
                        && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/'))
            }
            PathMatcher::Glob(segs) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                glob_match(segs, rest.split('/'))
            }
            PathMatcher::Regex(re) => re.is_match(path),
        }
    }
}

/// `parts` is an iterator over the path's segments (cloned to backtrack: no allocation per Check).
fn glob_match(segs: &[GlobSegment], mut parts: std::str::Split<'_, char>) -> bool {
    match segs.split_first() {
        None => parts.next().is_none(),
        Some((GlobSegment::AnyDepth, rest)) => loop {
            if glob_match(rest, parts.clone()) {
                return true;
            }
            if parts.next().is_none() {
                return false;
            }
        },
        Some((GlobSegment::Pattern(p), rest)) => match parts.next() {
            Some(first) => wildcard(p, first) && glob_match(rest, parts),
            None => false,
        },
    }
}

/// `*` within one segment matches any run of characters (a lone `*` needs a non-empty segment).
fn wildcard(pattern: &str, s: &str) -> bool {
    if pattern == "*" {
        return !s.is_empty();
    }
    let pieces: Vec<&str> = pattern.split('*').collect();
    if pieces.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !s.starts_with(first)
        || !s[first.len()..].ends_with(last)
        || s.len() < first.len() + last.len()
    {
        return false;
    }
    let mut middle = &s[first.len()..s.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match middle.find(piece) {
            Some(i) => middle = &middle[i + piece.len()..],
            None => return false,
        }
    }
    true
}

impl HostMatcher {
    pub fn parse(h: &str) -> Result<Self, MatcherError> {
        let lower = h.to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !name.starts_with('.')
            && !name.ends_with('.');
        if !valid {
            return Err(MatcherError::InvalidHost(h.to_owned()));
        }
        Ok(if wild {
            HostMatcher::Suffix(format!(".{name}"))
        } else {
            HostMatcher::Exact(name.to_owned())
        })
    }

    /// `host` is already lower case and without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatcher::Exact(h) => host == h,
            HostMatcher::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// `:authority` without port, lower case; `[v6]:port` → `v6`.
pub fn host_without_port(authority: &str) -> Cow<'_, str> {
    let h = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
    };
    let h = h.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

const INVALID: Deny = Deny::new(
    Reason::InvalidPath,
    "the path is not a valid origin-form path",
);

/// Normalise a request path for matching (DESIGN §3).
///
/// Cuts the query and fragment; rejects anything not origin-form, control or non-ASCII bytes,
/// `\`, bad percent-escapes and encoded `/` or `\`; decodes escapes of unreserved characters
/// (so `%61dmin` is `admin` and `%2e%2e` is `..`), then merges repeated slashes and resolves
/// dot-segments (RFC 3986 §5.2.4).
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, Deny> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    if path.len() > MAX_PATH_BYTES {
        return Err(Deny::new(
            Reason::InvalidPath,
            "the path is longer than 8192 bytes",
        ));
    }
    if !path.starts_with('/') {
        return Err(INVALID);
    }
    let bytes = path.as_bytes();
    let mut needs_work = false;
    for (i, &b) in bytes.iter().enumerate() {
        if !(0x21..0x7f).contains(&b) || b == b'\\' {
            return Err(Deny::new(
                Reason::InvalidPath,
                "the path has a space, control, non-ASCII or \\ byte",
            ));
        }
        if b == b'%' {
            needs_work = true;
        }
        if b == b'/' && (bytes.get(i + 1) == Some(&b'/') || bytes.get(i + 1) == Some(&b'.')) {
            needs_work = true;
        }
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    // Decode unreserved escapes; keep other escapes (upper-cased); refuse encoded / and \.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) else {
                return Err(Deny::new(
                    Reason::InvalidPath,
                    "the path has a malformed percent-escape",
                ));
            };
            let c = h * 16 + l;
            if c == b'/' || c == b'\\' {
                return Err(Deny::new(
                    Reason::InvalidPath,
                    "the path has an encoded / or \\",
                ));
            }
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                decoded.push(c as char);
            } else {
                decoded.push('%');
                decoded.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                decoded.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
            }
            i += 3;
        } else {
            decoded.push(b as char);
            i += 1;
        }
    }
    // Resolve dot-segments as RFC 3986 §5.2.4 does — an empty segment from `//` is a segment, so
    // `/a//../b` is `/a/b`, the order Envoy's normalize_path + merge_slashes use — then merge
    // slashes. A dot-segment carrying path parameters (`..;x`, `.%3Bx`) is refused: servlet
    // containers treat `..;` as `..`, so `/api/..;/admin` would be served as `/admin`.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/').skip(1) {
        let params_at = seg
            .find(';')
            .or_else(|| seg.to_ascii_lowercase().find("%3b"));
        if let Some(at) = params_at
            && matches!(&seg[..at], "." | "..")
        {
            return Err(Deny::new(
                Reason::InvalidPath,
                "the path has a dot-segment with path parameters",
            ));
        }
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in out.iter().filter(|s| !s.is_empty()) {
        result.push('/');
        result.push_str(s);
    }
    if result.is_empty() || (trailing && !result.ends_with('/')) {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The first rule whose path, method and host match (a linear scan: the reference that
/// [`Rules::find`] must agree with).
pub fn match_rule<'r>(rules: &'r [Rule], method: &str, host: &str, path: &str) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(method, host, path))
}

impl Rule {
    /// Does this rule's match (methods, hosts, path) take the request? `path` is normalised.
    pub fn matches(&self, method: &str, host: &str, path: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method))
            && self
                .hosts
                .as_ref()
                .is_none_or(|hs| hs.iter().any(|h| h.matches(host)))
            && self.path.matches(path)
    }

    /// The first path segment every path this rule matches starts with, when it is fixed
    /// (`None`: the rule may match under any first segment — regex, `/`, leading wildcard).
    fn first_segment(&self) -> Option<&str> {
        match &self.path {
            PathMatcher::Exact(p) => p.starts_with('/').then(|| seg_of(p)),
            PathMatcher::Prefix(p) if p == "/" => None,
            PathMatcher::Prefix(p) => p.starts_with('/').then(|| seg_of(p)),
            PathMatcher::Glob(segs) => match segs.first() {
                Some(GlobSegment::Pattern(p)) if !p.contains('*') => Some(p.as_str()),
                _ => None,
            },
            PathMatcher::Regex(_) => None,
        }
    }
}

/// The first segment of a normalised path (`/api/x` → `api`, `/` → ``).
fn seg_of(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// The rules in order (first match wins), with an index by the path's first segment built at
/// config load, so a Check scans only the rules that can match its path: those fixed to its
/// first segment plus those that can match under any (regex, `/` prefix, leading wildcard),
/// merged in rule order. Order and result are exactly [`match_rule`]'s.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    /// First segment → indices (ascending) of the rules that can match a path starting with it.
    by_segment: HashMap<Box<str>, Box<[u32]>, foldhash::fast::RandomState>,
    /// Indices of the rules that can match any first segment (used for other segments).
    any: Box<[u32]>,
}

impl From<Vec<Rule>> for Rules {
    fn from(rules: Vec<Rule>) -> Rules {
        let mut any = Vec::new();
        let mut keyed: HashMap<Box<str>, Vec<u32>, foldhash::fast::RandomState> =
            HashMap::default();
        for (i, r) in rules.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match r.first_segment() {
                Some(seg) => keyed.entry(seg.into()).or_default().push(i),
                None => any.push(i),
            }
        }
        let by_segment = keyed
            .into_iter()
            .map(|(seg, mut list)| {
                list.extend_from_slice(&any);
                list.sort_unstable();
                (seg, list.into_boxed_slice())
            })
            .collect();
        Rules {
            rules,
            by_segment,
            any: any.into_boxed_slice(),
        }
    }
}

impl std::ops::Deref for Rules {
    type Target = [Rule];
    fn deref(&self) -> &[Rule] {
        &self.rules
    }
}

impl Rules {
    /// The rules in order (first match wins).
    pub fn as_slice(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule whose path, method and host match; `path` is normalised.
    pub fn find(&self, method: &str, host: &str, path: &str) -> Option<&Rule> {
        let candidates = self.by_segment.get(seg_of(path)).unwrap_or(&self.any);
        candidates
            .iter()
            .map(|&i| &self.rules[i as usize])
            .find(|r| r.matches(method, host, path))
    }
}

/// The values of a claim that holds a list of names: a JSON array of strings, or a
/// space-separated string (OAuth `scope`).
pub fn names_in(v: Option<&Value>) -> impl Iterator<Item = &str> {
    let (arr, s) = match v {
        Some(Value::Array(a)) => (Some(a), None),
        Some(Value::String(s)) => (None, Some(s.as_str())),
        _ => (None, None),
    };
    arr.into_iter().flatten().filter_map(Value::as_str).chain(
        s.into_iter()
            .flat_map(|s| s.split(' ').filter(|x| !x.is_empty())),
    )
}

/// Every role the token carries under the client's role claim paths. Collected once per
/// verified token (and kept in the token cache), so a Check compares names instead of walking
/// the claims tree.
pub fn token_roles(
    claims: &serde_json::Map<String, Value>,
    role_paths: &[String],
) -> Box<[Box<str>]> {
    role_paths
        .iter()
        .flat_map(|p| names_in(claim(claims, p)))
        .map(Box::from)
        .collect()
}

/// Does the token carry `role` (among its collected [`token_roles`])?
fn has_role(roles: &[Box<str>], role: &str) -> bool {
    roles.iter().any(|r| **r == *role)
}

/// Does the token carry `scope` in `scope` (space-separated) or `scp` (array or string)?
pub fn has_scope(claims: &serde_json::Map<String, Value>, scope: &str) -> bool {
    names_in(claims.get("scope")).any(|s| s == scope)
        || names_in(claims.get("scp")).any(|s| s == scope)
}

/// Claim equality, array-aware: the claim (or any element of it) equals one of `values`.
pub fn claim_matches(
    claims: &serde_json::Map<String, Value>,
    path: &str,
    values: &[Value],
) -> bool {
    match claim(claims, path) {
        None => false,
        Some(Value::Array(items)) => items.iter().any(|i| values.contains(i)),
        Some(v) => values.contains(v),
    }
}

/// Check every condition of a rule against a verified token routed to client `client_idx`;
/// `roles` are the token's [`token_roles`] for that client.
pub fn check_conditions(
    rule: &Rule,
    claims: &serde_json::Map<String, Value>,
    roles: &[Box<str>],
    client_idx: usize,
) -> Result<(), Deny> {
    for c in &rule.conditions {
        let ok = match c {
            Condition::Clients(list) => list.contains(&client_idx),
            Condition::RolesAll(rs) => rs.iter().all(|r| has_role(roles, r)),
            Condition::RolesAny(rs) => rs.iter().any(|r| has_role(roles, r)),
            Condition::ScopesAll(ss) => ss.iter().all(|s| has_scope(claims, s)),
            Condition::ScopesAny(ss) => ss.iter().any(|s| has_scope(claims, s)),
            Condition::Claim { path, values } => claim_matches(claims, path, values),
        };
        if !ok {
            return Err(match c {
                Condition::Clients(_) => Deny::new(
                    Reason::ClientNotAllowed,
                    "the routed client is not in the rule's clients",
                ),
                Condition::RolesAll(_) => {
                    Deny::new(Reason::MissingRequiredRoles, "roles.all_of does not hold")
                }
                Condition::RolesAny(_) => {
                    Deny::new(Reason::MissingAValidRole, "roles.any_of does not hold")
                }
                Condition::ScopesAll(_) => {
                    Deny::new(Reason::InsufficientScope, "scopes.all_of does not hold")
                }
                Condition::ScopesAny(_) => {
                    Deny::new(Reason::InsufficientScope, "scopes.any_of does not hold")
                }
                Condition::Claim { .. } => {
                    Deny::new(Reason::ClaimMismatch, "a claims condition does not hold")
                }
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(p: &str) -> Result<String, Reason> {
        normalize_path(p)
            .map(|c| c.into_owned())
            .map_err(|d| d.reason)
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("/api/x").unwrap(), "/api/x");
        assert_eq!(norm("/api/x?a=/admin#f").unwrap(), "/api/x");
        assert_eq!(norm("/api/../admin").unwrap(), "/admin");
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/api//x///y").unwrap(), "/api/x/y");
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/../../etc").unwrap(), "/etc");
        assert_eq!(norm("/api/").unwrap(), "/api/");
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/api/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/a%20b%7e").unwrap(), "/a%20b~");
        assert_eq!(norm("/a%3f").unwrap(), "/a%3F");
        assert_eq!(norm("/api/..").unwrap(), "/");
        // dot-segments before slash merging (Envoy's order): `//..` removes the empty segment
        assert_eq!(norm("/admin//../public").unwrap(), "/admin/public");
        assert_eq!(norm("/a///..//b").unwrap(), "/a/b");
        assert_eq!(norm("/a/b//").unwrap(), "/a/b/");
        // path parameters on dot-segments (Tomcat / Spring `..;`)
        for bad in [
            "/api/..;/admin",
            "/api/..;x=1/admin",
            "/api/.;/admin",
            "/api/..%3B/admin",
            "/api/..%3bjsessionid=1/x",
        ] {
            assert_eq!(norm(bad), Err(Reason::InvalidPath), "{bad}");
        }
        // ordinary matrix parameters are fine
        assert_eq!(norm("/api/items;v=2/x").unwrap(), "/api/items;v=2/x");
        for bad in [
            "/api%2F..%2Fadmin",
            "/api%2f",
            "/a%5Cb",
            "/a\\b",
            "api",
            "",
            "*",
            "http://h/x",
            "/a b",
            "/a\u{1}",
            "/é",
            "/%zz",
            "/%4",
            "/%",
        ] {
            assert_eq!(norm(bad), Err(Reason::InvalidPath), "{bad:?}");
        }
        assert_eq!(
            norm(&format!("/{}", "a".repeat(MAX_PATH_BYTES))),
            Err(Reason::InvalidPath)
        );
    }

    #[test]
    fn prefix_is_segment_aware() {
        assert!(PathMatcher::prefix("/api/./x").is_err());
        assert!(PathMatcher::prefix("api").is_err());
        let p = PathMatcher::prefix("/api/").unwrap();
        assert!(p.matches("/api") && p.matches("/api/x") && !p.matches("/apix"));
        let p = PathMatcher::prefix("/api").unwrap();
        assert!(p.matches("/api") && p.matches("/api/") && p.matches("/api/x"));
        assert!(!p.matches("/apix") && !p.matches("/ap") && !p.matches("/"));
        assert!(PathMatcher::prefix("/").unwrap().matches("/anything"));
    }

    #[test]
    fn glob_and_regex() {
        let g = PathMatcher::glob("/api/*/reports/**").unwrap();
        assert!(g.matches("/api/x/reports"));
        assert!(g.matches("/api/x/reports/2024/q1"));
        assert!(!g.matches("/api/reports"));
        assert!(!g.matches("/api/x/y/reports"));
        let g = PathMatcher::glob("/files/*.json").unwrap();
        assert!(
            g.matches("/files/a.json")
                && !g.matches("/files/a.jsonx")
                && !g.matches("/files/x/a.json")
        );
        let r = PathMatcher::regex("/v[0-9]+/items").unwrap();
        assert!(r.matches("/v2/items") && !r.matches("/v2/items/x") && !r.matches("/x/v2/items"));
        assert!(PathMatcher::glob("/a/**b").is_err());
        assert!(PathMatcher::glob("//a/*").is_err());
        assert!(PathMatcher::glob("/a//*").is_err());
    }

    #[test]
    fn hosts() {
        let h = HostMatcher::parse("*.Example.org").unwrap();
        assert!(h.matches("a.example.org") && h.matches("a.b.example.org"));
        assert!(!h.matches("example.org") && !h.matches("aexample.org"));
        assert_eq!(host_without_port("API.example.org:8443"), "api.example.org");
        assert_eq!(host_without_port("[::1]:80"), "::1");
        assert_eq!(host_without_port("example.org."), "example.org");
    }

    #[test]
    fn first_match_wins_with_methods_and_hosts() {
        let rules = vec![
            Rule {
                name: "w".into(),
                path: PathMatcher::prefix("/api").unwrap(),
                methods: Some(vec!["POST".into()]),
                hosts: None,
                auth: AuthMode::Required,
                conditions: vec![],
            },
            Rule {
                name: "h".into(),
                path: PathMatcher::prefix("/api").unwrap(),
                methods: None,
                hosts: Some(vec![HostMatcher::parse("a.org").unwrap()]),
                auth: AuthMode::Required,
                conditions: vec![],
            },
            Rule {
                name: "r".into(),
                path: PathMatcher::prefix("/").unwrap(),
                methods: None,
                hosts: None,
                auth: AuthMode::None,
                conditions: vec![],
            },
        ];
        assert_eq!(
            match_rule(&rules, "POST", "b.org", "/api/x").unwrap().name,
            "w"
        );
        assert_eq!(
            match_rule(&rules, "GET", "a.org", "/api/x").unwrap().name,
            "h"
        );
        assert_eq!(
            match_rule(&rules, "GET", "b.org", "/api/x").unwrap().name,
            "r"
        );
    }

    #[test]
    fn the_rule_index_finds_exactly_what_the_linear_scan_finds() {
        let m = |kind: &str, v: &str| match kind {
            "exact" => PathMatcher::exact(v).unwrap(),
            "prefix" => PathMatcher::prefix(v).unwrap(),
            "glob" => PathMatcher::glob(v).unwrap(),
            _ => PathMatcher::regex(v).unwrap(),
        };
        let specs: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("exact", "/healthz", None, None),
            ("exact", "/", None, None),
            ("prefix", "/admin", Some("POST"), None),
            ("glob", "/api/*/reports/**", None, None),
            ("prefix", "/api/v1", None, Some("a.org")),
            ("glob", "/*/public/**", None, None),
            ("regex", "^/(api|svc)/[0-9]+$", None, None),
            ("glob", "/**/x", Some("GET"), None),
            ("glob", "/ap*/y", None, None),
            ("prefix", "/api", None, None),
            ("exact", "/admin/x", None, None),
            ("prefix", "/", Some("DELETE"), None),
            ("prefix", "/svc", None, None),
        ];
        let all: Vec<Rule> = specs
            .iter()
            .enumerate()
            .map(|(i, (kind, v, method, host))| Rule {
                name: format!("r{i}"),
                path: m(kind, v),
                methods: method.map(|x| vec![x.to_string()]),
                hosts: host.map(|h| vec![HostMatcher::parse(h).unwrap()]),
                auth: AuthMode::Required,
                conditions: vec![],
            })
            .collect();
        let paths = [
            "/",
            "/healthz",
            "/healthz/",
            "/admin",
            "/admin/x",
            "/adminx",
            "/api",
            "/api/",
            "/api/v1",
            "/api/v1/z",
            "/api/q3/reports",
            "/api/q3/reports/a/b",
            "/apx/y",
            "/ap/y",
            "/svc/12",
            "/api/12",
            "/x",
            "/a/b/x",
            "/other/public/1",
            "/other",
            "/svc",
            "/svcx",
        ];
        // every prefix of the rule list, so each rule is also tested as the last one
        for n in 0..=all.len() {
            let rules = Rules::from(all[..n].to_vec());
            for path in paths {
                for method in ["GET", "POST", "DELETE"] {
                    for host in ["a.org", "b.org"] {
                        let want = match_rule(&rules, method, host, path).map(|r| &r.name);
                        let got = rules.find(method, host, path).map(|r| &r.name);
                        assert_eq!(got, want, "{n} rules, {method} {host} {path}");
                    }
                }
            }
        }
    }

    #[test]
    fn conditions() {
        let claims = json!({"realm_access": {"roles": ["a", "b"]}, "scope": "read write", "scp": ["x"], "email_verified": true, "groups": ["g1", "g2"]});
        let claims = claims.as_object().unwrap();
        let roles = token_roles(claims, &["realm_access.roles".to_string()]);
        let rule = |c: Condition| Rule {
            name: "r".into(),
            path: PathMatcher::prefix("/").unwrap(),
            methods: None,
            hosts: None,
            auth: AuthMode::Required,
            conditions: vec![c],
        };
        let ok = |c: Condition| check_conditions(&rule(c), claims, &roles, 0).map_err(|d| d.reason);
        assert!(ok(Condition::RolesAll(vec!["a".into(), "b".into()])).is_ok());
        assert_eq!(
            ok(Condition::RolesAll(vec!["a".into(), "c".into()])),
            Err(Reason::MissingRequiredRoles)
        );
        assert!(ok(Condition::RolesAny(vec!["z".into(), "b".into()])).is_ok());
        assert_eq!(
            ok(Condition::RolesAny(vec!["z".into()])),
            Err(Reason::MissingAValidRole)
        );
        assert!(ok(Condition::ScopesAll(vec!["read".into(), "x".into()])).is_ok());
        assert_eq!(
            ok(Condition::ScopesAny(vec!["admin".into()])),
            Err(Reason::InsufficientScope)
        );
        assert!(
            ok(Condition::Claim {
                path: "email_verified".into(),
                values: vec![json!(true)]
            })
            .is_ok()
        );
        assert!(
            ok(Condition::Claim {
                path: "groups".into(),
                values: vec![json!("g2")]
            })
            .is_ok()
        );
        assert_eq!(
            ok(Condition::Claim {
                path: "groups".into(),
                values: vec![json!("g3")]
            }),
            Err(Reason::ClaimMismatch)
        );
        assert_eq!(
            ok(Condition::Claim {
                path: "missing".into(),
                values: vec![json!("g3")]
            }),
            Err(Reason::ClaimMismatch)
        );
        assert!(ok(Condition::Clients(vec![0])).is_ok());
        assert_eq!(
            ok(Condition::Clients(vec![1])),
            Err(Reason::ClientNotAllowed)
        );
        // role substring never counts
        assert_eq!(
            ok(Condition::RolesAll(vec!["realm".into()])),
            Err(Reason::MissingRequiredRoles)
        );
    }
}
