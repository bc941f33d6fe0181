//! The fuzz corpora on stable: every file in `fuzz/corpus/<target>/` goes through the very
//! function its cargo-fuzz target calls (`fuzz/src/checks.rs`, included below), plus a fixed,
//! seeded set of byte-level mutations of each file. The targets' invariants (canonical token
//! encoding, extract never returns forbidden bytes, normalised paths are idempotent and free of
//! `//`, `/./`, `/../`, config parsing never panics) are asserted on all of them.
//!
//! Real coverage-guided fuzzing needs nightly: `scripts/fuzz-smoke.sh`.

#![allow(clippy::unwrap_used)]

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("token_parse", checks::token_parse),
    ("auth_header", checks::auth_header),
    ("path_normalize", checks::path_normalize),
    ("config_parse", checks::config_parse),
    ("dpop_proof", checks::dpop_proof),
];

/// Mutations per corpus file (deterministic; the seed is fixed).
const MUTATIONS: usize = 200;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// xorshift64*: a tiny deterministic generator, so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting bytes for these parsers: separators, escapes, JSON and YAML punctuation.
const DICTIONARY: &[&[u8]] = &[
    b".",
    b"/",
    b"%",
    b"%2F",
    b"%2e",
    b"..",
    b"//",
    b"\\",
    b"?",
    b"#",
    b"=",
    b";",
    b",",
    b" ",
    b"\t",
    b"\n",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"&a",
    b"*a",
    b"${X}",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\x00",
    b"Bearer ",
    b"oidc-jwt=",
    b"e30",
    b"eyJ",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                out.splice(at..at, word.iter().copied());
            }
            3 if !out.is_empty() => {
                let from = rng.below(out.len());
                let len = rng.below(16).min(out.len() - from);
                let chunk = out[from..from + len].to_vec();
                out.splice(at..at, chunk);
            }
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out
}

#[test]
fn every_corpus_file_and_its_mutations_pass_the_fuzz_targets_invariants() {
    let mut rng = Rng(0x6f69_6463_2d61_7574);
    for (target, check) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 3,
            "fuzz/corpus/{target} needs seed files, found {}",
            files.len()
        );
        let mut runs = 0;
        for (path, bytes) in &files {
            let replay = std::panic::catch_unwind(|| check(bytes));
            assert!(replay.is_ok(), "{target}: {} fails", path.display());
            for i in 0..MUTATIONS {
                let input = mutate(&mut rng, bytes);
                let outcome = std::panic::catch_unwind(|| check(&input));
                assert!(
                    outcome.is_ok(),
                    "{target}: mutation {i} of {} fails; input {:?}",
                    path.display(),
                    String::from_utf8_lossy(&input)
                );
                runs += 1;
            }
        }
        println!(
            "fuzz corpus {target}: {} files, {runs} mutations",
            files.len()
        );
    }
}

/// The invariants can fail: inputs that break them if the code under test regressed.
#[test]
fn the_invariants_reject_what_they_should() {
    // a normalised path never keeps a dot-segment or a double slash
    for raw in ["/a/../b", "//x", "/a/./b", "/%2e%2e/x"] {
        let p = oidc_authz::core::policy::normalize_path(raw).unwrap();
        assert!(!p.contains("//") && !p.contains("/./") && !p.contains("/../"));
    }
    // a parsed token re-encodes to itself; a padded one does not parse
    let t = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
    checks::token_parse(t.as_bytes());
    assert!(oidc_authz::core::token::parse("eyJhbGciOiJSUzI1NiJ9.e30.c2ln==").is_err());
    // two Authorization headers are refused (the auth_header invariant relies on it)
    let r = std::panic::catch_unwind(|| checks::auth_header(b"Bearer a.b.c\n\nBearer a.b.c"));
    assert!(r.is_ok());
    // a parsed DPoP proof re-encodes to itself; a padded one does not parse
    let rfc9449 = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dpop_proof/rfc9449_example"),
    )
    .unwrap();
    checks::dpop_proof(rfc9449.as_bytes());
    assert!(oidc_authz::core::binding::dpop::parse(&rfc9449).is_ok());
    assert!(oidc_authz::core::binding::dpop::parse(&format!("{rfc9449}==")).is_err());
}
