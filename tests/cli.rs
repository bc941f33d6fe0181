//! The `oidc-authz` binary's `check-config`: one fixture per config failure mode, each rejected
//! with exit code 2 and a message naming the offending field (the fixture's `# expect:` line).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn check_config(path: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oidc-authz"))
        .args(["check-config", "--config"])
        .arg(path)
        .env_remove("OIDC_TEST_SURELY_UNSET")
        .output()
        .expect("run oidc-authz");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_valid_fixture_passes() {
    let (code, stdout, stderr) = check_config(Path::new("tests/fixtures/config/valid.yaml"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok (2 clients, 4 rules)"));
}

#[test]
fn every_invalid_fixture_is_rejected_naming_its_field() {
    let dir = Path::new("tests/fixtures/config/invalid");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
        let (code, stdout, stderr) = check_config(&path);
        assert_eq!(code, 2, "{}: {stdout}{stderr}", path.display());
        for want in expect.split('|') {
            assert!(
                stderr.contains(want),
                "{}: want {want:?} in:\n{stderr}",
                path.display()
            );
        }
        assert!(stderr.contains("error(s)"));
        n += 1;
    }
    assert!(n >= 30, "fixtures found: {n}");
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let (code, _, stderr) = check_config(Path::new("/nonexistent/config.yaml"));
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read /nonexistent/config.yaml"));
}

#[test]
fn serve_refuses_an_invalid_config_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_oidc-authz"))
        .args([
            "serve",
            "--config",
            "tests/fixtures/config/invalid/empty-audiences.yaml",
            "--log-format",
            "text",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clients[1].audiences"));
}

#[test]
fn serve_refuses_an_invalid_shadow_config_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_oidc-authz"))
        .args([
            "serve",
            "--config",
            "tests/fixtures/config/valid.yaml",
            "--shadow-config",
            "tests/fixtures/config/invalid/empty-audiences.yaml",
            "--log-format",
            "text",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--shadow-config tests/fixtures/config/invalid/empty-audiences.yaml: clients[1].audiences"),
        "{stderr}"
    );
}
