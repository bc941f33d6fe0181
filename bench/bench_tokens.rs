//! Keys and token files for bench/run.sh, made with the library's testkit.
//!
//!     bench_tokens --out DIR --iss ISS --aud AUD [--warm 1000] [--cold 150000] [--flood 0]
//!
//! Writes into DIR:
//! * `rs256.jwks.json` — the RSA-2048 public key (JWKS) oidc-authz and Envoy's jwt_authn trust;
//! * `warm.txt` — `--warm` distinct RS256 tokens (one per line; the warm mix, round-robin);
//! * `cold.txt` — `--cold` further distinct RS256 tokens (the cold mix: every token new);
//! * `eddsa.jwks.json`, `flood.txt` — `--flood` distinct EdDSA tokens for the memory flood
//!   (Ed25519 signs ~50× faster than RSA-2048, so a million valid tokens take seconds).
//!
//! Tokens carry Keycloak-like claims (~0.8 KiB each), are distinct by `sub`/`jti` and are
//! valid for `--ttl` seconds (default 2 h). Generation runs on every core.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, jwks, now};
use serde_json::json;

struct Args {
    out: PathBuf,
    iss: String,
    aud: String,
    warm: usize,
    cold: usize,
    flood: usize,
    ttl: i64,
}

fn parse_args() -> Args {
    let mut a = Args {
        out: PathBuf::new(),
        iss: String::new(),
        aud: String::new(),
        warm: 1000,
        cold: 150_000,
        flood: 0,
        ttl: 7200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--out" => a.out = v.into(),
            "--iss" => a.iss = v,
            "--aud" => a.aud = v,
            "--warm" => a.warm = v.parse().unwrap(),
            "--cold" => a.cold = v.parse().unwrap(),
            "--flood" => a.flood = v.parse().unwrap(),
            "--ttl" => a.ttl = v.parse().unwrap(),
            _ => {
                eprintln!("bench_tokens: unknown flag {flag}");
                std::process::exit(2)
            }
        }
    }
    if a.out.as_os_str().is_empty() || a.iss.is_empty() || a.aud.is_empty() {
        eprintln!(
            "usage: bench_tokens --out DIR --iss ISS --aud AUD [--warm N] [--cold N] [--flood N]"
        );
        std::process::exit(2)
    }
    a
}

/// Tokens `first..first+count` signed by `key`, in parallel on every core, one per line.
fn write_tokens(key: &TestKey, a: &Args, first: usize, count: usize, path: &Path) {
    let started = Instant::now();
    let iat = now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let parts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = first + t * chunk;
                let hi = (lo + chunk).min(first + count);
                s.spawn(move || {
                    let mut out = String::with_capacity((hi.saturating_sub(lo)) * 900);
                    for i in lo..hi {
                        let claims = json!({
                            "iss": a.iss, "aud": a.aud, "azp": a.aud,
                            "sub": format!("f3c1a9e2-bench-user-{i:08}"),
                            "jti": format!("{i:016x}"),
                            "iat": iat, "exp": iat + a.ttl,
                            "typ": "Bearer", "session_state": format!("s-{i:012}"),
                            "email": format!("user{i}@example.org"), "email_verified": true,
                            "name": "Bench User", "preferred_username": format!("user{i}"),
                            "realm_access": {"roles": ["viewer", "offline_access", "uma_authorization"]},
                            "scope": "openid email profile",
                        });
                        out.push_str(&key.token(&claims));
                        out.push('\n');
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for p in parts {
        f.write_all(p.as_bytes()).unwrap();
    }
    f.flush().unwrap();
    eprintln!(
        "bench_tokens: {count} {} tokens -> {} in {:.1}s",
        key.alg,
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let a = parse_args();
    std::fs::create_dir_all(&a.out).unwrap();
    let rsa = TestKey::generate(Alg::RS256, "bench-rs256");
    std::fs::write(a.out.join("rs256.jwks.json"), jwks(&[&rsa])).unwrap();
    write_tokens(&rsa, &a, 0, a.warm, &a.out.join("warm.txt"));
    if a.cold > 0 {
        write_tokens(&rsa, &a, a.warm, a.cold, &a.out.join("cold.txt"));
    }
    if a.flood > 0 {
        let ed = TestKey::generate(Alg::EdDSA, "bench-eddsa");
        std::fs::write(a.out.join("eddsa.jwks.json"), jwks(&[&ed])).unwrap();
        write_tokens(&ed, &a, 0, a.flood, &a.out.join("flood.txt"));
    }
}
