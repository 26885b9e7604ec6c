//! Admin replay, export and import end to end against the real `tandem`
//! binary: a document is written through the WebSocket protocol, the server
//! is stopped, and `tandem replay|export|import` run on its SQLite file
//! (replay verifies, catches a corrupted snapshot by revision, forks with
//! `--into`; an export imported into a fresh database gives the same
//! document). Also `POST /api/admin/documents/{id}/replay` on a running
//! server.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// One client makes `edits` random edits to `doc`, each acked before the
/// next. Returns the text at every revision (index = revision).
async fn make_history(server: &Server, doc: &str, edits: usize, seed: u64) -> Vec<String> {
    let mut c = OtClient::join(&server.ws_url(doc), "ann").await;
    let mut rng = Rng::new(seed);
    let mut texts = vec![c.text.clone()];
    for _ in 0..edits {
        let op = random_op(&mut rng, c.text.chars().count());
        c.edit(op).await;
        c.settle(0).await;
        assert_eq!(c.rev as usize, texts.len());
        texts.push(c.text.clone());
    }
    c.socket.take().expect("socket").close().await;
    texts
}

/// A document `doc` with `edits` edits in a SQLite file at `db`; the server
/// is stopped when this returns.
async fn stopped_history(db: &Path, doc: &str, edits: usize, seed: u64) -> Vec<String> {
    let server = Server::start(db, &["--snapshot-interval", "5"]);
    let texts = make_history(&server, doc, edits, seed).await;
    assert_eq!(server.terminate(), Some(0));
    texts
}

/// Runs `tandem ARGS`: (exit code, stdout, stderr).
fn tandem(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("TANDEM_LOG", "warn")
        .output()
        .expect("run tandem");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn replay_verifies_then_catches_a_corrupted_snapshot() {
    let dir = tmp();
    let db = dir.path().join("t.db");
    let texts = stopped_history(&db, "rep", 30, 7).await;
    let rev = texts.len() - 1;

    let (code, out, err) = tandem(&["replay", "rep", "--verify", "--data", path(&db)]);
    assert_eq!(code, 0, "replay --verify: {out} {err}");
    assert!(out.contains(&format!("replayed {rev} ops")), "{out}");
    assert!(out.contains("ok"), "{out}");

    let (code, out, err) = tandem(&["replay", "rep", "--verify", "--json", "--data", path(&db)]);
    assert_eq!(code, 0, "{out} {err}");
    let report: Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["ops_replayed"].as_u64(), Some(rev as u64));
    assert!(report["snapshots_checked"].as_u64().expect("checked") >= 6);

    let conn = rusqlite::Connection::open(&db).expect("open db");
    let changed = conn
        .execute(
            "UPDATE snapshots SET text = 'x' WHERE document = ?1 AND rev = 10",
            ["rep"],
        )
        .expect("corrupt");
    assert_eq!(changed, 1, "snapshot 10 exists");
    drop(conn);

    let (code, out, err) = tandem(&["replay", "rep", "--verify", "--data", path(&db)]);
    assert_ne!(code, 0, "corruption not detected: {out} {err}");
    assert!(out.contains("mismatch at revision 10"), "{out}");
    assert!(out.contains("FAILED"), "{out}");

    let (code, out, _) = tandem(&["replay", "rep", "--verify", "--json", "--data", path(&db)]);
    assert_ne!(code, 0);
    let report: Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(report["ok"], false);
    let mismatches = report["mismatches"].as_array().expect("mismatches");
    assert_eq!(mismatches.len(), 1, "{report}");
    assert_eq!(mismatches[0]["rev"], 10);
    assert_eq!(mismatches[0]["kind"], "snapshot");

    // Without --verify only the op log is checked, and it is intact.
    let (code, out, err) = tandem(&["replay", "rep", "--data", path(&db)]);
    assert_eq!(code, 0, "{out} {err}");

    // A fork is refused while the source does not verify.
    let (code, out, _) = tandem(&["replay", "rep", "--into", "copy", "--data", path(&db)]);
    assert_ne!(code, 0, "{out}");
    let (code, _, _) = tandem(&["replay", "copy", "--data", path(&db)]);
    assert_ne!(code, 0, "fork created from a corrupt document");

    // Unknown documents and revisions beyond the latest are errors.
    let (code, _, _) = tandem(&["replay", "nope", "--data", path(&db)]);
    assert_ne!(code, 0);
    let too_far = (rev + 1).to_string();
    let (code, _, _) = tandem(&["replay", "rep", "--to", &too_far, "--data", path(&db)]);
    assert_ne!(code, 0);
}

#[tokio::test]
async fn export_then_import_into_a_fresh_database() {
    let dir = tmp();
    let db = dir.path().join("t.db");
    let texts = stopped_history(&db, "exp", 40, 11).await;
    let rev = (texts.len() - 1) as u64;
    let file = dir.path().join("exp.jsonl");

    let (code, out, err) = tandem(&["export", "exp", "--out", path(&file), "--data", path(&db)]);
    assert_eq!(code, 0, "{out} {err}");
    let dump = std::fs::read_to_string(&file).expect("read export");
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(
        lines.len() as u64,
        rev + 2,
        "header, snapshot 0, one per op"
    );
    let header: Value = serde_json::from_str(lines[0]).expect("header");
    assert_eq!(header["id"], "exp");
    assert_eq!(header["rev"].as_u64(), Some(rev));
    let op: Value = serde_json::from_str(lines[2]).expect("op line");
    for key in ["rev", "client", "seq", "author", "op", "time"] {
        assert!(op.get(key).is_some(), "{key} in {op}");
    }
    assert_eq!(op["rev"], 1);
    assert_eq!(op["author"], "ann");

    // Standard output is the default.
    let (code, stdout, _) = tandem(&["export", "exp", "--data", path(&db)]);
    assert_eq!(code, 0);
    assert_eq!(stdout, dump);

    let db2 = dir.path().join("fresh.db");
    let (code, out, err) = tandem(&["import", path(&file), "--data", path(&db2)]);
    assert_eq!(code, 0, "import: {out} {err}");
    let (code, out, err) = tandem(&["import", path(&file), "--id", "other", "--data", path(&db2)]);
    assert_eq!(code, 0, "import --id: {out} {err}");
    // The same id twice is a conflict.
    let (code, _, _) = tandem(&["import", path(&file), "--data", path(&db2)]);
    assert_ne!(code, 0);

    let (code, out, err) = tandem(&["replay", "exp", "--verify", "--data", path(&db2)]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains(&format!("replayed {rev} ops")), "{out}");

    let server = Server::start(&db2, &[]);
    let last = texts.last().expect("text").clone();
    assert_eq!(fetch_doc(&server.addr, "exp").await, (rev, last.clone()));
    assert_eq!(fetch_doc(&server.addr, "other").await, (rev, last));
    // The imported history reads like the original.
    let path12 = "/api/documents/other/text?rev=12";
    let (status, body) = http_request(&server.addr, "GET", path12, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, texts[12]);
}

#[tokio::test]
async fn into_forks_the_text_at_a_revision() {
    let dir = tmp();
    let db = dir.path().join("t.db");
    let texts = stopped_history(&db, "src", 20, 3).await;

    let (code, out, err) = tandem(&[
        "replay",
        "src",
        "--to",
        "12",
        "--into",
        "forked",
        "--data",
        path(&db),
    ]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("replayed 12 ops"), "{out}");
    // Forking onto an existing document fails.
    let (code, _, _) = tandem(&[
        "replay",
        "src",
        "--to",
        "3",
        "--into",
        "forked",
        "--data",
        path(&db),
    ]);
    assert_ne!(code, 0);

    let server = Server::start(&db, &[]);
    assert_eq!(
        fetch_doc(&server.addr, "forked").await,
        (0, texts[12].clone())
    );
    let latest = (texts.len() - 1) as u64;
    assert_eq!(
        fetch_doc(&server.addr, "src").await,
        (latest, texts[texts.len() - 1].clone())
    );
}

#[tokio::test]
async fn admin_endpoint_returns_the_report() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &["--snapshot-interval", "5"]);
    let addr = server.addr.clone();
    let texts = make_history(&server, "live", 25, 5).await;
    let rev = (texts.len() - 1) as u64;

    let path = "/api/admin/documents/live/replay";
    let (status, body) = http_request(&addr, "POST", path, None).await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["ops_replayed"].as_u64(), Some(rev));
    assert_eq!(report["to"].as_u64(), Some(rev));
    assert!(report["mismatches"].as_array().expect("list").is_empty());
    assert!(report["ops_per_sec"].is_number());
    assert!(report["elapsed_ms"].is_number());

    let (status, body) = http_request(&addr, "POST", &format!("{path}?to=7"), None).await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["ops_replayed"], 7);
    assert_eq!(report["ok"], true);

    let (status, _) = http_request(&addr, "POST", &format!("{path}?to=9999"), None).await;
    assert_eq!(status, 400);
    let (status, _) =
        http_request(&addr, "POST", "/api/admin/documents/missing/replay", None).await;
    assert_eq!(status, 404);
}
