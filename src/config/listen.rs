//! The `listen` (addresses and the transport limits of the Check port).

use super::*;

impl Validator<'_> {
    pub(super) fn listen(&mut self, mut raw: RawListen) -> Listen {
        let mut addr = |field: &str, v: Option<String>, default: &str| -> SocketAddr {
            let text = v
                .map(|s| self.expand(field, &s))
                .unwrap_or_else(|| default.to_owned());
            match text.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        field,
                        format!("`{text}` is not an address like 0.0.0.0:9001"),
                    );
                    SocketAddr::from(([0, 0, 0, 0], 0))
                }
            }
        };
        let grpc = addr("listen.grpc", raw.grpc.take(), "0.0.0.0:9001");
        let admin = addr("listen.admin", raw.admin.take(), "0.0.0.0:9002");
        let admin_grpc = addr("listen.admin_grpc", raw.admin_grpc.take(), "127.0.0.1:9003");
        let http = raw
            .http
            .take()
            .map(|v| addr("listen.http", Some(v), "0.0.0.0:9004"));
        if grpc == admin && grpc.port() != 0 {
            self.err("listen.admin", "must differ from listen.grpc");
        }
        if let Some(h) = http
            && h.port() != 0
            && (h == grpc || h == admin || h == admin_grpc)
        {
            self.err(
                "listen.http",
                "must differ from listen.grpc, listen.admin and listen.admin_grpc",
            );
        }
        if !admin_grpc.ip().is_loopback() {
            self.err(
                "listen.admin_grpc",
                "must be a loopback address (it explains decisions and lists keys; reach it with kubectl port-forward)",
            );
        }
        let limits = self.listen_limits(raw);
        Listen {
            grpc,
            admin,
            admin_grpc,
            http,
            limits,
        }
    }

    pub(super) fn listen_limits(&mut self, raw: RawListen) -> ListenLimits {
        let d = ListenLimits::default();
        let max_connections = raw.max_connections.unwrap_or(d.max_connections);
        if !(1..=1_000_000).contains(&max_connections) {
            self.err("listen.max_connections", "must be between 1 and 1000000");
        }
        let max_concurrent_streams = raw
            .max_concurrent_streams
            .unwrap_or(d.max_concurrent_streams);
        if !(1..=10_000).contains(&max_concurrent_streams) {
            self.err(
                "listen.max_concurrent_streams",
                "must be between 1 and 10000",
            );
        }
        let max_request_bytes = match raw.max_request_bytes {
            None => d.max_request_bytes,
            Some(RawBytes::Bytes(b)) => b,
            Some(RawBytes::Text(t)) => parse_size(&t).unwrap_or_else(|| {
                self.err(
                    "listen.max_request_bytes",
                    format!("`{t}` is not a size (use bytes, or e.g. 64KiB)"),
                );
                d.max_request_bytes
            }),
        };
        // 4 KiB: below that even a plain Envoy CheckRequest with a JWT does not fit. 16 MiB: the
        // transport accepts twice this per stream, and tonic reserves the announced size.
        if !(4 * 1024..=16 * 1024 * 1024).contains(&max_request_bytes) {
            self.err("listen.max_request_bytes", "must be between 4KiB and 16MiB");
        }
        let header_read_timeout = self.duration(
            "listen.header_read_timeout",
            raw.header_read_timeout,
            d.header_read_timeout,
        );
        if header_read_timeout < Duration::from_millis(100)
            || header_read_timeout > Duration::from_secs(300)
        {
            self.err("listen.header_read_timeout", "must be between 100ms and 5m");
        }
        ListenLimits {
            max_connections,
            max_concurrent_streams,
            max_request_bytes,
            header_read_timeout,
        }
    }
}
