//! The `jwks` (key-set defaults: refresh, cooldown, staleness, timeout, CA file).

use super::*;

impl Validator<'_> {
    pub(super) fn jwks(&mut self, raw: RawJwks) -> JwksSettings {
        let d = JwksSettings::default();
        let s = JwksSettings {
            refresh_interval: self.duration(
                "jwks.refresh_interval",
                raw.refresh_interval,
                d.refresh_interval,
            ),
            min_refresh_interval: self.duration(
                "jwks.min_refresh_interval",
                raw.min_refresh_interval,
                d.min_refresh_interval,
            ),
            max_stale: self.duration("jwks.max_stale", raw.max_stale, d.max_stale),
            timeout: self.duration("jwks.timeout", raw.timeout, d.timeout),
            ca_file: raw
                .ca_file
                .map(|c| PathBuf::from(self.expand("jwks.ca_file", &c))),
        };
        if s.refresh_interval.is_zero() {
            self.err("jwks.refresh_interval", "must be greater than zero");
        }
        if s.refresh_interval < s.min_refresh_interval {
            self.err(
                "jwks.refresh_interval",
                "must not be shorter than jwks.min_refresh_interval",
            );
        }
        if s.timeout.is_zero() || s.timeout > Duration::from_secs(60) {
            self.err("jwks.timeout", "must be greater than zero and at most 60s");
        }
        let mut s = s;
        if s.timeout > s.min_refresh_interval && !s.min_refresh_interval.is_zero() {
            // A fetch may not outlast the cooldown between fetches: otherwise unknown-kid
            // refetches against a stalling IdP follow each other back to back. Clamped (not an
            // error) so that existing configs with a short cooldown keep loading.
            tracing::warn!(
                timeout = ?s.timeout,
                min_refresh_interval = ?s.min_refresh_interval,
                "jwks.timeout is longer than jwks.min_refresh_interval; using min_refresh_interval as the timeout"
            );
            s.timeout = s.min_refresh_interval;
        }
        if s.max_stale < s.refresh_interval {
            self.err(
                "jwks.max_stale",
                "must not be shorter than jwks.refresh_interval",
            );
        }
        if let Some(ca) = &s.ca_file {
            match crate::outside::files::read_blocking(ca) {
                Err(e) => self.err("jwks.ca_file", e.to_string()),
                Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => {}
                    _ => self.err(
                        "jwks.ca_file",
                        format!("{} holds no PEM certificate", ca.display()),
                    ),
                },
            }
        }
        s
    }
}
