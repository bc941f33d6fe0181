//! The `oidc-authz` binary's policy tools (DESIGN §11): `oidc-authz test` on the shipped demo
//! tests and on deliberately wrong or broken tests files, and the policy lint of `check-config`
//! (one fixture per warning, a clean fixture, `--strict`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn oidc_authz(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_oidc-authz"))
        .args(args)
        // the demo config takes these from the environment (any valid value will do offline)
        .env("DEMO_ISSUER", "http://127.0.0.1:9")
        .env("DEMO_GRPC", "127.0.0.1:0")
        .env("DEMO_ADMIN", "127.0.0.1:0")
        .env_remove("OIDC_AUTHZ_CONFIG")
        .output()
        .expect("run oidc-authz");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const DEMO: &str = "examples/demo/config.yaml";
const DEMO_TESTS: &str = "examples/demo/tests.yaml";

fn test_cmd(tests: &str, extra: &[&str]) -> Run {
    let mut args = vec!["test", "--config", DEMO, tests];
    args.extend_from_slice(extra);
    oidc_authz(&args)
}

#[test]
fn the_shipped_demo_tests_pass() {
    let r = test_cmd(DEMO_TESTS, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let n = lines.iter().filter(|l| l.starts_with("ok   ")).count();
    assert!(n >= 10, "one line per test:\n{}", r.stdout);
    assert_eq!(*lines.last().unwrap(), format!("{n} passed, 0 failed"));
    assert!(!r.stdout.contains("FAIL"));
    // never a token: no JWT (three base64url parts starting with `eyJ`) in the output
    assert!(!r.stdout.contains("eyJ") && !r.stderr.contains("eyJ"));
}

#[test]
fn a_wrong_expectation_fails_with_exit_1_and_says_why() {
    let r = test_cmd("tests/fixtures/policy/wrong.yaml", &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("ok   health needs no token"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "FAIL viewers can write names (wrong on purpose): decision: expected allow, got deny; status: expected 200, got 403"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("got deny 403 missing_required_roles (rule names-write"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.trim_end().ends_with("1 passed, 1 failed"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("eyJ"),
        "a token was printed:\n{}",
        r.stdout
    );
}

#[test]
fn errors_in_a_tests_file_name_the_test_and_the_field_with_exit_2() {
    let r = test_cmd("tests/fixtures/policy/unknown-client.yaml", &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "unknown-client.yaml: tests[0] \"a client the config does not have\": token.client: unknown client `core-mobile`"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "no test runs: {}", r.stdout);

    let r = test_cmd("tests/fixtures/policy/unknown-field.yaml", &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("tests[1] \"a typo in expect\": expect: unknown field `stauts`"),
        "{}",
        r.stderr
    );

    let r = test_cmd("tests/fixtures/policy/bad-yaml.yaml", &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("bad-yaml.yaml: tests[0] \"unterminated\": not valid YAML"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("line 4 column 1"), "{}", r.stderr);

    let r = test_cmd("tests/fixtures/policy/no-such-file.yaml", &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
}

#[test]
fn an_invalid_config_is_exit_2() {
    let r = oidc_authz(&[
        "test",
        "--config",
        "tests/fixtures/config/invalid/empty-audiences.yaml",
        DEMO_TESTS,
    ]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("clients[1].audiences"), "{}", r.stderr);
}

#[test]
fn coverage_lists_hit_counts_and_unreached_rules() {
    let r = test_cmd(DEMO_TESTS, &["--coverage"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("coverage: 4 of 4 rules reached by a test"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("every rule is reached by a test"));
    // wrong.yaml touches only `health` and `names-write`
    let r = test_cmd("tests/fixtures/policy/wrong.yaml", &["--coverage"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("coverage: 2 of 4 rules reached by a test"),
        "{}",
        r.stdout
    );
    let hit = |rule: &str| {
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{rule} ")))
            .unwrap_or_else(|| panic!("no line for {rule}:\n{}", r.stdout))
            .to_owned()
    };
    assert!(hit("health").contains("1 test(s)"), "{}", hit("health"));
    assert!(hit("reports").contains("0 test(s)  NOT REACHED"));
    assert!(
        r.stdout.contains("not reached by any test: reports, api"),
        "{}",
        r.stdout
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oidc-authz-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Well-formed XML, checked by a real parser (Python's, which CI has).
fn assert_well_formed_xml(path: &Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print(r.tag, r.get('tests'), r.get('failures'), len(r.findall('testsuite/testcase')), len(r.findall('testsuite/testcase/failure')))",
        ])
        .arg(path)
        .output()
        .expect("python3 (CI has it) parses the JUnit file");
    assert!(
        out.status.success(),
        "not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(summary, "testsuites 2 1 2 1", "{summary}");
}

#[test]
fn junit_is_written_and_well_formed() {
    let path = scratch("junit.xml");
    let r = test_cmd(
        "tests/fixtures/policy/wrong.yaml",
        &["--junit", path.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("<testcase name=\"health needs no token\""),
        "{xml}"
    );
    assert!(xml.contains("decision: expected allow, got deny"), "{xml}");
    assert!(!xml.contains("eyJ"), "a token in the report:\n{xml}");
    assert_well_formed_xml(&path);
    let _ = std::fs::remove_file(&path);

    let r = test_cmd(DEMO_TESTS, &["--junit", "/nonexistent-dir/junit.xml"]);
    assert_eq!(r.code, 2, "an unwritable report is an error: {}", r.stderr);
    assert!(r.stderr.contains("--junit /nonexistent-dir/junit.xml"));
}

// ---- check-config: the policy lint ----------------------------------------------------------

fn lint_fixture(name: &str, strict: bool) -> (Run, String) {
    let path = format!("tests/fixtures/config/lint/{name}.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let expect = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{path} has no `# expect:` line"))
        .to_owned();
    let mut args = vec!["check-config", "--config", path.as_str()];
    if strict {
        args.push("--strict");
    }
    (oidc_authz(&args), expect)
}

#[test]
fn each_lint_warning_is_printed_with_exit_0_and_is_an_error_with_strict() {
    for name in ["shadowed", "anonymous-write", "unreachable-client"] {
        // every expected fragment of the fixture is in stderr
        let names_all = |stderr: &str, expect: &str| {
            for want in expect.split('|') {
                assert!(stderr.contains(want), "{name}: want {want:?} in:\n{stderr}");
            }
        };
        let (r, expect) = lint_fixture(name, false);
        assert_eq!(r.code, 0, "{name}: {}{}", r.stdout, r.stderr);
        names_all(&r.stderr, &expect);
        assert_eq!(
            r.stderr.matches("warning: ").count(),
            1,
            "{name}: {}",
            r.stderr
        );
        assert!(r.stdout.contains(": ok ("), "{name}: {}", r.stdout);
        assert!(r.stdout.contains("1 lint warning"), "{name}: {}", r.stdout);

        let (r, expect) = lint_fixture(name, true);
        assert_eq!(r.code, 2, "{name} --strict: {}{}", r.stdout, r.stderr);
        names_all(&r.stderr, &expect);
        assert!(
            r.stderr
                .contains("1 warning (--strict: warnings are errors)"),
            "{name}: {}",
            r.stderr
        );
    }
}

#[test]
fn a_shadowed_rule_warning_names_both_rules() {
    let (r, _) = lint_fixture("shadowed", false);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap();
    assert!(
        line.contains("`names-write`") && line.contains("`api`"),
        "{line}"
    );
}

#[test]
fn regex_rules_are_skipped_and_that_is_said() {
    let (r, expect) = lint_fixture("regex", true);
    assert_eq!(
        r.code, 0,
        "a note is not a warning: {}{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains(&expect),
        "want {expect:?} in:\n{}",
        r.stderr
    );
    assert!(!r.stderr.contains("warning: "), "{}", r.stderr);
}

#[test]
fn a_clean_config_passes_strict_without_a_word() {
    for strict in [false, true] {
        let (r, _) = lint_fixture("clean", strict);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(!r.stderr.contains("warning"), "{}", r.stderr);
        assert!(
            r.stdout.contains("ok (2 clients, 4 rules)\n"),
            "{}",
            r.stdout
        );
    }
}
