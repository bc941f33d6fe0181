//! `oidc-authz check-config`: load and validate a config file (or the config derived from the
//! JWT_OIDC_* variables), read its `jwks_file`s, and report every error at once, or one summary
//! line; then the policy lint ([`crate::tools::lint`]): its warnings and notes on stderr. Exit 0
//! when valid (warnings included), 2 on errors, or on warnings with `--strict`.

use crate::tools::compat::Source;

/// What `check-config` found: the summary line, or every error.
pub fn check(source: &Source) -> Result<(crate::tools::compat::Loaded, String), Vec<String>> {
    let loaded = source
        .load()
        .map_err(|errs| errs.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let c = &loaded.config;
    // jwks_file contents are part of the config: read them too.
    let mut errors = Vec::new();
    for (i, client) in c.clients.iter().enumerate() {
        if let crate::config::KeySource::File(p) = &client.keys {
            let r = crate::outside::files::read_blocking(p)
                .map_err(|e| e.to_string())
                .and_then(|b| crate::keys::parse_jwks(&b, "check").map_err(|e| e.to_string()));
            if let Err(e) = r {
                errors.push(format!("clients[{i}].jwks_file: {}: {e}", p.display()));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let summary = format!(
        "{source}: ok ({}, {})",
        plural(c.clients.len(), "client"),
        plural(c.rules.len(), "rule")
    );
    Ok((loaded, summary))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Run `check-config` and print its findings; the process exit code. Lint warnings are printed
/// (`warning: …`) and leave the exit code 0, unless `strict` makes them errors (exit 2).
pub fn cli(source: &Source, print: bool, strict: bool) -> u8 {
    match check(source) {
        Ok((loaded, summary)) => {
            for n in &loaded.notes {
                eprintln!("note: {n}");
            }
            let report = crate::tools::lint::lint(&loaded.config);
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for n in &report.notes {
                eprintln!("note: {n}");
            }
            if strict && !report.warnings.is_empty() {
                eprintln!(
                    "{source}: {} (--strict: warnings are errors)",
                    plural(report.warnings.len(), "warning")
                );
                return 2;
            }
            let summary = if report.warnings.is_empty() {
                summary
            } else {
                format!(
                    "{summary}; {}",
                    plural(report.warnings.len(), "lint warning")
                )
            };
            if print {
                // stdout is the YAML alone (`--print > config.yaml`); the summary goes aside.
                print!("{}", crate::config::redact_secrets(&loaded.yaml));
                if !loaded.yaml.ends_with('\n') {
                    println!();
                }
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
            0
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{source}: {} error(s)", errors.len());
            2
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_config_counts_in_words() {
        assert_eq!(super::plural(1, "client"), "1 client");
        assert_eq!(super::plural(2, "rule"), "2 rules");
        assert_eq!(super::plural(0, "rule"), "0 rules");
        let dir = std::env::temp_dir().join(format!("oidc-authz-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("one.yaml");
        std::fs::write(
            &path,
            "clients:\n  - { name: a, issuer: https://sso.example.org/realms/x, audiences: [a] }\nrules:\n  - { name: all, match: { prefix: / } }\n",
        )
        .unwrap();
        let (_, summary) = super::check(&crate::tools::compat::Source::File(path.clone())).unwrap();
        assert!(summary.ends_with("ok (1 client, 1 rule)"), "{summary}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
