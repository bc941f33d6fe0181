//! Policy lint for `check-config` (DESIGN §11): rules that can never match, anonymous write
//! access, clients no rule can reach. Pure: it reads a compiled [`Config`] and returns findings;
//! printing them and `--strict` belong to the CLI.
//!
//! Soundness over completeness: a rule is reported as shadowed only when the containment of
//! its match in an earlier rule's match is *proved* from the matchers (methods, hosts, path).
//! Where it cannot be proved (regex rules, globs whose shapes are not comparable), nothing is
//! reported, and for regex rules that is said in a note. The property test at the bottom checks
//! that every reported pair really holds over a grid of requests.

use std::fmt;

use crate::config::{Config, DefaultAction};
use crate::core::policy::{AuthMode, Condition, GlobSegment, HostMatcher, PathMatcher, Rule};

/// HTTP methods that change state: `auth: none` on them is worth a second look.
const WRITE_METHODS: [&str; 4] = ["POST", "PUT", "PATCH", "DELETE"];

/// Something in the config that is very likely a mistake (`--strict` makes it an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// `rule` can never match: the earlier rule `by` matches every request it matches.
    Shadowed {
        rule: usize,
        name: String,
        by: usize,
        by_name: String,
    },
    /// An `auth: none` rule matches write methods (any method when it lists none).
    AnonymousWrite {
        rule: usize,
        name: String,
        methods: Vec<String>,
    },
    /// Rules name clients, and no rule (nor the default) lets this client's tokens through.
    UnreachableClient { client: String },
}

/// What the lint did not check, said so the silence is not mistaken for a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    RegexNotChecked { rule: usize, name: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub warnings: Vec<Warning>,
    pub notes: Vec<Note>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Shadowed {
                rule,
                name,
                by,
                by_name,
            } => write!(
                f,
                "rules[{rule}] `{name}` can never match: the earlier rules[{by}] `{by_name}` matches every request it matches (first match wins)"
            ),
            Warning::AnonymousWrite {
                rule,
                name,
                methods,
            } => write!(
                f,
                "rules[{rule}] `{name}` has auth: none and matches write methods ({}): anyone may change state there",
                methods.join(", ")
            ),
            Warning::UnreachableClient { client } => write!(
                f,
                "client `{client}` is named by no rule's `clients` and every rule that takes tokens names clients: its tokens can never be allowed"
            ),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::RegexNotChecked { rule, name } => write!(
                f,
                "rules[{rule}] `{name}` uses a regex: not checked for shadowing"
            ),
        }
    }
}

/// Lint a compiled config.
pub fn lint(config: &Config) -> Report {
    let rules = config.rules.as_slice();
    let mut report = Report::default();
    for (i, rule) in rules.iter().enumerate() {
        if matches!(rule.path, PathMatcher::Regex(_)) {
            report.notes.push(Note::RegexNotChecked {
                rule: i,
                name: rule.name.clone(),
            });
        }
        if let Some(by) = rules[..i].iter().position(|earlier| covers(earlier, rule)) {
            report.warnings.push(Warning::Shadowed {
                rule: i,
                name: rule.name.clone(),
                by,
                by_name: rules[by].name.clone(),
            });
        }
        if rule.auth == AuthMode::None {
            let methods: Vec<String> = match &rule.methods {
                None => vec!["any method".into()],
                Some(ms) => ms
                    .iter()
                    .filter(|m| WRITE_METHODS.contains(&m.as_str()))
                    .cloned()
                    .collect(),
            };
            if !methods.is_empty() {
                report.warnings.push(Warning::AnonymousWrite {
                    rule: i,
                    name: rule.name.clone(),
                    methods,
                });
            }
        }
    }
    report.warnings.extend(unreachable_clients(config));
    report
}

/// Clients whose tokens no rule can allow, reported only when some rule names clients (without
/// any `clients` condition every client is reachable by design).
fn unreachable_clients(config: &Config) -> Vec<Warning> {
    let rules = config.rules.as_slice();
    let named = |r: &Rule| {
        r.conditions.iter().find_map(|c| match c {
            Condition::Clients(ids) => Some(ids.clone()),
            _ => None,
        })
    };
    if !rules.iter().any(|r| named(r).is_some()) {
        return Vec::new();
    }
    // A rule that takes tokens and names no client admits every client, as does the default.
    let open = config.default == DefaultAction::Authenticated
        || rules
            .iter()
            .any(|r| r.auth != AuthMode::None && named(r).is_none());
    if open {
        return Vec::new();
    }
    let mut reached = vec![false; config.clients.len()];
    for r in rules.iter().filter(|r| r.auth != AuthMode::None) {
        for id in named(r).unwrap_or_default() {
            if let Some(slot) = reached.get_mut(id) {
                *slot = true;
            }
        }
    }
    config
        .clients
        .iter()
        .zip(reached)
        .filter(|(_, r)| !r)
        .map(|(c, _)| Warning::UnreachableClient {
            client: c.name.clone(),
        })
        .collect()
}

/// Does `a` match every request that `b` matches? `false` when it cannot be proved.
pub fn covers(a: &Rule, b: &Rule) -> bool {
    methods_cover(a.methods.as_deref(), b.methods.as_deref())
        && hosts_cover(a.hosts.as_deref(), b.hosts.as_deref())
        && path_covers(&a.path, &b.path)
}

fn methods_cover(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
    }
}

fn hosts_cover(a: Option<&[HostMatcher]>, b: Option<&[HostMatcher]>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|hb| a.iter().any(|ha| host_covers(ha, hb))),
    }
}

fn host_covers(a: &HostMatcher, b: &HostMatcher) -> bool {
    match (a, b) {
        (HostMatcher::Exact(x), HostMatcher::Exact(y)) => x == y,
        (HostMatcher::Suffix(_), HostMatcher::Exact(y)) => a.matches(y),
        // `*.b.example.org` (stored `.b.example.org`) lies within `*.example.org`.
        (HostMatcher::Suffix(s), HostMatcher::Suffix(t)) => t.ends_with(s.as_str()),
        (HostMatcher::Exact(_), HostMatcher::Suffix(_)) => false,
    }
}

/// The one path an all-literal glob matches (`/a/b` for `[a, b]`).
fn literal_glob(segs: &[GlobSegment]) -> Option<String> {
    let mut path = String::new();
    for s in segs {
        match s {
            GlobSegment::Pattern(p) if !p.contains('*') => {
                path.push('/');
                path.push_str(p);
            }
            _ => return None,
        }
    }
    Some(if path.is_empty() { "/".into() } else { path })
}

fn path_covers(a: &PathMatcher, b: &PathMatcher) -> bool {
    use PathMatcher::{Exact, Glob, Prefix, Regex};
    match (a, b) {
        // One path: decidable whatever `a` is.
        (_, Exact(y)) => a.matches(y),
        (_, Glob(segs)) if literal_glob(segs).is_some() => {
            literal_glob(segs).is_some_and(|p| a.matches(&p))
        }
        (_, Regex(_)) | (Regex(_), _) => false,
        (Exact(_), _) => false,
        // Segment-aware prefixes nest.
        (Prefix(_), Prefix(q)) => a.matches(q),
        // Every path the glob matches is `/L` or below it, L its leading literal segments.
        (Prefix(p), Glob(segs)) => {
            let lead: Vec<&str> = segs
                .iter()
                .map_while(|s| match s {
                    GlobSegment::Pattern(p) if !p.contains('*') => Some(p.as_str()),
                    _ => None,
                })
                .collect();
            if lead.is_empty() {
                p == "/"
            } else {
                a.matches(&format!("/{}", lead.join("/")))
            }
        }
        // `/L/**` with L matching the prefix's segments one for one covers the prefix.
        (Glob(segs), Prefix(q)) => {
            let Some((GlobSegment::AnyDepth, lead)) = segs.split_last() else {
                return false;
            };
            let qs: Vec<&str> = if q == "/" {
                Vec::new()
            } else {
                q[1..].split('/').collect()
            };
            lead.len() == qs.len()
                && lead.iter().zip(&qs).all(|(g, s)| match g {
                    GlobSegment::Pattern(p) => segment_pattern_covers(p, s),
                    GlobSegment::AnyDepth => false,
                })
        }
        (Glob(a), Glob(b)) => glob_covers(a, b),
    }
}

/// Segment pattern `p` matches every segment that pattern `q` matches.
fn segment_pattern_covers(p: &str, q: &str) -> bool {
    if p == q {
        return true;
    }
    if p == "*" {
        // a lone `*` needs a non-empty segment; every pattern but the empty one has one
        return !q.is_empty();
    }
    // A literal `q` is one segment: decidable. A wildcard `q` against another pattern: unproved.
    !q.contains('*')
        && PathMatcher::Glob(vec![GlobSegment::Pattern(p.to_owned())]).matches(&format!("/{q}"))
}

fn glob_covers(a: &[GlobSegment], b: &[GlobSegment]) -> bool {
    if a == b {
        return true;
    }
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        // a trailing `**` takes whatever remains (including nothing)
        (Some((GlobSegment::AnyDepth, [])), _) => true,
        (Some((GlobSegment::Pattern(p), ar)), Some((GlobSegment::Pattern(q), br))) => {
            segment_pattern_covers(p, q) && glob_covers(ar, br)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(name: &str, path: PathMatcher) -> Rule {
        Rule {
            name: name.into(),
            path,
            methods: None,
            hosts: None,
            auth: AuthMode::Required,
            conditions: Vec::new(),
        }
    }

    fn m(kind: u8, s: &str) -> PathMatcher {
        let built = match kind {
            0 => PathMatcher::exact(s),
            1 => PathMatcher::prefix(s),
            _ => PathMatcher::glob(s),
        };
        built.unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn prefix_covers_nested_prefix_exact_and_glob_but_not_siblings() {
        let api = rule("api", m(1, "/api"));
        assert!(covers(&api, &rule("n", m(1, "/api/names"))));
        assert!(covers(&api, &rule("e", m(0, "/api/x"))));
        assert!(covers(&api, &rule("g", m(2, "/api/*/reports/**"))));
        assert!(!covers(&api, &rule("s", m(1, "/apix"))));
        assert!(!covers(&api, &rule("root", m(1, "/"))));
        assert!(!covers(&rule("n", m(1, "/api/names")), &api));
    }

    #[test]
    fn methods_and_hosts_narrow_what_an_earlier_rule_covers() {
        let mut get_only = rule("read", m(1, "/api"));
        get_only.methods = Some(vec!["GET".into()]);
        let mut write = rule("write", m(1, "/api/names"));
        write.methods = Some(vec!["POST".into()]);
        assert!(!covers(&get_only, &write));
        assert!(!covers(&get_only, &rule("any", m(1, "/api/names"))));
        let mut on_host = rule("h", m(1, "/"));
        on_host.hosts = Some(vec![HostMatcher::parse("*.example.org").unwrap()]);
        let mut sub = rule("sub", m(1, "/x"));
        sub.hosts = Some(vec![HostMatcher::parse("a.example.org").unwrap()]);
        assert!(covers(&on_host, &sub));
        sub.hosts = Some(vec![HostMatcher::parse("example.org").unwrap()]);
        assert!(!covers(&on_host, &sub), "*.example.org is not the apex");
    }

    #[test]
    fn globs_cover_by_shape() {
        assert!(covers(
            &rule("a", m(2, "/api/**")),
            &rule("b", m(1, "/api"))
        ));
        assert!(covers(&rule("a", m(2, "/*/x")), &rule("b", m(2, "/y/x"))));
        assert!(covers(&rule("a", m(2, "/*/x")), &rule("b", m(2, "/y*/x"))));
        assert!(!covers(&rule("a", m(2, "/y*/x")), &rule("b", m(2, "/*/x"))));
        assert!(!covers(
            &rule("a", m(2, "/api/*")),
            &rule("b", m(1, "/api"))
        ));
        let re = rule("re", PathMatcher::regex("/api/.*").unwrap());
        assert!(!covers(&re, &rule("b", m(1, "/api"))), "regex: unproved");
        assert!(
            covers(&re, &rule("b", m(0, "/api/x"))),
            "one path: decidable"
        );
    }

    fn config(yaml_rules: &str, default: &str) -> Config {
        let yaml = format!(
            "clients:\n  - {{name: web, issuer: https://idp.example.org, audiences: [web], jwks_uri: https://idp.example.org/keys}}\n  - {{name: admin, issuer: https://idp.example.org, audiences: [admin], jwks_uri: https://idp.example.org/keys}}\nrules:\n{yaml_rules}default: {default}\n"
        );
        crate::config::parse(&yaml).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_clean_config_has_no_warnings() {
        let c = config(
            "  - {name: health, match: {path: /healthz, methods: [GET, HEAD]}, auth: none}\n  - {name: write, match: {prefix: /api/names, methods: [POST]}, roles: {all_of: [editor]}}\n  - {name: api, match: {prefix: /api}}\n",
            "deny",
        );
        assert_eq!(lint(&c), Report::default());
    }

    #[test]
    fn each_warning_names_its_rules() {
        let c = config(
            "  - {name: api, match: {prefix: /api}}\n  - {name: names, match: {prefix: /api/names, methods: [POST]}}\n  - {name: open, match: {prefix: /open}, auth: none}\n  - {name: re, match: {regex: '/x/.*'}}\n",
            "deny",
        );
        let r = lint(&c);
        let text: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(r.warnings.len(), 2, "{text:?}");
        assert!(text[0].contains("rules[1] `names`") && text[0].contains("rules[0] `api`"));
        assert!(text[1].contains("rules[2] `open`") && text[1].contains("any method"));
        assert_eq!(r.notes.len(), 1);
        assert!(r.notes[0].to_string().contains("rules[3] `re`"));
    }

    #[test]
    fn clients_no_rule_reaches_are_named_only_when_rules_name_clients() {
        let rules = "  - {name: web, match: {prefix: /web}, clients: [web]}\n  - {name: pub, match: {prefix: /pub, methods: [GET]}, auth: none}\n";
        let r = lint(&config(rules, "deny"));
        assert_eq!(
            r.warnings,
            vec![Warning::UnreachableClient {
                client: "admin".into()
            }]
        );
        assert!(r.warnings[0].to_string().contains("client `admin`"));
        // the default lets any valid token through: every client is reachable
        assert!(lint(&config(rules, "authenticated")).warnings.is_empty());
        // a rule that names no client admits every client
        let open = format!("{rules}  - {{name: api, match: {{prefix: /api}}}}\n");
        assert!(lint(&config(&open, "deny")).warnings.is_empty());
    }

    // ---- property: a reported containment really holds ------------------------------------

    const SEGS: [&str; 4] = ["a", "b", "ab", "c"];

    fn arb_path_matcher() -> impl Strategy<Value = PathMatcher> {
        let seg = prop::sample::select(vec!["a", "b", "ab", "*", "a*", "**"]);
        (0u8..3, prop::collection::vec(seg, 0..4)).prop_filter_map(
            "valid matcher",
            |(kind, segs)| {
                let path = format!("/{}", segs.join("/"));
                match kind {
                    0 => PathMatcher::exact(&path.replace('*', "x")).ok(),
                    1 => PathMatcher::prefix(&path.replace('*', "x")).ok(),
                    _ => PathMatcher::glob(&path).ok(),
                }
            },
        )
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        let methods = prop::option::of(prop::sample::subsequence(vec!["GET", "POST"], 1..=2));
        let hosts = prop::option::of(prop::sample::subsequence(
            vec!["x.org", "a.x.org", "*.x.org"],
            1..=2,
        ));
        (arb_path_matcher(), methods, hosts).prop_map(|(path, methods, hosts)| Rule {
            name: "r".into(),
            path,
            methods: methods.map(|ms| ms.into_iter().map(String::from).collect()),
            hosts: hosts.map(|hs| {
                hs.into_iter()
                    .filter_map(|h| HostMatcher::parse(h).ok())
                    .collect()
            }),
            auth: AuthMode::Required,
            conditions: Vec::new(),
        })
    }

    /// Normalised request paths up to three segments deep, with and without a trailing slash.
    fn request_paths() -> Vec<String> {
        let mut out = vec!["/".to_owned()];
        let mut level = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for base in &level {
                for s in SEGS {
                    let p = format!("{base}/{s}");
                    out.push(p.clone());
                    out.push(format!("{p}/"));
                    next.push(p);
                }
            }
            level = next;
        }
        out
    }

    proptest! {
        #[test]
        fn a_reported_shadowed_rule_never_matches_what_its_shadow_does_not(a in arb_rule(), b in arb_rule()) {
            if covers(&a, &b) {
                for path in request_paths() {
                    for method in ["GET", "POST", "PUT"] {
                        for host in ["x.org", "a.x.org", "b.a.x.org", "y.org"] {
                            if b.matches(method, host, &path) {
                                prop_assert!(
                                    a.matches(method, host, &path),
                                    "covers({:?}, {:?}) but {} {} {} matches only the second",
                                    a.path, b.path, method, host, path
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
