//! The fuzz targets' bodies. Each target in `fuzz_targets/` is one line calling a function of
//! [`checks`]; `tests/fuzz_corpus.rs` in the main crate includes the same file to replay every
//! corpus input on stable, so the corpus and the invariants stay exercised without nightly.

pub mod checks;
