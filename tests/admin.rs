//! The admin API against the real server, on both stores: the listing
//! shows who is connected to which open document (client, user, address,
//! since when, last heard); closing a document and disconnecting a session
//! close them with 1001 and lose nothing acked; `DELETE /api/documents/{id}`
//! closes the sessions with 4404 and removes the document's ops,
//! snapshots, grants and links from the store; and whoever is not an admin
//! gets 401 or 403 while nothing changes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tandem::auth::token::TokenSigner;
use tandem::ids::{DocId, Revision};
use tandem::store::SharedStore;

const SECRET: &str = "admin-test-secret";
const ADMIN_TOKEN: &str = "let-me-in-0123456789";

fn token(sub: &str, admin: bool) -> String {
    TokenSigner::hs256(SECRET.as_bytes())
        .expect("signer")
        .issue(sub, Some(sub), admin, Duration::from_secs(600))
        .expect("token")
}

/// An HTTP/1.1 request with extra headers: status and body.
async fn request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = &server.addr;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let what = format!("the reply to {method} {path}");
    let buf = within(WAIT, &what, async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        buf
    })
    .await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut left = rest;
        while let Some((size, after)) = left.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            left = &after[n + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    (status, body)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET /api/admin/documents` as `headers`, which must be let in.
async fn listing(server: &Server, headers: &[(&str, &str)]) -> Value {
    let (status, body) = request(server, "GET", "/api/admin/documents", headers, None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON listing")
}

/// The sessions the listing shows on `doc` (none when it is not open).
fn sessions_on(listing: &Value, doc: &str) -> Vec<Value> {
    listing["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .find(|d| d["id"] == doc)
        .map(|d| d["sessions"].as_array().expect("sessions").clone())
        .unwrap_or_default()
}

/// Joins `doc` as `name` on a new socket (with `query`, e.g. a token);
/// returns the socket and its client id.
async fn join(server: &Server, doc: &str, name: &str, query: &str) -> (Socket, String) {
    let mut url = server.ws_url(doc);
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let mut s = Socket::connect(&url).await;
    s.send(&json!({"type": "join", "user": {"name": name}}))
        .await;
    let joined = s.recv_type("joined").await;
    let client = joined["client"].as_str().expect("client id").to_owned();
    (s, client)
}

/// Inserts `text` at the start of a document at `rev` and waits for the ack.
async fn type_text(s: &mut Socket, rev: u64, seq: u64, text: &str, len: u64) {
    let op = if len == 0 {
        json!([text])
    } else {
        json!([text, len])
    };
    s.send(&json!({"type": "op", "rev": rev, "seq": seq, "op": op}))
        .await;
    let ack = s.recv_type("ack").await;
    assert_eq!(ack["seq"], seq, "{ack}");
}

/// Waits for the close and returns its code, skipping what comes first.
async fn close_code(s: &mut Socket) -> Option<u16> {
    s.closed().await
}

async fn store_of(db: &Db) -> SharedStore {
    match db {
        Db::Sqlite(dir) => Arc::new(
            tandem::store::sqlite::SqliteStore::open(dir.path().join("t.db")).expect("open SQLite"),
        ),
        Db::Postgres(pg) => Arc::new(
            tandem::store::postgres::PostgresStore::connect(&pg.url)
                .await
                .expect("connect PostgreSQL"),
        ),
    }
}

on_both_stores!(listing_close_and_disconnect, list_close_disconnect);

/// `--auth open`, from loopback: the listing shows each connected session,
/// a disconnect closes one (1001) and tells its peers it left, a close
/// closes every session (1001) and unloads the document with everything
/// acked on disk.
async fn list_close_disconnect(db: Db) {
    let server = Server::start_db(&db, &[]);
    let (mut ann, ann_id) = join(&server, "shared", "Ann", "").await;
    let (mut ben, ben_id) = join(&server, "shared", "Ben", "").await;
    let (_cy, cy_id) = join(&server, "elsewhere", "Cy", "").await;

    let before = listing(&server, &[]).await;
    assert_eq!(before["open_documents"], 2, "{before}");
    assert_eq!(before["sessions"], 3, "{before}");
    let shared = sessions_on(&before, "shared");
    let mut clients: Vec<&str> = shared
        .iter()
        .map(|s| s["client"].as_str().expect("client"))
        .collect();
    clients.sort_unstable();
    let mut expected = vec![ann_id.as_str(), ben_id.as_str()];
    expected.sort_unstable();
    assert_eq!(clients, expected, "{before}");
    let ann_row = shared
        .iter()
        .find(|s| s["client"] == ann_id.as_str())
        .expect("Ann listed");
    assert_eq!(ann_row["user"]["name"], "Ann", "{ann_row}");
    assert_eq!(ann_row["ip"], "127.0.0.1", "{ann_row}");
    assert_eq!(ann_row["permission"], "admin", "open mode: {ann_row}");
    let connected = ann_row["connected_ms"].as_i64().expect("connected_ms");
    let heard = ann_row["last_active_ms"].as_i64().expect("last_active_ms");
    let now = tandem::store::now_ms();
    assert!(
        connected > now - 60_000 && connected <= now,
        "connected_ms {connected} is not a recent time (now {now})"
    );
    assert!(heard >= connected, "{ann_row}");
    assert_eq!(
        sessions_on(&before, "elsewhere")[0]["client"],
        cy_id.as_str()
    );

    // Typing is activity (a millisecond later at least).
    wait_until(WAIT, "the clock to move on", || async move {
        tandem::store::now_ms() > heard
    })
    .await;
    type_text(&mut ann, 0, 1, "hello", 0).await;
    let after = listing(&server, &[]).await;
    let ann_row = sessions_on(&after, "shared")
        .into_iter()
        .find(|s| s["client"] == ann_id.as_str())
        .expect("Ann listed");
    assert!(
        ann_row["last_active_ms"].as_i64().expect("last_active_ms") > heard,
        "the op did not move last_active_ms: {ann_row}"
    );

    // Disconnect Ann: 1001 for her, `leave` for Ben, Ben stays.
    let (status, body) = request(
        &server,
        "DELETE",
        &format!("/api/admin/documents/shared/sessions/{ann_id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(close_code(&mut ann).await, Some(1001));
    let left = ben.recv_type("leave").await;
    assert_eq!(left["client"], ann_id.as_str());
    let shared = sessions_on(&listing(&server, &[]).await, "shared");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0]["client"], ben_id.as_str());
    // Gone now, and an id that was never there: 404; a bad id: 400.
    for (client, want) in [(ann_id.as_str(), 404), ("nobody", 404), ("no%20pe", 400)] {
        let (status, body) = request(
            &server,
            "DELETE",
            &format!("/api/admin/documents/shared/sessions/{client}"),
            &[],
            None,
        )
        .await;
        assert_eq!(status, want, "{client}: {body}");
    }

    // Close the document: Ben gets 1001, the task flushes and stops, the
    // text is kept.
    let (status, body) = request(
        &server,
        "POST",
        "/api/admin/documents/shared/close",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(close_code(&mut ben).await, Some(1001));
    let after = listing(&server, &[]).await;
    assert!(
        sessions_on(&after, "shared").is_empty()
            && after["documents"]
                .as_array()
                .expect("documents")
                .iter()
                .all(|d| d["id"] != "shared"),
        "closed, yet listed: {after}"
    );
    assert_eq!(after["open_documents"], 1, "{after}");
    let (status, _) = request(
        &server,
        "POST",
        "/api/admin/documents/shared/close",
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404, "not open any more");
    let (status, body) = request(&server, "GET", "/api/documents/shared", &[], None).await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (doc["rev"].as_u64(), doc["text"].as_str()),
        (Some(1), Some("hello"))
    );
    // It reopens for the next client, with everything.
    let (mut dee, _) = join(&server, "shared", "Dee", "").await;
    type_text(&mut dee, 1, 1, "> ", 5).await;
    drop(server);
}

on_both_stores!(delete_removes_everything_and_closes_4404, delete_everything);

/// A server admin deletes a document that two users are editing, with a
/// grant, a share link and a snapshot: both sessions get `error not_found`
/// and 4404, every trace of it is gone from the store (checked in the store
/// itself after the server stopped), another document is untouched, and
/// the id can be created again from nothing.
async fn delete_everything(db: Db) {
    let server = Server::start_db(
        &db,
        &[
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--snapshot-interval",
            "2",
        ],
    );
    let alice = bearer(&token("alice", false));
    let auth = [("Authorization", alice.as_str())];
    for id in ["doomed", "kept"] {
        let (status, body) = request(
            &server,
            "POST",
            "/api/documents",
            &auth,
            Some(&json!({"id": id, "text": "abc"}).to_string()),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = request(
            &server,
            "PUT",
            &format!("/api/documents/{id}/access/bob"),
            &auth,
            Some(r#"{"permission":"write"}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = request(
        &server,
        "POST",
        "/api/documents/doomed/links",
        &auth,
        Some(r#"{"permission":"read","expires_in":600}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let link: Value = serde_json::from_str(&body).expect("json");
    let link_token = link["token"].as_str().expect("token").to_owned();

    let (mut a, _) = join(
        &server,
        "doomed",
        "a",
        &format!("token={}", token("alice", false)),
    )
    .await;
    let (mut b, _) = join(
        &server,
        "doomed",
        "b",
        &format!("token={}", token("bob", false)),
    )
    .await;
    for (seq, rev) in [(1, 0), (2, 1), (3, 2)] {
        type_text(&mut a, rev, seq, "x", 3 + rev).await;
    }
    let (mut k, _) = join(
        &server,
        "kept",
        "k",
        &format!("token={}", token("bob", false)),
    )
    .await;
    type_text(&mut k, 0, 1, "y", 3).await;

    let root = bearer(&token("root", true));
    let (status, body) = request(
        &server,
        "DELETE",
        "/api/documents/doomed",
        &[("Authorization", root.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    for s in [&mut a, &mut b] {
        let err = s.recv_type("error").await;
        assert_eq!(err["code"], "not_found", "{err}");
        assert_eq!(close_code(s).await, Some(4404));
    }
    // Over REST it is gone, and so are its grants and links.
    let root_auth = [("Authorization", root.as_str())];
    for path in [
        "/api/documents/doomed",
        "/api/documents/doomed/ops",
        "/api/documents/doomed/access",
        "/api/documents/doomed/links",
    ] {
        let (status, body) = request(&server, "GET", path, &root_auth, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) =
        request(&server, "DELETE", "/api/documents/doomed", &root_auth, None).await;
    assert_eq!(status, 404, "a second delete: {body}");
    let listed = listing(&server, &root_auth).await;
    assert!(sessions_on(&listed, "doomed").is_empty(), "{listed}");
    // Its link opens nothing now.
    let mut guest =
        Socket::connect(&format!("{}?link={link_token}", server.ws_url("doomed"))).await;
    guest.send(&json!({"type": "join"})).await;
    assert_eq!(close_code(&mut guest).await, Some(4401));
    // The other document goes on.
    type_text(&mut k, 1, 2, "y", 4).await;
    let (status, body) = request(&server, "GET", "/api/documents/kept", &auth, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"yyabc\""), "{body}");

    assert_eq!(server.terminate(), Some(0));
    let store = store_of(&db).await;
    let doomed = DocId::parse("doomed").expect("id");
    assert_eq!(store.document(&doomed).await.expect("read"), None);
    assert!(
        store
            .ops(&doomed, Revision(0), Revision(100), 100)
            .await
            .expect("ops")
            .is_empty()
    );
    assert!(
        store
            .snapshot_revisions(&doomed)
            .await
            .expect("snapshots")
            .is_empty()
    );
    assert!(store.grants(&doomed).await.expect("grants").is_empty());
    assert!(store.links(&doomed).await.expect("links").is_empty());
    let kept = DocId::parse("kept").expect("id");
    assert_eq!(
        store
            .document(&kept)
            .await
            .expect("read")
            .expect("kept")
            .rev,
        Revision(2)
    );
    assert_eq!(store.grants(&kept).await.expect("grants").len(), 2);
    drop(store);

    // Started again on the same store, the id is new.
    let server = Server::start_db(&db, &["--auth", "jwt", "--jwt-secret", SECRET]);
    let (status, body) = request(
        &server,
        "POST",
        "/api/documents",
        &auth,
        Some(r#"{"id":"doomed"}"#),
    )
    .await;
    assert_eq!(status, 201, "created again: {body}");
    let doc: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (doc["rev"].as_u64(), doc["text"].as_str()),
        (Some(0), Some(""))
    );
}

on_both_stores!(non_admins_are_refused_and_nothing_changes, refused);

/// With `--auth jwt`: no token gets 401, a writer (not an admin) 403 on
/// every admin call and on DELETE, and nothing changes (sessions stay
/// connected, the document and its history stay); then the document's own
/// admin may delete it. With `--auth open`: a proxied request is not local
/// (403, or 401 when an admin token is set), the admin token lets it in.
async fn refused(db: Db) {
    let server = Server::start_db(&db, &["--auth", "jwt", "--jwt-secret", SECRET]);
    let alice = bearer(&token("alice", false));
    let (status, body) = request(
        &server,
        "POST",
        "/api/documents",
        &[("Authorization", alice.as_str())],
        Some(r#"{"id":"guarded","text":"keep me"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = request(
        &server,
        "PUT",
        "/api/documents/guarded/access/bob",
        &[("Authorization", alice.as_str())],
        Some(r#"{"permission":"write"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (mut b, b_id) = join(
        &server,
        "guarded",
        "b",
        &format!("token={}", token("bob", false)),
    )
    .await;
    type_text(&mut b, 0, 1, "+", 7).await;

    let bob = bearer(&token("bob", false));
    let calls = [
        ("GET", "/api/admin/documents".to_owned()),
        ("POST", "/api/admin/documents/guarded/close".to_owned()),
        (
            "DELETE",
            format!("/api/admin/documents/guarded/sessions/{b_id}"),
        ),
        ("DELETE", "/api/documents/guarded".to_owned()),
    ];
    for (method, path) in &calls {
        let (status, body) = request(&server, method, path, &[], None).await;
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        let (status, body) = request(
            &server,
            method,
            path,
            &[("Authorization", bob.as_str())],
            None,
        )
        .await;
        assert_eq!(status, 403, "{method} {path} by a writer: {body}");
        let (status, body) = request(
            &server,
            method,
            path,
            &[("Authorization", "Bearer not-a-token")],
            None,
        )
        .await;
        assert_eq!(status, 401, "{method} {path} with a bad token: {body}");
    }
    // Nothing changed: Bob is still connected and typing, the text is whole.
    type_text(&mut b, 1, 2, "+", 8).await;
    let (status, body) = request(
        &server,
        "GET",
        "/api/documents/guarded",
        &[("Authorization", alice.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (doc["rev"].as_u64(), doc["text"].as_str()),
        (Some(2), Some("++keep me"))
    );
    // The document's own admin may delete it (but not use the admin API).
    let (status, _) = request(
        &server,
        "GET",
        "/api/admin/documents",
        &[("Authorization", alice.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = request(
        &server,
        "DELETE",
        "/api/documents/guarded",
        &[("Authorization", alice.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(close_code(&mut b).await, Some(4404));
    drop(server);

    // Open mode: only local, unproxied requests, or the admin token.
    let server = Server::start_db(&db, &[]);
    let proxied = [("X-Forwarded-For", "203.0.113.9")];
    let (status, body) = request(&server, "GET", "/api/admin/documents", &proxied, None).await;
    assert_eq!(status, 403, "proxied, no admin token configured: {body}");
    let (status, _) = request(&server, "DELETE", "/api/documents/any", &proxied, None).await;
    assert_eq!(status, 403, "open mode: DELETE is admin-only");
    drop(server);
    let server = Server::start_db(&db, &["--admin-token", ADMIN_TOKEN]);
    let (_c, _) = join(&server, "open-doc", "c", "").await;
    let (status, _) = request(&server, "GET", "/api/admin/documents", &proxied, None).await;
    assert_eq!(status, 401, "proxied without the token");
    let wrong = bearer("let-me-in-0123456788");
    let (status, _) = request(
        &server,
        "GET",
        "/api/admin/documents",
        &[proxied[0], ("Authorization", wrong.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 401, "a wrong token");
    let right = bearer(ADMIN_TOKEN);
    let listed = listing(&server, &[proxied[0], ("Authorization", right.as_str())]).await;
    assert_eq!(sessions_on(&listed, "open-doc").len(), 1, "{listed}");
    // Local requests need no token.
    let listed = listing(&server, &[]).await;
    assert_eq!(listed["sessions"], 1, "{listed}");
}
