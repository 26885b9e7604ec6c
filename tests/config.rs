//! The `tandem` binary's configuration: a settings file under the flags,
//! `tandem config`'s print-out (which reads back as a settings file), and
//! start-up refusing a bad file or an impossible value with status 2 and a
//! clear message, before it listens and without a panic.

use std::path::Path;
use std::process::{Command, Output};

fn tandem(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    cmd.args(args).current_dir(dir).env("RUST_BACKTRACE", "0");
    // Only what the test sets: no TANDEM_* from the caller's environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("TANDEM_") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("run tandem")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `key = value` lines, without where each came from.
fn settings(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once("  # ").map_or(l, |(kv, _)| kv).to_owned())
        .collect()
}

#[test]
fn config_prints_what_serve_would_use() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("tandem.toml"),
        "max-message-bytes = 65536\n\
         snapshot-interval = 50\n\
         database-url = \"postgres://tandem:s3cret@db/tandem?sslmode=require\"\n\
         allowed-origins = [\"self\", \"https://editor.example.com\"]\n",
    )
    .expect("write");
    let out = tandem(
        &[
            "config",
            "--config",
            "tandem.toml",
            "--snapshot-interval",
            "70",
        ],
        &[
            ("TANDEM_MAX_CONNECTIONS", "123"),
            ("TANDEM_JWT_SECRET", "hunter2"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "max-message-bytes = 65536  # file",
        "snapshot-interval = 70  # flag",
        "max-connections = 123  # env",
        "jwt-secret = \"********\"  # env",
        "database-url = \"postgres://tandem:********@db/tandem?sslmode=require\"  # file",
        "allowed-origins = [\"self\", \"https://editor.example.com\"]  # file",
        "bind = \"127.0.0.1:8080\"  # default",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("s3cret") && !text.contains("hunter2"),
        "{text}"
    );

    // The print-out is a settings file giving the same settings.
    std::fs::write(dir.path().join("printed.toml"), &text).expect("write");
    let again = tandem(&["config", "--config", "printed.toml"], &[], dir.path());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(settings(&stdout(&again)), settings(&text));
}

#[test]
fn a_bad_settings_file_stops_start_up_with_status_2() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("typo.toml"), "max-mesage-bytes = 65536\n").expect("write");
    std::fs::write(dir.path().join("broken.toml"), "bind = \n").expect("write");
    for (args, env, expected) in [
        (
            vec!["serve", "--config", "typo.toml"],
            vec![],
            "typo.toml: unknown setting \"max-mesage-bytes\"",
        ),
        (
            vec!["serve"],
            vec![("TANDEM_CONFIG", "typo.toml")],
            "unknown setting \"max-mesage-bytes\"",
        ),
        (
            vec!["serve", "--config", "broken.toml"],
            vec![],
            "broken.toml is not valid TOML",
        ),
        (
            vec!["serve", "--config", "missing.toml"],
            vec![],
            "cannot read the settings file missing.toml",
        ),
    ] {
        let out = tandem(&args, &env, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stdout(&out).contains("listening"), "{args:?}");
    }
}

#[test]
fn impossible_values_stop_start_up_with_status_2() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("t.toml"), "client-idle-secs = 0\n").expect("write");
    let out = tandem(
        &[
            "serve",
            "--config",
            "t.toml",
            "--bind",
            "127.0.0.1:0",
            "--snapshot-interval",
            "0",
            "--max-connections",
            "0",
            "--document-idle-secs",
            "18446744073709551615",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "invalid configuration:",
        "--snapshot-interval: 0",
        "--max-connections: 0",
        "--client-idle-secs: 0",
        "--document-idle-secs: 18446744073709551615 s is more than a year",
    ] {
        assert!(err.contains(expected), "no {expected:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!stdout(&out).contains("listening"));
    // No store was opened either.
    assert!(!dir.path().join("tandem.db").exists());

    // `tandem config` says the same, after printing.
    let out = tandem(&["config", "--outbound-queue", "3"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("outbound-queue = 3  # flag"));
    assert!(stderr(&out).contains("--outbound-queue: 3 is less than 16"));
}
