//! The `clients` (issuer, key source, audiences, algorithms, claims to headers, introspection, binding).

use super::*;

impl Validator<'_> {
    pub(super) fn clients(&mut self, raw: Vec<RawClient>) -> Vec<ClientConfig> {
        if raw.is_empty() {
            self.err("clients", "must list at least one client");
        }
        let mut names = HashSet::new();
        let mut out: Vec<ClientConfig> = Vec::new();
        for (i, c) in raw.into_iter().enumerate() {
            let f = |k: &str| format!("clients[{i}].{k}");
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                self.err(f("name"), format!("`{}` must match [a-z0-9-]+", c.name));
            }
            if !names.insert(c.name.clone()) {
                self.err(f("name"), format!("duplicate client name `{}`", c.name));
            }
            self.expansion_failed = false;
            let issuer = self.expand(&f("issuer"), &c.issuer);
            let issuer_unexpanded = std::mem::take(&mut self.expansion_failed);
            if issuer.is_empty() {
                self.err(f("issuer"), "must not be empty");
            }
            let keys = match (c.jwks_uri, c.jwks_file) {
                (Some(_), Some(_)) => {
                    self.err(f("jwks_uri"), "set at most one of jwks_uri and jwks_file");
                    KeySource::Discovery {
                        issuer: issuer.clone(),
                    }
                }
                (Some(uri), None) => {
                    let uri = self.expand(&f("jwks_uri"), &uri);
                    if let Err(m) = validate_url(&uri) {
                        self.err(f("jwks_uri"), m.to_string());
                    }
                    KeySource::Uri(uri)
                }
                (None, Some(file)) => {
                    let file = self.expand(&f("jwks_file"), &file);
                    if file.is_empty() {
                        self.err(f("jwks_file"), "must not be empty");
                    }
                    KeySource::File(PathBuf::from(file))
                }
                (None, None) => {
                    if let (false, Err(m)) = (issuer_unexpanded, validate_url(&issuer)) {
                        self.err(f("issuer"), format!("{m} (discovery fetches {{issuer}}/.well-known/openid-configuration)"));
                    }
                    KeySource::Discovery {
                        issuer: issuer.clone(),
                    }
                }
            };
            let remote = !matches!(keys, KeySource::File(_));
            let audiences: Vec<String> = c
                .audiences
                .iter()
                .map(|a| self.expand(&f("audiences"), a))
                .collect();
            if audiences.is_empty() {
                self.err(f("audiences"), "must list at least one audience");
            }
            if audiences.iter().any(String::is_empty) {
                self.err(f("audiences"), "an audience must not be empty");
            }
            let authorized_parties = c.authorized_parties.map(|list| {
                if list.is_empty() {
                    self.err(
                        f("authorized_parties"),
                        "when set, must list at least one party",
                    );
                }
                list.iter()
                    .map(|a| self.expand(&f("authorized_parties"), a))
                    .collect::<Vec<_>>()
            });
            let algorithms = match c.algorithms {
                None => vec![Alg::RS256],
                Some(list) => {
                    if list.is_empty() {
                        self.err(f("algorithms"), "must list at least one algorithm");
                    }
                    let mut algs = Vec::new();
                    for a in &list {
                        match Alg::parse(a) {
                            Some(alg) => {
                                if !algs.contains(&alg) {
                                    algs.push(alg)
                                }
                            }
                            None if a.to_ascii_uppercase().starts_with("HS") => self.err(
                                f("algorithms"),
                                if remote {
                                    format!("`{a}`: HMAC algorithms cannot be used with keys fetched from an issuer")
                                } else {
                                    format!("`{a}`: HMAC (shared-secret) algorithms are not supported")
                                },
                            ),
                            None => self.err(
                                f("algorithms"),
                                format!("`{a}` is not supported (use RS256/384/512, PS256/384/512, ES256/384, EdDSA)"),
                            ),
                        }
                    }
                    algs
                }
            };
            let leeway = self.duration(&f("leeway"), c.leeway, Duration::from_secs(30));
            if leeway > MAX_LEEWAY {
                self.err(f("leeway"), "must be at most 10m");
            }
            if let Some(t) = &c.require_typ
                && t.is_empty()
            {
                self.err(f("require_typ"), "must not be empty");
            }
            let roles = c.roles.unwrap_or_default();
            for (j, r) in roles.iter().enumerate() {
                if r.is_empty() {
                    self.err(
                        format!("clients[{i}].roles[{j}]"),
                        "a claim path must not be empty",
                    );
                }
            }
            let mut headers = Vec::new();
            for (name, claim) in c.headers.unwrap_or_default() {
                let lname = name.to_ascii_lowercase();
                let field = format!("clients[{i}].headers.{name}");
                if !is_header_name(&lname) {
                    self.err(&field, format!("`{name}` is not a valid header name"));
                } else if is_reserved_header(&lname) {
                    self.err(&field, format!("`{name}` cannot be set from a claim"));
                }
                if claim.is_empty() {
                    self.err(&field, "the claim path must not be empty");
                }
                headers.push((lname, claim));
            }
            // Two clients of one issuer sharing an audience: a token could route to both.
            for other in &out {
                if other.issuer == issuer
                    && let Some(a) = audiences.iter().find(|a| other.audiences.contains(a))
                {
                    self.err(
                        f("audiences"),
                        format!(
                            "audience `{a}` of issuer {issuer} is also used by client `{}`",
                            other.name
                        ),
                    );
                }
            }
            let introspection = c.introspection.map(|ri| {
                let fi = |k: &str| format!("clients[{i}].introspection.{k}");
                let endpoint = ri.endpoint.map(|e| self.expand(&fi("endpoint"), &e));
                match &endpoint {
                    Some(e) => {
                        if let Err(m) = validate_url(e) {
                            self.err(fi("endpoint"), m.to_string());
                        }
                    }
                    None if !matches!(keys, KeySource::Discovery { .. }) => self.err(
                        fi("endpoint"),
                        "required when the client does not use discovery (jwks_uri / jwks_file)",
                    ),
                    None => {}
                }
                let client_id = self.expand(&fi("client_id"), &ri.client_id);
                if client_id.is_empty() {
                    self.err(fi("client_id"), "must not be empty");
                }
                let secret = self.expand(&fi("client_secret"), &ri.client_secret);
                if secret.is_empty() {
                    self.err(fi("client_secret"), "must not be empty");
                }
                let cache_ttl =
                    self.duration(&fi("cache_ttl"), ri.cache_ttl, Duration::from_secs(60));
                if cache_ttl > Duration::from_secs(3600) {
                    self.err(
                        fi("cache_ttl"),
                        "must be at most 1h (it bounds how late a revocation is seen)",
                    );
                }
                let timeout = self.duration(&fi("timeout"), ri.timeout, Duration::from_secs(2));
                if timeout.is_zero() || timeout > Duration::from_secs(30) {
                    self.err(fi("timeout"), "must be greater than zero and at most 30s");
                }
                IntrospectionConfig {
                    endpoint,
                    client_id,
                    client_secret: Secret::new(secret),
                    opaque: ri.opaque,
                    check_jwts: ri.check_jwts.unwrap_or(true),
                    cache_ttl,
                    timeout,
                }
            });
            let (binding, binding_errors) =
                binding::compile(c.binding, &f("binding"), leeway, |field, s| {
                    self.expansion_failed = false;
                    let v = self.expand(field, s);
                    (!std::mem::take(&mut self.expansion_failed)).then_some(v)
                });
            for (field, message) in binding_errors {
                self.err(field, message);
            }
            out.push(ClientConfig {
                name: c.name,
                issuer,
                keys,
                audiences,
                authorized_parties,
                algorithms,
                leeway,
                require_typ: c.require_typ,
                roles,
                headers,
                introspection,
                binding,
            });
        }
        let opaque: Vec<&str> = out
            .iter()
            .filter(|c| c.introspection.as_ref().is_some_and(|i| i.opaque))
            .map(|c| c.name.as_str())
            .collect();
        if opaque.len() > 1 {
            self.err(
                "clients",
                format!(
                    "at most one client may accept opaque tokens (introspection.opaque), not {}",
                    opaque.join(", ")
                ),
            );
        }
        out
    }
}
