#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oidc_authz_fuzz::checks::dpop_proof(data));
