//! The `rules` (matchers, auth mode, role / scope / claim / client conditions).

use super::*;

impl Validator<'_> {
    pub(super) fn rules(&mut self, raw: Vec<RawRule>, clients: &[ClientConfig]) -> Vec<Rule> {
        let client_index: HashMap<&str, usize> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let f = |k: &str| format!("rules[{i}].{k}");
            if r.name.is_empty() || !r.name.bytes().all(|b| b.is_ascii_graphic()) {
                self.err(
                    f("name"),
                    "must be non-empty printable ASCII without spaces",
                );
            }
            if !names.insert(r.name.clone()) {
                self.err(f("name"), format!("duplicate rule name `{}`", r.name));
            }
            let m = r.matcher;
            let given = [&m.path, &m.prefix, &m.glob, &m.regex]
                .iter()
                .filter(|x| x.is_some())
                .count();
            let path = if given != 1 {
                self.err(
                    f("match"),
                    "must have exactly one of path, prefix, glob, regex",
                );
                PathMatcher::Prefix("/".into())
            } else {
                let built = if let Some(p) = m.path {
                    PathMatcher::exact(&p).map_err(|e| ("match.path", e))
                } else if let Some(p) = m.prefix {
                    PathMatcher::prefix(&p).map_err(|e| ("match.prefix", e))
                } else if let Some(g) = m.glob {
                    PathMatcher::glob(&g).map_err(|e| ("match.glob", e))
                } else {
                    PathMatcher::regex(m.regex.as_deref().unwrap_or_default())
                        .map_err(|e| ("match.regex", e))
                };
                match built {
                    Ok(p) => p,
                    Err((k, e)) => {
                        self.err(f(k), e);
                        PathMatcher::Prefix("/".into())
                    }
                }
            };
            let methods = m.methods.map(|list| {
                if list.is_empty() {
                    self.err(
                        f("match.methods"),
                        "when set, must list at least one method",
                    );
                }
                list.iter()
                    .map(|mm| {
                        let up = mm.to_ascii_uppercase();
                        if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase() || b == b'-')
                        {
                            self.err(f("match.methods"), format!("`{mm}` is not an HTTP method"));
                        }
                        up
                    })
                    .collect::<Vec<_>>()
            });
            let hosts = m.hosts.map(|list| {
                if list.is_empty() {
                    self.err(f("match.hosts"), "when set, must list at least one host");
                }
                list.iter()
                    .filter_map(|h| match HostMatcher::parse(h) {
                        Ok(hm) => Some(hm),
                        Err(e) => {
                            self.err(f("match.hosts"), e);
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            });
            let auth = match r.auth.as_deref() {
                None | Some("required") => AuthMode::Required,
                Some("optional") => AuthMode::Optional,
                Some("none") => AuthMode::None,
                Some(other) => {
                    self.err(
                        f("auth"),
                        format!("must be required, optional or none, not `{other}`"),
                    );
                    AuthMode::Required
                }
            };
            let mut conditions = Vec::new();
            // `clients` first: a token of the wrong client is `client_not_allowed`, whatever
            // roles it lacks.
            if let Some(list) = r.clients {
                if list.is_empty() {
                    self.err(f("clients"), "when set, must list at least one client");
                }
                let mut idx = Vec::new();
                for c in &list {
                    match client_index.get(c.as_str()) {
                        Some(&n) => idx.push(n),
                        None => self.err(f("clients"), format!("unknown client `{c}`")),
                    }
                }
                conditions.push(Condition::Clients(idx));
            }
            if let Some(ra) = r.roles {
                self.any_all(
                    &f("roles"),
                    ra,
                    &mut conditions,
                    Condition::RolesAll,
                    Condition::RolesAny,
                );
            }
            if let Some(sa) = r.scopes {
                self.any_all(
                    &f("scopes"),
                    sa,
                    &mut conditions,
                    Condition::ScopesAll,
                    Condition::ScopesAny,
                );
            }
            if let Some(claims) = r.claims {
                for (path, value) in claims {
                    let field = format!("rules[{i}].claims.{path}");
                    match yaml_to_claim_values(&value) {
                        Some(vals) if !vals.is_empty() && !path.is_empty() => {
                            conditions.push(Condition::Claim { path, values: vals })
                        }
                        _ => self.err(
                            field,
                            "must be a string, number or boolean, or a non-empty list of them",
                        ),
                    }
                }
            }
            if auth != AuthMode::Required && !conditions.is_empty() {
                self.err(
                    f("auth"),
                    "roles, scopes, claims and clients conditions need `auth: required` (they can only hold for a verified token)",
                );
            }
            let mode = match r.mode.as_deref() {
                None | Some("enforce") => RuleMode::Enforce,
                Some("audit") => RuleMode::Audit,
                Some(other) => {
                    self.err(
                        f("mode"),
                        format!("must be enforce or audit, not `{other}`"),
                    );
                    RuleMode::Enforce
                }
            };
            out.push(Rule {
                name: r.name,
                path,
                methods,
                hosts,
                auth,
                conditions,
                mode,
            });
        }
        out
    }

    pub(super) fn any_all(
        &mut self,
        field: &str,
        ra: RawAnyAll,
        out: &mut Vec<Condition>,
        all: fn(Vec<String>) -> Condition,
        any: fn(Vec<String>) -> Condition,
    ) {
        if ra.all_of.is_none() && ra.any_of.is_none() {
            self.err(field, "must have any_of and/or all_of");
        }
        if let Some(l) = ra.all_of {
            if l.is_empty() || l.iter().any(String::is_empty) {
                self.err(
                    format!("{field}.all_of"),
                    "must be a non-empty list of non-empty names",
                );
            }
            out.push(all(l));
        }
        if let Some(l) = ra.any_of {
            if l.is_empty() || l.iter().any(String::is_empty) {
                self.err(
                    format!("{field}.any_of"),
                    "must be a non-empty list of non-empty names",
                );
            }
            out.push(any(l));
        }
    }
}

fn yaml_to_claim_values(v: &serde_yaml::Value) -> Option<Vec<serde_json::Value>> {
    fn scalar(v: &serde_yaml::Value) -> Option<serde_json::Value> {
        match v {
            serde_yaml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
            serde_yaml::Value::Bool(b) => Some(serde_json::Value::Bool(*b)),
            serde_yaml::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Some(serde_json::Value::from(i))
                } else if let Some(u) = n.as_u64() {
                    Some(serde_json::Value::from(u))
                } else {
                    n.as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .map(serde_json::Value::Number)
                }
            }
            _ => None,
        }
    }
    match v {
        serde_yaml::Value::Sequence(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}
