//! Checks [`Settings`] at start-up, so that an impossible limit or timeout
//! is a clear error before the server listens, never a panic or a server
//! that refuses everything later.
//!
//! Each check names the `serve` flag (the settings file's key) and says
//! what the value would break. Zero where zero is meaningful stays allowed
//! (the per-address rates, where 0 turns a limit off; `--outbound-coalesce-ms
//! 0`, never hold; `--store-retry-secs 0`, tell clients at once;
//! `--document-idle-secs 0`, close a document as soon as its last client
//! leaves).

use std::time::Duration;

use crate::config::Settings;

/// Smallest `--max-message-bytes`: a `join` with a display name, a colour
/// and a resume revision is a few hundred bytes; below this no client
/// could even join.
pub const MIN_MESSAGE_BYTES: usize = 1024;
/// Largest `--max-message-bytes`: the REST body limit is 16 times this,
/// and one message is held whole in memory while it is parsed.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Fewest components an op needs to edit the middle of a document:
/// retain, insert (or delete), retain.
pub const MIN_OP_COMPONENTS: usize = 3;
/// Fewest messages queued towards one client. A join's answer and the
/// news that follows it come in bursts; the server has always raised a
/// smaller `--outbound-queue` to this.
pub const MIN_OUTBOUND_QUEUE: usize = 16;
/// Longest timeout or interval: time is added to the clock's `Instant`s,
/// which overflow (a panic) for absurd values; a year is not a timeout.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest `--outbound-coalesce-ms`: news held for more than a second makes
/// an editor that feels broken.
pub const MAX_OUTBOUND_COALESCE: Duration = Duration::from_secs(1);

/// One setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The flag (`--max-message-bytes`), or the field of [`Settings`] for
    /// the few that have none (`Limits::max_insert_chars`).
    pub setting: &'static str,
    /// Why the value cannot work.
    pub message: String,
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {}: {}", p.setting, p.message)).collect::<Vec<_>>().join("\n"))]
pub struct InvalidSettings(pub Vec<Problem>);

/// Checks every limit and timeout of `s`.
///
/// # Errors
///
/// [`InvalidSettings`] with every problem found (not only the first).
pub fn check(s: &Settings) -> Result<(), InvalidSettings> {
    let mut problems = Vec::new();
    let mut fail = |setting: &'static str, message: String| {
        problems.push(Problem { setting, message });
    };
    let l = &s.limits;
    let t = &s.timing;

    if l.max_message_bytes < MIN_MESSAGE_BYTES {
        fail(
            "--max-message-bytes",
            format!(
                "{} is less than {MIN_MESSAGE_BYTES}: no client could even join",
                l.max_message_bytes
            ),
        );
    }
    if l.max_message_bytes > MAX_MESSAGE_BYTES {
        fail(
            "--max-message-bytes",
            format!(
                "{} is more than {MAX_MESSAGE_BYTES} (1 GiB); each message is held whole in memory",
                l.max_message_bytes
            ),
        );
    }
    if l.max_document_chars == 0 {
        fail(
            "--max-document-chars",
            "0: no document could hold a character".into(),
        );
    }
    if l.max_op_components < MIN_OP_COMPONENTS {
        fail(
            "--max-op-components",
            format!(
                "{} is less than {MIN_OP_COMPONENTS} (retain, insert, retain): nobody could edit the middle of a document",
                l.max_op_components
            ),
        );
    }
    if l.max_insert_chars == 0 {
        fail(
            "Limits::max_insert_chars",
            "0: no op could insert anything".into(),
        );
    }
    for (setting, value) in [
        ("--max-clients-per-document", l.max_clients_per_document),
        ("--max-open-documents", l.max_open_documents),
        ("--max-connections", l.max_connections),
    ] {
        if value == 0 {
            fail(setting, "0: nobody could ever connect".into());
        }
    }
    if l.history_window_bytes < l.max_message_bytes {
        fail(
            "--history-window-bytes",
            format!(
                "{} cannot hold one message of --max-message-bytes ({}): every big op would leave the window at once",
                l.history_window_bytes, l.max_message_bytes
            ),
        );
    }
    if l.outbound_queue < MIN_OUTBOUND_QUEUE {
        fail(
            "--outbound-queue",
            format!(
                "{} is less than {MIN_OUTBOUND_QUEUE}: a client would be dropped as slow by one burst of news",
                l.outbound_queue
            ),
        );
    }
    if l.outbound_queue_bytes == 0 {
        fail(
            "--outbound-queue-bytes",
            "0: every client would be dropped as slow at its second message".into(),
        );
    }
    if l.rate_limit_per_sec == 0 {
        fail(
            "--rate-limit",
            "0 would refuse every message (it is not `no limit`)".into(),
        );
    }
    if l.rate_limit_burst == 0 {
        fail(
            "Limits::rate_limit_burst",
            "0 would refuse every message".into(),
        );
    }

    if t.snapshot_interval == 0 {
        fail(
            "--snapshot-interval",
            "0: a snapshot every 0 revisions is meaningless (1 takes one at every revision)".into(),
        );
    }
    if t.client_idle_timeout < Duration::from_secs(1) {
        fail(
            "--client-idle-secs",
            "0: every client would be closed as idle at once (and pinged every 0 s)".into(),
        );
    } else if t.ping_interval.is_zero() || t.ping_interval >= t.client_idle_timeout {
        fail(
            "--client-idle-secs",
            format!(
                "pings every {:?} cannot keep a client alive within {:?}",
                t.ping_interval, t.client_idle_timeout
            ),
        );
    }
    if t.presence_interval.is_zero() {
        fail(
            "Timing::presence_interval",
            "0: presence would never be paced".into(),
        );
    }
    if t.outbound_writes_per_sec == 0 {
        fail(
            "--outbound-writes-per-sec",
            "0: a document could never send news".into(),
        );
    }
    if t.outbound_coalesce > MAX_OUTBOUND_COALESCE {
        fail(
            "--outbound-coalesce-ms",
            format!(
                "{} ms is more than {} ms: others' edits would arrive seconds late",
                t.outbound_coalesce.as_millis(),
                MAX_OUTBOUND_COALESCE.as_millis()
            ),
        );
    }
    for (setting, value) in [
        ("--document-idle-secs", t.document_idle_close),
        ("--client-idle-secs", t.client_idle_timeout),
        ("--store-retry-secs", t.store_retry_limit),
    ] {
        if value > MAX_DURATION {
            fail(
                setting,
                format!(
                    "{} s is more than a year ({} s)",
                    value.as_secs(),
                    MAX_DURATION.as_secs()
                ),
            );
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(InvalidSettings(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(p: &[Problem]) -> Vec<&'static str> {
        p.iter().map(|p| p.setting).collect()
    }

    #[test]
    fn the_defaults_pass() {
        check(&Settings::default()).expect("defaults are valid");
    }

    #[test]
    fn impossible_values_are_all_reported() {
        let mut s = Settings::default();
        s.limits.max_message_bytes = 10;
        s.limits.max_connections = 0;
        s.limits.outbound_queue = 0;
        s.limits.rate_limit_per_sec = 0;
        s.timing.snapshot_interval = 0;
        s.timing.client_idle_timeout = Duration::ZERO;
        s.timing.ping_interval = Duration::ZERO;
        s.timing.document_idle_close = Duration::from_secs(u64::MAX);
        let e = check(&s).expect_err("refused");
        assert_eq!(
            settings_of(&e.0),
            [
                "--max-message-bytes",
                "--max-connections",
                "--outbound-queue",
                "--rate-limit",
                "--snapshot-interval",
                "--client-idle-secs",
                "--document-idle-secs",
            ]
        );
        let text = e.to_string();
        assert!(
            text.starts_with("invalid configuration:\n  --max-message-bytes: 10 is less than 1024"),
            "{text}"
        );
    }

    #[test]
    fn a_window_must_hold_one_message() {
        let mut s = Settings::default();
        s.limits.history_window_bytes = s.limits.max_message_bytes - 1;
        let e = check(&s).expect_err("refused");
        assert_eq!(settings_of(&e.0), ["--history-window-bytes"]);
        s.limits.history_window_bytes = s.limits.max_message_bytes;
        check(&s).expect("exactly one message fits");
    }

    #[test]
    fn meaningful_zeros_pass() {
        let mut s = Settings::default();
        s.timing.outbound_coalesce = Duration::ZERO;
        s.timing.store_retry_limit = Duration::ZERO;
        s.timing.document_idle_close = Duration::ZERO;
        s.limits.max_catchup_bytes = 0;
        s.limits.max_catchup_revisions = 0;
        s.rate.ip_requests = 0;
        check(&s).expect("valid");
    }
}
