//! The history REST API end to end against the real `tandem` binary: the
//! text at every revision, op pages, diffs, revisions grouped by author,
//! blame, restore with clients connected, and bad input.

mod common;

use common::*;
use serde_json::{Value, json};
use tandem::ot::TextOp;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = http_request(addr, "GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

async fn get_text(addr: &str, doc: &str, rev: u64) -> String {
    let path = format!("/api/documents/{doc}/text?rev={rev}");
    let (status, body) = http_request(addr, "GET", &path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Two clients take turns editing, each edit acked before the next: returns
/// the text at every revision (index = revision) and each revision's author.
async fn make_history(
    a: &mut OtClient,
    b: &mut OtClient,
    edits: usize,
    seed: u64,
) -> (Vec<String>, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut texts = vec![a.text.clone()];
    let mut authors = vec![String::new()];
    for i in 0..edits {
        let rev = (texts.len() - 1) as u64;
        // Runs of a few edits by one author, then the other.
        let c = if (i / 4) % 2 == 0 { &mut *a } else { &mut *b };
        c.settle(rev).await;
        let op = random_op(&mut rng, c.text.chars().count());
        c.edit(op).await;
        c.settle(0).await;
        assert_eq!(c.rev, rev + 1);
        texts.push(c.text.clone());
        authors.push(c.name.clone());
    }
    let last = (texts.len() - 1) as u64;
    a.settle(last).await;
    b.settle(last).await;
    (texts, authors)
}

/// Applies JSON hunks to `old`.
fn apply_hunks(old: &str, hunks: &Value) -> String {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::new();
    let mut next = 0; // index of the next old line not yet copied
    for h in hunks.as_array().expect("hunks") {
        let start = h["old_start"].as_u64().expect("old_start") as usize;
        let old_count = h["old_lines"].as_u64().expect("old_lines") as usize;
        let first = if old_count == 0 { start } else { start - 1 };
        assert!(first >= next, "hunks in order");
        for line in &old_lines[next..first] {
            out.push_str(line);
        }
        next = first;
        let (mut seen_old, mut seen_new) = (0, 0);
        for l in h["lines"].as_array().expect("lines") {
            let text = l["text"].as_str().expect("text");
            match l["tag"].as_str().expect("tag") {
                "equal" => {
                    assert_eq!(old_lines[next], text, "context matches");
                    out.push_str(text);
                    next += 1;
                    seen_old += 1;
                    seen_new += 1;
                }
                "delete" => {
                    assert_eq!(old_lines[next], text, "deleted line matches");
                    next += 1;
                    seen_old += 1;
                }
                "insert" => {
                    out.push_str(text);
                    seen_new += 1;
                }
                t => panic!("unknown tag {t}"),
            }
        }
        assert_eq!(seen_old, old_count, "old_lines");
        assert_eq!(
            seen_new,
            h["new_lines"].as_u64().expect("new_lines") as usize
        );
    }
    for line in &old_lines[next..] {
        out.push_str(line);
    }
    out
}

fn counts(op: &TextOp) -> (u64, u64) {
    use tandem::ot::Component;
    op.components().fold((0, 0), |(i, d), c| match c {
        Component::Retain(_) => (i, d),
        Component::Insert(s) => (i + s.chars().count() as u64, d),
        Component::Delete(n) => (i, d + n as u64),
    })
}

on_both_stores!(history_matches_what_the_clients_saw, history_matches);

async fn history_matches(db: Db) {
    let server = Server::start_db(&db, &["--snapshot-interval", "5"]);
    let addr = server.addr.clone();
    let url = server.ws_url("hist");
    let mut a = OtClient::join(&url, "Ada").await;
    let mut b = OtClient::join(&url, "Bob").await;
    let (texts, authors) = make_history(&mut a, &mut b, 48, 11).await;
    let current = (texts.len() - 1) as u64;
    assert_eq!(
        fetch_doc(&addr, "hist").await,
        (current, texts[current as usize].clone())
    );

    // The text at every revision, and the default (current).
    for (rev, want) in texts.iter().enumerate() {
        assert_eq!(
            &get_text(&addr, "hist", rev as u64).await,
            want,
            "text at {rev}"
        );
    }
    let (status, body) = http_request(&addr, "GET", "/api/documents/hist/text", None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, texts[current as usize].as_str())
    );

    // Op pages cover every revision once, with `next` chaining them.
    let mut from = 0;
    let mut ops = Vec::new();
    loop {
        let page = get_json(
            &addr,
            &format!("/api/documents/hist/ops?from={from}&limit=7"),
        )
        .await;
        let got = page["ops"].as_array().expect("ops").clone();
        assert!(got.len() <= 7);
        ops.extend(got);
        match page["next"].as_u64() {
            Some(n) => {
                assert_eq!(n, ops.last().expect("op")["rev"].as_u64().expect("rev"));
                from = n;
            }
            None => break,
        }
    }
    assert_eq!(ops.len() as u64, current);
    let mut text = texts[0].clone();
    for (i, op) in ops.iter().enumerate() {
        let rev = op["rev"].as_u64().expect("rev");
        assert_eq!(rev, i as u64 + 1, "no gap");
        assert_eq!(op["author"].as_str(), Some(authors[rev as usize].as_str()));
        assert!(op["time"].as_i64().expect("time") > 0);
        assert!(op["client"].is_string());
        text = parse_op(&op["op"]).apply_str(&text).expect("op applies");
        assert_eq!(text, texts[rev as usize], "op {rev}");
    }
    let page = get_json(&addr, "/api/documents/hist/ops?from=10&to=20").await;
    let revs: Vec<u64> = page["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["rev"].as_u64().expect("rev"))
        .collect();
    assert_eq!(revs, (11..=20).collect::<Vec<_>>());
    assert!(page["next"].is_null());
    let page = get_json(&addr, "/api/documents/hist/ops?from=10&to=20&limit=10").await;
    assert!(page["next"].is_null(), "a full last page has no next");
    let page = get_json(&addr, "/api/documents/hist/ops?from=10&to=20&limit=9").await;
    assert_eq!(page["next"].as_u64(), Some(19));
    let page = get_json(&addr, &format!("/api/documents/hist/ops?from={current}")).await;
    assert_eq!(page, json!({"ops": [], "next": null}));

    // Diffs: the hunks turn text(A) into text(B).
    let mut pairs = vec![(0, current), (current, current), (3, 4), (0, 0)];
    for i in (0..current).step_by(5) {
        pairs.push((i, (i + 7).min(current)));
    }
    for (from, to) in pairs {
        let d = get_json(
            &addr,
            &format!("/api/documents/hist/diff?from={from}&to={to}&format=json"),
        )
        .await;
        let rebuilt = apply_hunks(&texts[from as usize], &d["hunks"]);
        assert_eq!(rebuilt, texts[to as usize], "diff {from}..{to}");
    }
    let (status, unified) = http_request(
        &addr,
        "GET",
        &format!("/api/documents/hist/diff?from=0&to={current}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        unified.starts_with(&format!("--- hist@0\n+++ hist@{current}\n@@ ")),
        "unified diff: {unified}"
    );

    // Revisions: contiguous groups covering every op, counts adding up.
    let r = get_json(&addr, "/api/documents/hist/revisions").await;
    let groups = r["revisions"].as_array().expect("revisions");
    assert!(groups.len() >= 2, "two authors make at least two groups");
    let mut at = 0;
    let (mut ins, mut del) = (0, 0);
    for g in groups {
        assert_eq!(g["from"].as_u64(), Some(at), "contiguous");
        let to = g["to"].as_u64().expect("to");
        assert!(to > at);
        for rev in at + 1..=to {
            assert_eq!(g["author"].as_str(), Some(authors[rev as usize].as_str()));
        }
        assert!(g["start"].as_i64() <= g["end"].as_i64());
        ins += g["inserted"].as_u64().expect("inserted");
        del += g["deleted"].as_u64().expect("deleted");
        at = to;
    }
    assert_eq!(at, current);
    let (want_ins, want_del) = ops
        .iter()
        .map(|o| counts(&parse_op(&o["op"])))
        .fold((0, 0), |(i, d), (a, b)| (i + a, d + b));
    assert_eq!((ins, del), (want_ins, want_del));

    // Blame: one entry per line, each naming a revision that exists and
    // the author of that revision; the line's text appears at that revision.
    let bl = get_json(&addr, "/api/documents/hist/blame").await;
    assert_eq!(bl["rev"].as_u64(), Some(current));
    let final_text = &texts[current as usize];
    let lines = bl["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), final_text.lines().count());
    for (i, (entry, line)) in lines
        .iter()
        .zip(final_text.split_inclusive('\n'))
        .enumerate()
    {
        assert_eq!(entry["line"].as_u64(), Some(i as u64 + 1));
        let rev = entry["rev"].as_u64().expect("rev");
        assert!(rev <= current);
        if rev == 0 {
            assert!(entry["author"].is_null());
        } else {
            assert_eq!(
                entry["author"].as_str(),
                Some(authors[rev as usize].as_str())
            );
        }
        // Nothing on the line changed after `rev`, so the line is in text(rev).
        assert!(
            texts[rev as usize].contains(line),
            "line {} in text at {rev}",
            i + 1
        );
    }
}

on_both_stores!(restore_reaches_every_client_as_one_op, restore_reaches);

async fn restore_reaches(db: Db) {
    let server = Server::start_db(&db, &["--snapshot-interval", "5"]);
    let addr = server.addr.clone();
    let url = server.ws_url("rest");
    let mut a = OtClient::join(&url, "Ada").await;
    let mut b = OtClient::join(&url, "Bob").await;
    let (texts, _) = make_history(&mut a, &mut b, 30, 5).await;
    let current = (texts.len() - 1) as u64;
    for (target, expect_rev) in [(12, current + 1), (current, current + 2), (0, current + 3)] {
        let (status, body) = http_request(
            &addr,
            "POST",
            "/api/documents/rest/restore",
            Some(&json!({"rev": target}).to_string()),
        )
        .await;
        assert_eq!(status, 200, "restore: {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["rev"].as_u64(), Some(expect_rev));
        a.settle(expect_rev).await;
        b.settle(expect_rev).await;
        let want = &texts[target as usize];
        assert_eq!(&a.text, want, "a after restoring {target}");
        assert_eq!(&b.text, want, "b after restoring {target}");
        assert_eq!(fetch_doc(&addr, "rest").await, (expect_rev, want.clone()));
        assert_eq!(&get_text(&addr, "rest", expect_rev).await, want);
    }
    // History keeps everything: the old revisions still read back.
    assert_eq!(
        get_text(&addr, "rest", current).await,
        texts[current as usize]
    );
    let page = get_json(&addr, &format!("/api/documents/rest/ops?from={current}")).await;
    let authors: Vec<_> = page["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["author"].as_str().expect("author").to_owned())
        .collect();
    assert_eq!(authors, ["restore", "restore", "restore"]);

    // Clients keep editing after a restore and still converge.
    let mut rng = Rng::new(99);
    for _ in 0..10 {
        let op = random_op(&mut rng, a.text.chars().count());
        a.edit(op).await;
        let op = random_op(&mut rng, b.text.chars().count());
        b.edit(op).await;
    }
    let (status, body) = http_request(
        &addr,
        "POST",
        "/api/documents/rest/restore",
        Some(r#"{"rev": 5, "author": "Carol"}"#),
    )
    .await;
    assert_eq!(status, 200, "restore while typing: {body}");
    let rev = serde_json::from_str::<Value>(&body).expect("json")["rev"]
        .as_u64()
        .expect("rev");
    for _ in 0..3 {
        let (r, _) = fetch_doc(&addr, "rest").await;
        a.settle(r).await;
        b.settle(r).await;
    }
    let (r, text) = fetch_doc(&addr, "rest").await;
    a.settle(r).await;
    b.settle(r).await;
    assert_eq!(a.text, text);
    assert_eq!(b.text, text);
    // Edits not yet published when the restore was sequenced are concurrent
    // with it and kept; the restore is one op by its author.
    let page = get_json(
        &addr,
        &format!("/api/documents/rest/ops?from={}&to={rev}", rev - 1),
    )
    .await;
    assert_eq!(page["ops"][0]["author"].as_str(), Some("Carol"));
}

#[tokio::test]
async fn bad_history_requests_are_refused() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let addr = server.addr.clone();
    let url = server.ws_url("doc");
    let mut a = OtClient::join(&url, "Ada").await;
    let mut rng = Rng::new(3);
    for _ in 0..5 {
        let op = random_op(&mut rng, a.text.chars().count());
        a.edit(op).await;
        a.settle(0).await;
    }
    assert_eq!(a.rev, 5);
    let long = "a".repeat(200);
    let cases: Vec<(String, u16, &str)> = vec![
        ("/api/documents/nope/ops".into(), 404, "not_found"),
        ("/api/documents/nope/text".into(), 404, "not_found"),
        ("/api/documents/nope/text?rev=0".into(), 404, "not_found"),
        (
            "/api/documents/nope/diff?from=0&to=0".into(),
            404,
            "not_found",
        ),
        ("/api/documents/nope/revisions".into(), 404, "not_found"),
        ("/api/documents/nope/blame".into(), 404, "not_found"),
        (
            "/api/documents/doc/ops?from=4&to=2".into(),
            400,
            "bad_message",
        ),
        (
            "/api/documents/doc/diff?from=4&to=2".into(),
            400,
            "bad_message",
        ),
        ("/api/documents/doc/ops?to=6".into(), 400, "bad_message"),
        ("/api/documents/doc/ops?from=7".into(), 400, "bad_message"),
        ("/api/documents/doc/ops?limit=0".into(), 400, "bad_message"),
        ("/api/documents/doc/text?rev=6".into(), 400, "bad_message"),
        (
            "/api/documents/doc/diff?from=0&to=6".into(),
            400,
            "bad_message",
        ),
        ("/api/documents/doc/text?rev=abc".into(), 400, "bad_message"),
        ("/api/documents/doc/text?rev=-1".into(), 400, "bad_message"),
        ("/api/documents/doc/ops?from=x".into(), 400, "bad_message"),
        (
            "/api/documents/doc/ops?limit=1.5".into(),
            400,
            "bad_message",
        ),
        (
            "/api/documents/doc/diff?from=0&to=1&format=xml".into(),
            400,
            "bad_message",
        ),
        ("/api/documents/bad!id/text".into(), 400, "bad_message"),
        (format!("/api/documents/{long}/blame"), 400, "bad_message"),
    ];
    for (path, status, code) in cases {
        let (got, body) = http_request(&addr, "GET", &path, None).await;
        assert_eq!(got, status, "GET {path}: {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(v["code"].as_str(), Some(code), "GET {path}: {body}");
        assert!(v["message"].is_string());
    }
    let posts = [
        ("/api/documents/nope/restore", r#"{"rev": 0}"#, 404),
        ("/api/documents/doc/restore", r#"{"rev": 6}"#, 400),
        ("/api/documents/doc/restore", r#"{"rev": "1"}"#, 400),
        ("/api/documents/doc/restore", r#"{}"#, 400),
        ("/api/documents/doc/restore", "not json", 400),
        (
            "/api/documents/doc/restore",
            r#"{"rev": 1, "extra": true}"#,
            400,
        ),
        (
            "/api/documents/doc/restore",
            r#"{"rev": 1, "author": ""}"#,
            400,
        ),
        ("/api/documents/bad!id/restore", r#"{"rev": 0}"#, 400),
    ];
    for (path, body, status) in posts {
        let (got, resp) = http_request(&addr, "POST", path, Some(body)).await;
        assert_eq!(got, status, "POST {path} {body}: {resp}");
        assert!(serde_json::from_str::<Value>(&resp).expect("json")["code"].is_string());
    }
    // Nothing was created or changed by the refused requests.
    let (status, _) = http_request(&addr, "GET", "/api/documents/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(fetch_doc(&addr, "doc").await, (5, a.text.clone()));
}
