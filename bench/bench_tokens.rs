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
//!
//! DPoP mode (bench/run.sh's `dpop` part, run again before each round so every proof's `iat` is
//! fresh):
//!
//!     bench_tokens --out DIR --iss ISS --aud AUD --dpop-tokens 1000 --dpop-proofs 200000 \
//!                  --htu http://bench.local/api/items [--htm GET]
//!
//! writes, with a new RSA-2048 issuer key (nothing of the default mode):
//! * `dpop.jwks.json` — that issuer key (JWKS);
//! * `plain.txt` — `--dpop-tokens` RS256 tokens without `cnf` (the same claims otherwise);
//! * `dpop-warmup.txt` — one `token<TAB>proof` line per DPoP-bound token (fills the cache);
//! * `dpop.txt` — `--dpop-proofs` `token<TAB>proof` lines, the bound tokens round-robin, every
//!   proof new (its own `jti`).
//!
//! Each bound token has its own ES256 (P-256) proof key and `cnf.jkt` = that key's RFC 7638
//! thumbprint (computed here, not with the server's code). A proof is `{typ: dpop+jwt, alg:
//! ES256, jwk}` . `{jti, htm, htu, iat: now, ath: base64url(SHA-256(token))}`, as RFC 9449 §4.2
//! describes a proof for a protected-resource request.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_authz::keys::Alg;
use oidc_authz::testkit::{TestKey, jwks, now};
use serde_json::{Value, json};

struct Args {
    out: PathBuf,
    iss: String,
    aud: String,
    warm: usize,
    cold: usize,
    flood: usize,
    ttl: i64,
    dpop_tokens: usize,
    dpop_proofs: usize,
    htu: String,
    htm: String,
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
        dpop_tokens: 0,
        dpop_proofs: 0,
        htu: "http://bench.local/api/items".into(),
        htm: "GET".into(),
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
            "--dpop-tokens" => a.dpop_tokens = v.parse().unwrap(),
            "--dpop-proofs" => a.dpop_proofs = v.parse().unwrap(),
            "--htu" => a.htu = v,
            "--htm" => a.htm = v,
            _ => {
                eprintln!("bench_tokens: unknown flag {flag}");
                std::process::exit(2)
            }
        }
    }
    if a.out.as_os_str().is_empty() || a.iss.is_empty() || a.aud.is_empty() {
        eprintln!(
            "usage: bench_tokens --out DIR --iss ISS --aud AUD [--warm N] [--cold N] [--flood N]\n\
             \x20      bench_tokens --out DIR --iss ISS --aud AUD --dpop-tokens N --dpop-proofs N \
             [--htu URL] [--htm GET]"
        );
        std::process::exit(2)
    }
    a
}

/// The claims of bench token `i` (Keycloak-like).
fn claims(a: &Args, i: usize, iat: i64) -> Value {
    json!({
        "iss": a.iss, "aud": a.aud, "azp": a.aud,
        "sub": format!("f3c1a9e2-bench-user-{i:08}"),
        "jti": format!("{i:016x}"),
        "iat": iat, "exp": iat + a.ttl,
        "typ": "Bearer", "session_state": format!("s-{i:012}"),
        "email": format!("user{i}@example.org"), "email_verified": true,
        "name": "Bench User", "preferred_username": format!("user{i}"),
        "realm_access": {"roles": ["viewer", "offline_access", "uma_authorization"]},
        "scope": "openid email profile",
    })
}

/// `f(i)` for `i` in `0..count`, in parallel on every core, concatenated in order.
fn parallel(count: usize, f: impl Fn(usize, &mut String) + Sync) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = (t * chunk).min(count);
                let hi = (lo + chunk).min(count);
                s.spawn(move || {
                    let mut out = String::with_capacity((hi - lo) * 900);
                    for i in lo..hi {
                        f(i, &mut out);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn write_parts(path: &Path, parts: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for p in parts {
        f.write_all(p.as_bytes()).unwrap();
    }
    f.flush().unwrap();
}

/// Tokens `first..first+count` signed by `key`, in parallel on every core, one per line.
fn write_tokens(key: &TestKey, a: &Args, first: usize, count: usize, path: &Path) {
    let started = Instant::now();
    let iat = now();
    let parts = parallel(count, |i, out| {
        out.push_str(&key.token(&claims(a, first + i, iat)));
        out.push('\n');
    });
    write_parts(path, &parts);
    eprintln!(
        "bench_tokens: {count} {} tokens -> {} in {:.1}s",
        key.alg,
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A DPoP client: its ES256 key, the proof header (base64url, the same for every proof), and
/// the bound token with its `ath`.
struct DpopClient {
    key: TestKey,
    header_b64: String,
    token: String,
    ath: String,
}

/// RFC 7638 thumbprint of a P-256 public JWK: SHA-256 of `{"crv","kty","x","y"}` in that
/// order, no whitespace, base64url.
fn ec_thumbprint(jwk: &Value) -> String {
    let canonical = format!(
        r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["crv"].as_str().unwrap(),
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    b64(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
}

impl DpopClient {
    fn proof(&self, a: &Args, jti: &str, iat: i64) -> String {
        let claims = json!({"jti": jti, "htm": a.htm, "htu": a.htu, "iat": iat, "ath": self.ath});
        let input = format!("{}.{}", self.header_b64, b64(claims.to_string().as_bytes()));
        let sig = self.key.sign_raw(Alg::ES256, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// The DPoP mode (module docs).
fn dpop_mode(a: &Args) {
    let started = Instant::now();
    let issuer = TestKey::generate(Alg::RS256, "bench-dpop-issuer");
    std::fs::write(a.out.join("dpop.jwks.json"), jwks(&[&issuer])).unwrap();
    let n = a.dpop_tokens.max(1);
    let iat = now();
    let plain = parallel(n, |i, out| {
        out.push_str(&issuer.token(&claims(a, i, iat)));
        out.push('\n');
    });
    write_parts(&a.out.join("plain.txt"), &plain);
    let clients: Vec<DpopClient> = std::thread::scope(|s| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let issuer = &issuer;
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let key = TestKey::generate(Alg::ES256, "dpop");
                            let mut jwk = key.jwk(false);
                            let o = jwk.as_object_mut().unwrap();
                            o.remove("kid");
                            o.remove("use");
                            let mut c = claims(a, n + i, iat);
                            c["cnf"] = json!({"jkt": ec_thumbprint(&jwk)});
                            let token = issuer.token(&c);
                            let ath =
                                b64(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
                            let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
                            let header_b64 = b64(header.to_string().as_bytes());
                            (
                                i,
                                DpopClient {
                                    key,
                                    header_b64,
                                    token,
                                    ath,
                                },
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, DpopClient)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, c)| c).collect()
    });
    // Proof jtis: `w<i>` for the warm-up, `p<i>` for the measured proofs; unique per run (the
    // server's replay memory is per process and the server is restarted with every new set).
    let iat = now();
    let line = |c: &DpopClient, jti: &str, out: &mut String| {
        out.push_str(&c.token);
        out.push('\t');
        out.push_str(&c.proof(a, jti, iat));
        out.push('\n');
    };
    let warm = parallel(n, |i, out| line(&clients[i], &format!("w{i}"), out));
    write_parts(&a.out.join("dpop-warmup.txt"), &warm);
    let proofs = parallel(a.dpop_proofs, |i, out| {
        line(&clients[i % n], &format!("p{i}"), out)
    });
    write_parts(&a.out.join("dpop.txt"), &proofs);
    eprintln!(
        "bench_tokens: {n} plain + {n} DPoP-bound RS256 tokens, {} ES256 proofs -> {} in {:.1}s",
        n + a.dpop_proofs,
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let a = parse_args();
    std::fs::create_dir_all(&a.out).unwrap();
    if a.dpop_tokens > 0 {
        dpop_mode(&a);
        return;
    }
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
