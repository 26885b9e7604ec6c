//! Prometheus metrics: the name and meaning of every metric the server
//! records, in one place, and the one-line helpers the rest of the server
//! records them through (the `metrics` facade). The exporter keeps them in
//! memory and `GET /metrics` renders them in the text exposition format;
//! it has no listener of its own.
//!
//! No label takes a document id or a user id: each label has a small, fixed
//! set of values (an error code, a limit, a store operation), so the number
//! of series stays bounded however many documents and users there are.
//!
//! Until [`install`] runs (library tests, an embedding program) every helper
//! records into the facade's no-op recorder, and costs next to nothing.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::protocol::ErrorCode;

/// Gauge: WebSocket connections open on this node.
pub const CONNECTIONS: &str = "tandem_connections";
/// Gauge: document tasks running on this node (closing ones included).
pub const DOCUMENTS_OPEN: &str = "tandem_documents_open";
/// Counter: ops made durable and published.
pub const OPS: &str = "tandem_ops_total";
/// Counter, label `code`: ops refused with an `error` (the protocol's code).
pub const OPS_REFUSED: &str = "tandem_ops_refused_total";
/// Histogram, seconds: from an op's arrival at its session to its `ack`
/// being queued to that session (after the store made it durable).
pub const ACK_LATENCY: &str = "tandem_ack_latency_seconds";
/// Histogram, seconds: one group commit of a store's writer (PostgreSQL:
/// the transaction up to `COMMIT`; SQLite: the transaction written to the
/// WAL, whose `fdatasync` is pipelined behind it).
pub const COMMIT_SECONDS: &str = "tandem_commit_seconds";
/// Histogram: ops carried by one group commit that carried any.
pub const COMMIT_BATCH_OPS: &str = "tandem_commit_batch_ops";
/// Counter, label `op`: store failures (`commit`, `flush`, `connect`,
/// `read`, `ping`), not counting answers such as "not found" or a conflict.
pub const STORE_ERRORS: &str = "tandem_store_errors_total";
/// Counter: sessions dropped because they could not keep up (close 1013).
pub const OUTBOUND_DROPPED: &str = "tandem_outbound_dropped_total";
/// Counter, label `limit`: messages, joins, connections and requests
/// refused by a rate limit.
pub const RATE_LIMITED: &str = "tandem_rate_limited_total";
/// Histogram: how many committed ops an incoming op was transformed over.
pub const TRANSFORM_DEPTH: &str = "tandem_transform_depth";
/// Gauge: document leases this node holds (cluster).
pub const LEASES_HELD: &str = "tandem_leases_held";
/// Counter, label `kind`: lease acquisitions, renewals lost, releases, ...
/// (cluster; the kinds are the cluster code's, a fixed set).
pub const LEASE_CHANGES: &str = "tandem_lease_changes_total";

/// Every metric, for tests and the dashboard: `(name, type)`.
pub const ALL: &[(&str, &str)] = &[
    (CONNECTIONS, "gauge"),
    (DOCUMENTS_OPEN, "gauge"),
    (OPS, "counter"),
    (OPS_REFUSED, "counter"),
    (ACK_LATENCY, "histogram"),
    (COMMIT_SECONDS, "histogram"),
    (COMMIT_BATCH_OPS, "histogram"),
    (STORE_ERRORS, "counter"),
    (OUTBOUND_DROPPED, "counter"),
    (RATE_LIMITED, "counter"),
    (TRANSFORM_DEPTH, "histogram"),
    (LEASES_HELD, "gauge"),
    (LEASE_CHANGES, "counter"),
];

/// Buckets of the latency histograms, seconds: an ack on a local SQLite
/// file takes about a millisecond, one behind a loaded PostgreSQL tens;
/// anything past a few seconds is an outage, not a latency.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
/// Buckets of the ops per group commit: powers of two up to the writers'
/// batch limits.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];
/// Buckets of the transform depth: 0 for a client that was up to date, a
/// few for typists on one document, up to the history window (2,000) and
/// the catch-up limit (20,000) for clients far behind.
const DEPTH_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0, 20_000.0,
];
/// How often the recorder's histograms are folded (what the exporter's own
/// listener would do): samples wait in a buffer until then, so without it
/// an unscraped node would hold every sample.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as this process's metrics recorder and
/// describes every metric; later calls return the same handle. `None` when
/// another recorder was installed first (by an embedding program): then
/// there is nothing to render.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match build() {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics is unavailable");
                None
            }
        })
        .clone()
}

/// The installed recorder's handle, if [`install`] succeeded.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned().flatten()
}

fn build() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(ACK_LATENCY.into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(COMMIT_BATCH_OPS.into()), BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TRANSFORM_DEPTH.into()), DEPTH_BUCKETS)?
        .install_recorder()
}

fn describe() {
    describe_gauge!(CONNECTIONS, "WebSocket connections open on this node");
    describe_gauge!(DOCUMENTS_OPEN, "documents open on this node");
    describe_counter!(OPS, "ops made durable and published");
    describe_counter!(OPS_REFUSED, "ops refused, by error code");
    describe_histogram!(
        ACK_LATENCY,
        Unit::Seconds,
        "from an op's arrival at its session to its ack being queued"
    );
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "one store group commit");
    describe_histogram!(COMMIT_BATCH_OPS, "ops in one store group commit");
    describe_counter!(STORE_ERRORS, "store failures, by operation");
    describe_counter!(
        OUTBOUND_DROPPED,
        "sessions dropped as too slow (close 1013)"
    );
    describe_counter!(RATE_LIMITED, "refused by a rate limit, by limit");
    describe_histogram!(
        TRANSFORM_DEPTH,
        "committed ops an incoming op was transformed over"
    );
    describe_gauge!(LEASES_HELD, "document leases held by this node");
    describe_counter!(LEASE_CHANGES, "lease changes, by kind");
    // The series without labels exist from the start (at 0), so a
    // dashboard shows 0 rather than "no data" and `absent()` alerts work.
    for name in [CONNECTIONS, DOCUMENTS_OPEN, LEASES_HELD] {
        gauge!(name).increment(0.0);
    }
    for name in [OPS, OUTBOUND_DROPPED] {
        counter!(name).increment(0);
    }
}

/// Folds the histograms every [`UPKEEP_INTERVAL`] until `stop` turns true.
pub async fn upkeep_until(handle: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// A connection was counted in (+1) or out (-1).
pub fn connections(delta: i64) {
    gauge!(CONNECTIONS).increment(delta as f64);
}

/// A document task was counted in (+1) or out (-1).
pub fn documents_open(delta: i64) {
    gauge!(DOCUMENTS_OPEN).increment(delta as f64);
}

/// `n` ops were published.
pub fn ops_committed(n: usize) {
    counter!(OPS).increment(n as u64);
}

/// An op was refused with `code`.
pub fn op_refused(code: ErrorCode) {
    counter!(OPS_REFUSED, "code" => code_label(code)).increment(1);
}

/// An op that arrived at its session at `arrived` was acked.
pub fn acked(arrived: Instant) {
    histogram!(ACK_LATENCY).record(arrived.elapsed().as_secs_f64());
}

/// A group commit that began at `started` carried `ops` ops.
pub fn group_commit(started: Instant, ops: usize) {
    histogram!(COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    if ops > 0 {
        histogram!(COMMIT_BATCH_OPS).record(ops as f64);
    }
}

/// A store operation (`commit`, `flush`, `connect`, `read`, `ping`) failed.
pub fn store_error(op: &'static str) {
    counter!(STORE_ERRORS, "op" => op).increment(1);
}

/// A store operation failed with `e`: counted as [`store_error`] when it
/// is the store's failure (unreachable, corrupt), not an answer about the
/// data (not found, a conflict, a value it refuses).
pub fn store_failed(op: &'static str, e: &crate::store::StoreError) {
    use crate::store::StoreError;
    if matches!(e, StoreError::Unavailable(_) | StoreError::Corrupt(_)) {
        store_error(op);
    }
}

/// `n` sessions were dropped as too slow.
pub fn outbound_dropped(n: usize) {
    counter!(OUTBOUND_DROPPED).increment(n as u64);
}

/// Something was refused by the rate limit `limit` (a fixed description,
/// such as "ops from this user").
pub fn rate_limited(limit: &'static str) {
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// An op was transformed over `depth` committed ops.
pub fn transform_depth(depth: u64) {
    histogram!(TRANSFORM_DEPTH).record(depth as f64);
}

/// This node took (+1) or let go of (-1) a document lease.
pub fn lease_held(delta: i64) {
    gauge!(LEASES_HELD).increment(delta as f64);
}

/// A lease changed: `kind` is one of a fixed set (acquired, lost, ...).
pub fn lease_changed(kind: &'static str) {
    counter!(LEASE_CHANGES, "kind" => kind).increment(1);
}

/// The protocol's name of `code`, as a label value.
fn code_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadMessage => "bad_message",
        ErrorCode::BadOp => "bad_op",
        ErrorCode::UnknownRev => "unknown_rev",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::NotFound => "not_found",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::Unavailable => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_the_wire_codes() {
        for code in [
            ErrorCode::BadMessage,
            ErrorCode::BadOp,
            ErrorCode::UnknownRev,
            ErrorCode::Forbidden,
            ErrorCode::Unauthenticated,
            ErrorCode::NotFound,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
        ] {
            let wire = serde_json::to_value(code).expect("serialises");
            assert_eq!(wire.as_str(), Some(code_label(code)));
        }
    }

    #[test]
    fn every_name_is_listed_once_and_prometheus_safe() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for name in names {
            assert!(name.starts_with("tandem_"));
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
