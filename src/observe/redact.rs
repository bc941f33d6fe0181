//! The one redaction of URLs for anything shown: metric labels, logs, spans, error messages.

use reqwest::Url;

/// `url` fit to print or to use as a metric label: userinfo replaced by `***`, every query value
/// replaced by `***` (API keys travel there), fragment dropped. For text that does not parse as
/// a URL, everything up to the last `@` of the authority is replaced and the query cut, so a
/// password never survives a parse failure either.
pub fn redact(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if !url.username().is_empty() || url.password().is_some() {
                // Cannot fail for URLs with a host (userinfo implies one).
                let _ = url.set_username("***");
                let _ = url.set_password(None);
            }
            if url.query().is_some() {
                let names: Vec<String> =
                    url.query_pairs().map(|(k, _)| format!("{k}=***")).collect();
                url.set_query(Some(&names.join("&")));
            }
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => redact_unparsed(raw),
    }
}

/// Best effort for text that is not a URL: cut the query, and replace what precedes the last `@`
/// of the authority (both `/` and `\` end it, as either parser might think).
fn redact_unparsed(raw: &str) -> String {
    let raw = raw.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), raw),
    };
    let end = rest.find(['/']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}***{}{path}", &authority[at..]),
        None => format!("{scheme}{authority}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact("https://user:hunter2@idp.example.org/certs"),
            "https://***@idp.example.org/certs"
        );
        assert_eq!(
            redact("https://idp.example.org/certs?key=hunter2&x=1#frag"),
            "https://idp.example.org/certs?key=***&x=***"
        );
        assert_eq!(
            redact("https://idp.example.org/realms/a"),
            "https://idp.example.org/realms/a"
        );
        for unparsed in [
            "ht tp://u:hunter2@h/x",
            "http://u:hunter2@h\\x@y/z?k=hunter2",
        ] {
            let r = redact(unparsed);
            assert!(!r.contains("hunter2"), "{unparsed} → {r}");
        }
    }
}
