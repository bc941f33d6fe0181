//! The `token` (where the token is looked for, its size cap).

use super::*;

impl Validator<'_> {
    pub(super) fn token(&mut self, raw: RawToken) -> TokenConfig {
        let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
            self.err(
                "token.max_bytes",
                format!("must be between 1 and {MAX_MAX_BYTES}"),
            );
        }
        let sources = match raw.sources {
            None => vec![TokenSource::Header("authorization".into())],
            Some(list) => {
                if list.is_empty() {
                    self.err("token.sources", "must list at least one source");
                }
                let mut out = Vec::new();
                for (i, s) in list.into_iter().enumerate() {
                    let field = format!("token.sources[{i}]");
                    match (s.header, s.cookie) {
                        (Some(h), None) => {
                            let h = h.to_ascii_lowercase();
                            if !is_header_name(&h) {
                                self.err(field, format!("`{h}` is not a valid header name"));
                            }
                            out.push(TokenSource::Header(h));
                        }
                        (None, Some(c)) => {
                            if c.is_empty() || !c.bytes().all(is_cookie_name_byte) {
                                self.err(field, format!("`{c}` is not a valid cookie name"));
                            }
                            out.push(TokenSource::Cookie(c));
                        }
                        _ => self.err(field, "must have exactly one of `header` or `cookie`"),
                    }
                }
                out
            }
        };
        TokenConfig { sources, max_bytes }
    }
}
