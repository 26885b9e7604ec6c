//! Admin tools over a store: replay a document's whole op log and check it
//! against every stored snapshot, export a document as JSON lines, and
//! import such an export.
//!
//! Everything here talks to a [`Store`] only (no document task), so it can
//! run from the CLI against a stopped server's database as well as from the
//! admin REST endpoint of a running one.
//!
//! Export format (one JSON value per line):
//!
//! 1. header: `{"id": "...", "language": "...", "rev": N}`
//! 2. snapshot 0: `{"rev": 0, "text": "..."}`
//! 3. one line per op, revisions 1..=N in order:
//!    `{"rev", "client", "seq", "author", "op", "time"}`

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use ropey::Rope;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{ClientId, DocId, Revision, Seq};
use crate::store::{AppendBatch, OpRecord, Store, StoreError};

/// Ops read from the store at once.
const PAGE: usize = 10_000;
/// Ops appended per batch by [`import`].
const IMPORT_BATCH: usize = 1_000;

/// Why a replay, export or import could not run at all (as opposed to a
/// replay that ran and found mismatches, which is a [`ReplayReport`]).
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The store failed (or the document does not exist).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request makes no sense (e.g. a revision beyond the latest).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the export failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The export file is malformed.
    #[error("bad export line {line}: {message}")]
    BadExport {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One thing that did not check out, at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The revision it concerns.
    pub rev: u64,
    /// `snapshot`, `missing_snapshot`, `gap`, `apply`, `corrupt`, `live`.
    pub kind: &'static str,
    /// Human-readable details.
    pub detail: String,
}

/// What a replay did and found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The document.
    pub id: String,
    /// The revision replayed up to.
    pub to: u64,
    /// The document's latest revision in the store.
    pub latest: u64,
    /// Ops applied.
    pub ops_replayed: u64,
    /// Stored snapshots compared with the replayed text.
    pub snapshots_checked: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: f64,
    /// Ops applied per second.
    pub ops_per_sec: f64,
    /// Whether everything checked out (no mismatch, `to` reached).
    pub ok: bool,
    /// Every problem found, with its revision.
    pub mismatches: Vec<Mismatch>,
    /// The replayed text at `to` (when it was reached). Not serialized.
    #[serde(skip)]
    pub text: Option<String>,
}

/// Rebuilds `doc` from its snapshot 0 by applying every op up to `to`
/// (default: the latest revision), checking every stored snapshot on the way
/// equals the replayed text at its revision, and, when `live_text` is given,
/// that the final text equals it.
///
/// # Errors
///
/// [`ReplayError`] when the document does not exist, `to` is beyond its
/// latest revision, or the store fails. Inconsistent data is not an error:
/// it is reported as mismatches.
pub async fn replay(
    store: &dyn Store,
    doc: &DocId,
    to: Option<Revision>,
    live_text: Option<&str>,
) -> Result<ReplayReport, ReplayError> {
    replay_with(store, doc, to, live_text, true).await
}

/// [`replay`], optionally without comparing stored snapshots (only the op
/// log is checked to apply without gaps).
///
/// # Errors
///
/// As [`replay`].
pub async fn replay_with(
    store: &dyn Store,
    doc: &DocId,
    to: Option<Revision>,
    live_text: Option<&str>,
    check_snapshots: bool,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let meta = store.document(doc).await?.ok_or(StoreError::NotFound)?;
    let to = to.unwrap_or(meta.rev);
    if to > meta.rev {
        return Err(ReplayError::Invalid(format!(
            "revision {to} is beyond the latest revision {}",
            meta.rev
        )));
    }
    let mut report = ReplayReport {
        id: doc.to_string(),
        to: to.0,
        latest: meta.rev.0,
        ops_replayed: 0,
        snapshots_checked: 0,
        elapsed_ms: 0.0,
        ops_per_sec: 0.0,
        ok: false,
        mismatches: Vec::new(),
        text: None,
    };
    let snapshot_revs: BTreeSet<u64> = if check_snapshots {
        store
            .snapshot_revisions(doc)
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect()
    } else {
        BTreeSet::new()
    };
    for &rev in snapshot_revs.range(meta.rev.0 + 1..) {
        report.mismatches.push(Mismatch {
            rev,
            kind: "snapshot",
            detail: format!("snapshot beyond the latest revision {}", meta.rev),
        });
    }
    let reached = walk(store, doc, to.0, &snapshot_revs, &mut report).await?;
    if let Some(rope) = reached {
        if let Some(live) = live_text
            && rope != live
        {
            report.mismatches.push(Mismatch {
                rev: to.0,
                kind: "live",
                detail: format!(
                    "replayed text ({} chars) differs from the live text ({} chars)",
                    rope.len_chars(),
                    live.chars().count()
                ),
            });
        }
        report.text = Some(rope.to_string());
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.elapsed_ms = elapsed * 1000.0;
    report.ops_per_sec = if elapsed > 0.0 {
        report.ops_replayed as f64 / elapsed
    } else {
        0.0
    };
    report.ok = report.text.is_some() && report.mismatches.is_empty();
    Ok(report)
}

/// Applies ops `1..=to` to snapshot 0, recording mismatches. Returns the
/// text at `to`, or `None` when the replay could not get there.
async fn walk(
    store: &dyn Store,
    doc: &DocId,
    to: u64,
    snapshot_revs: &BTreeSet<u64>,
    report: &mut ReplayReport,
) -> Result<Option<Rope>, ReplayError> {
    let first = match store.snapshot_at_or_before(doc, Revision(0)).await {
        Ok(Some(s)) if s.rev.0 == 0 => s,
        Ok(_) => {
            report.mismatches.push(Mismatch {
                rev: 0,
                kind: "missing_snapshot",
                detail: "no snapshot 0 to replay from".into(),
            });
            return Ok(None);
        }
        Err(StoreError::Corrupt(m)) => {
            report.mismatches.push(Mismatch {
                rev: 0,
                kind: "corrupt",
                detail: m,
            });
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if snapshot_revs.contains(&0) {
        report.snapshots_checked += 1;
    }
    let mut rope = Rope::from_str(&first.text);
    let mut after = 0;
    while after < to {
        let page = match store.ops(doc, Revision(after), Revision(to), PAGE).await {
            Ok(p) => p,
            Err(StoreError::Corrupt(m)) => {
                report.mismatches.push(Mismatch {
                    rev: after + 1,
                    kind: "corrupt",
                    detail: format!("ops after revision {after} do not parse: {m}"),
                });
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if page.is_empty() {
            report.mismatches.push(Mismatch {
                rev: after + 1,
                kind: "gap",
                detail: format!("no ops after revision {after}"),
            });
            return Ok(None);
        }
        for op in &page {
            if op.rev.0 != after + 1 {
                report.mismatches.push(Mismatch {
                    rev: after + 1,
                    kind: "gap",
                    detail: format!("expected revision {} but found {}", after + 1, op.rev),
                });
                return Ok(None);
            }
            if let Err(e) = op.op.apply(&mut rope, usize::MAX) {
                report.mismatches.push(Mismatch {
                    rev: op.rev.0,
                    kind: "apply",
                    detail: format!("op does not apply: {e}"),
                });
                return Ok(None);
            }
            after = op.rev.0;
            report.ops_replayed += 1;
            if snapshot_revs.contains(&after) {
                check_snapshot(store, doc, after, &rope, report).await?;
            }
        }
    }
    Ok(Some(rope))
}

async fn check_snapshot(
    store: &dyn Store,
    doc: &DocId,
    rev: u64,
    rope: &Rope,
    report: &mut ReplayReport,
) -> Result<(), ReplayError> {
    report.snapshots_checked += 1;
    match store.snapshot_at_or_before(doc, Revision(rev)).await? {
        Some(s) if s.rev.0 == rev => {
            if *rope != s.text.as_str() {
                report.mismatches.push(Mismatch {
                    rev,
                    kind: "snapshot",
                    detail: format!(
                        "stored snapshot ({} chars) differs from the replayed text ({} chars)",
                        s.text.chars().count(),
                        rope.len_chars()
                    ),
                });
            }
        }
        _ => report.mismatches.push(Mismatch {
            rev,
            kind: "missing_snapshot",
            detail: "listed snapshot could not be read".into(),
        }),
    }
    Ok(())
}

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    id: String,
    language: String,
    rev: u64,
}

/// The second line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotLine {
    rev: u64,
    text: String,
}

/// An op line of an export.
#[derive(Debug, Deserialize)]
struct OpLine {
    rev: u64,
    client: String,
    seq: u64,
    author: String,
    op: serde_json::Value,
    time: i64,
}

/// What an export or import covered.
#[derive(Debug, Clone, Serialize)]
pub struct TransferSummary {
    /// The document written or read.
    pub id: String,
    /// Its revision.
    pub rev: u64,
    /// Ops written or read.
    pub ops: u64,
}

fn json_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), ReplayError> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes `doc` as JSON lines (see the module docs) up to its latest
/// revision at the time of the call.
///
/// # Errors
///
/// When the document does not exist, its log has a gap, or writing fails.
pub async fn export(
    store: &dyn Store,
    doc: &DocId,
    out: &mut dyn Write,
) -> Result<TransferSummary, ReplayError> {
    let meta = store.document(doc).await?.ok_or(StoreError::NotFound)?;
    let first = store
        .snapshot_at_or_before(doc, Revision(0))
        .await?
        .filter(|s| s.rev.0 == 0)
        .ok_or_else(|| StoreError::Corrupt(format!("document {doc} has no snapshot 0")))?;
    json_line(
        out,
        &Header {
            id: doc.to_string(),
            language: meta.language.clone(),
            rev: meta.rev.0,
        },
    )?;
    json_line(
        out,
        &SnapshotLine {
            rev: 0,
            text: first.text,
        },
    )?;
    let mut after = 0;
    while after < meta.rev.0 {
        let page = store.ops(doc, Revision(after), meta.rev, PAGE).await?;
        if page.is_empty() {
            return Err(StoreError::Corrupt(format!("ops missing after revision {after}")).into());
        }
        for op in &page {
            if op.rev.0 != after + 1 {
                return Err(StoreError::Corrupt(format!(
                    "expected revision {} but found {}",
                    after + 1,
                    op.rev
                ))
                .into());
            }
            json_line(
                out,
                &serde_json::json!({
                    "rev": op.rev, "client": op.client, "seq": op.seq,
                    "author": op.author, "op": op.op, "time": op.time_ms,
                }),
            )?;
            after = op.rev.0;
        }
    }
    out.flush()?;
    Ok(TransferSummary {
        id: doc.to_string(),
        rev: meta.rev.0,
        ops: meta.rev.0,
    })
}

/// Reads an export and creates the document under `id` (default: the id in
/// the export), appending its ops in batches. Every op is checked to follow
/// the previous revision and to apply to the text before it is appended;
/// after the import the new document is replayed and must verify.
///
/// # Errors
///
/// When the export is malformed, the document exists already
/// ([`StoreError::Conflict`]), or the store fails. A failure after the
/// document was created leaves it partially imported.
pub async fn import(
    store: &dyn Store,
    input: &mut dyn BufRead,
    id: Option<DocId>,
) -> Result<TransferSummary, ReplayError> {
    let mut lines = input.lines().enumerate();
    let mut next_line = |what: &str| -> Result<(usize, String), ReplayError> {
        match lines.next() {
            Some((n, Ok(l))) => Ok((n + 1, l)),
            Some((_, Err(e))) => Err(e.into()),
            None => Err(ReplayError::BadExport {
                line: 0,
                message: format!("missing {what}"),
            }),
        }
    };
    let bad = |line: usize, message: String| ReplayError::BadExport { line, message };
    let (n, l) = next_line("header")?;
    let header: Header = serde_json::from_str(&l).map_err(|e| bad(n, e.to_string()))?;
    let (n, l) = next_line("snapshot 0")?;
    let first: SnapshotLine = serde_json::from_str(&l).map_err(|e| bad(n, e.to_string()))?;
    if first.rev != 0 {
        return Err(bad(n, "the second line must be snapshot 0".into()));
    }
    let id = match id {
        Some(id) => id,
        None => DocId::parse(&header.id).map_err(|e| bad(1, e.to_string()))?,
    };
    store
        .create_document(&id, &header.language, &first.text)
        .await?;
    let mut rope = Rope::from_str(&first.text);
    let mut rev = 0u64;
    let mut batch: Vec<Arc<OpRecord>> = Vec::with_capacity(IMPORT_BATCH);
    while rev < header.rev {
        let (n, l) = next_line("op")?;
        if l.trim().is_empty() {
            continue;
        }
        let line: OpLine = serde_json::from_str(&l).map_err(|e| bad(n, e.to_string()))?;
        if line.rev != rev + 1 {
            return Err(bad(
                n,
                format!("expected revision {} but found {}", rev + 1, line.rev),
            ));
        }
        let op =
            crate::store::decode_op(&line.op.to_string()).map_err(|e| bad(n, e.to_string()))?;
        op.apply(&mut rope, usize::MAX)
            .map_err(|e| bad(n, format!("op does not apply: {e}")))?;
        let client = ClientId::parse(&line.client).map_err(|e| bad(n, e.to_string()))?;
        rev = line.rev;
        batch.push(Arc::new(OpRecord {
            rev: Revision(rev),
            client,
            seq: Seq(line.seq),
            author: line.author,
            op,
            time_ms: line.time,
        }));
        if batch.len() >= IMPORT_BATCH || rev == header.rev {
            store
                .append(AppendBatch {
                    epoch: crate::ids::LeaseEpoch::ZERO,
                    doc: id.clone(),
                    ops: std::mem::take(&mut batch),
                    snapshot: Some((Revision(rev), rope.clone())),
                })
                .await?;
        }
    }
    for (n, l) in lines {
        if !l?.trim().is_empty() {
            return Err(bad(n + 1, "ops beyond the header's revision".into()));
        }
    }
    let report = replay(store, &id, None, Some(&rope.to_string())).await?;
    if !report.ok || report.latest != header.rev {
        return Err(ReplayError::Invalid(format!(
            "imported document {id} does not verify: {:?}",
            report.mismatches
        )));
    }
    Ok(TransferSummary {
        id: id.to_string(),
        rev,
        ops: rev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::{Component, TextOp};
    use crate::store::sqlite::SqliteStore;

    fn op(rev: u64, len: usize, ins: &str) -> Arc<OpRecord> {
        Arc::new(OpRecord {
            rev: Revision(rev),
            client: ClientId::parse("c1").expect("client"),
            seq: Seq(rev),
            author: "ann".into(),
            op: TextOp::from_components([Component::Retain(len), Component::Insert(ins)]),
            time_ms: 1_000 + i64::try_from(rev).expect("rev"),
        })
    }

    /// A document "d" with `n` ops each appending "ab", snapshots every 3.
    async fn fixture(store: &SqliteStore, n: u64) -> String {
        let id = DocId::parse("d").expect("id");
        store
            .create_document(&id, "rust", "x")
            .await
            .expect("create");
        let mut text = String::from("x");
        for rev in 1..=n {
            let len = text.chars().count();
            text.push_str("ab");
            let snapshot = (rev % 3 == 0).then(|| (Revision(rev), Rope::from_str(&text)));
            store
                .append(AppendBatch {
                    epoch: crate::ids::LeaseEpoch::ZERO,
                    doc: id.clone(),
                    ops: vec![op(rev, len, "ab")],
                    snapshot,
                })
                .await
                .expect("append");
        }
        text
    }

    #[tokio::test]
    async fn replay_export_import_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("a.db")).expect("open");
        let text = fixture(&store, 10).await;
        let id = DocId::parse("d").expect("id");

        let report = replay(&store, &id, None, Some(&text))
            .await
            .expect("replay");
        assert!(report.ok, "{report:?}");
        assert_eq!(report.ops_replayed, 10);
        assert_eq!(report.snapshots_checked, 4, "0, 3, 6, 9");
        assert_eq!(report.text.as_deref(), Some(text.as_str()));

        let report = replay(&store, &id, None, Some("other"))
            .await
            .expect("replay");
        assert!(!report.ok);
        assert_eq!(report.mismatches[0].kind, "live");
        assert_eq!(report.mismatches[0].rev, 10);

        let report = replay(&store, &id, Some(Revision(4)), None)
            .await
            .expect("replay");
        assert_eq!(report.text.as_deref(), Some("xabababab"));
        assert!(matches!(
            replay(&store, &id, Some(Revision(11)), None).await,
            Err(ReplayError::Invalid(_))
        ));

        let mut dump = Vec::new();
        let summary = export(&store, &id, &mut dump).await.expect("export");
        assert_eq!(summary.rev, 10);
        let other = SqliteStore::open(dir.path().join("b.db")).expect("open");
        let new = DocId::parse("copy").expect("id");
        let summary = import(&other, &mut dump.as_slice(), Some(new.clone()))
            .await
            .expect("import");
        assert_eq!(summary.rev, 10);
        let report = replay(&other, &new, None, Some(&text))
            .await
            .expect("replay");
        assert!(report.ok, "{report:?}");
        let meta = other.document(&new).await.expect("meta").expect("exists");
        assert_eq!(meta.language, "rust");
    }

    #[tokio::test]
    async fn import_refuses_bad_exports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("a.db")).expect("open");
        let header = r#"{"id":"d","language":"rust","rev":2}"#;
        let snap = r#"{"rev":0,"text":"x"}"#;
        let op1 = r#"{"rev":1,"client":"c","seq":1,"author":"a","op":[1,"y"],"time":1}"#;
        let gap = r#"{"rev":3,"client":"c","seq":2,"author":"a","op":[2,"y"],"time":1}"#;
        let wrong_len = r#"{"rev":2,"client":"c","seq":2,"author":"a","op":[5,"y"],"time":1}"#;
        for (name, lines, line) in [
            ("gap", vec![header, snap, op1, gap], 4),
            ("apply", vec![header, snap, op1, wrong_len], 4),
            ("short", vec![header, snap, op1], 0),
            ("header", vec!["nope"], 1),
        ] {
            let id = DocId::parse(name).expect("id");
            let input = lines.join("\n");
            match import(&store, &mut input.as_bytes(), Some(id)).await {
                Err(ReplayError::BadExport { line: l, .. }) => assert_eq!(l, line, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
