//! Who may read and write, with `--auth jwt`: one table of every REST
//! endpoint and WebSocket message against every kind of caller (no token,
//! a bad signature, an expired token, another document's admin, a reader,
//! a writer, the document's admin, a server admin, a read link, a write
//! link, a revoked link), on both stores. Each gets exactly the expected
//! answer, and whenever it is refused the document, its history and its
//! grants are unchanged. Also: taking over another user's client id is
//! refused while the owner goes on, and a grant revoked while connected
//! closes the session at once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tandem::auth::token::TokenSigner;

const SECRET: &str = "matrix-secret";
const DOC: &str = "m";

fn token(sub: &str, admin: bool) -> String {
    TokenSigner::hs256(SECRET.as_bytes())
        .expect("signer")
        .issue(sub, Some(sub), admin, Duration::from_secs(600))
        .expect("token")
}

fn expired_token() -> String {
    let claims = json!({"sub": "late", "exp": 1_000});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("encode")
}

fn bad_signature() -> String {
    TokenSigner::hs256(b"another secret")
        .expect("signer")
        .issue("alice", None, false, Duration::from_secs(600))
        .expect("token")
}

/// How a caller authenticates: a query string to add to every request.
#[derive(Clone)]
struct Caller {
    name: &'static str,
    query: String,
    /// The right it should end up with on `DOC`: `None` for none, and
    /// `Err(())` when it is not authenticated at all.
    right: Result<Option<&'static str>, ()>,
    /// Whether it may create documents (signed in).
    signed_in: bool,
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

async fn call(
    server: &Server,
    caller: &Caller,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    http_request(&server.addr, method, &with_query(path, &caller.query), body).await
}

/// What the owner sees: the text, the revision and the grants.
async fn state(server: &Server, owner: &Caller) -> (u16, String, String) {
    let (_, doc) = call(server, owner, "GET", &format!("/api/documents/{DOC}"), None).await;
    let (_, grants) = call(
        server,
        owner,
        "GET",
        &format!("/api/documents/{DOC}/access"),
        None,
    )
    .await;
    let (_, ops) = call(
        server,
        owner,
        "GET",
        &format!("/api/documents/{DOC}/ops"),
        None,
    )
    .await;
    (0, format!("{doc}|{ops}"), grants)
}

fn rank(p: &str) -> u8 {
    match p {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        other => panic!("unknown permission {other}"),
    }
}

/// The status a caller must get for an endpoint that needs `needed`.
fn expected(caller: &Caller, needed: &str, ok: u16) -> u16 {
    match caller.right {
        Err(()) => 401,
        Ok(None) => 403,
        Ok(Some(p)) if rank(p) >= rank(needed) => ok,
        Ok(Some(_)) => 403,
    }
}

on_both_stores!(every_endpoint_and_message_by_every_caller, matrix);

async fn matrix(db: Db) {
    let server = Server::start_db(&db, &["--auth", "jwt", "--jwt-secret", SECRET]);
    let owner = Caller {
        name: "owner",
        query: format!("token={}", token("alice", false)),
        right: Ok(Some("admin")),
        signed_in: true,
    };
    // Set up: alice creates the document (so she administers it), types,
    // grants, and makes links; olga administers another document.
    let (status, body) = call(
        &server,
        &owner,
        "POST",
        "/api/documents",
        Some(&json!({"id": DOC, "text": "hello"}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let olga = Caller {
        name: "olga",
        query: format!("token={}", token("olga", false)),
        right: Ok(None),
        signed_in: true,
    };
    let (status, _) = call(
        &server,
        &olga,
        "POST",
        "/api/documents",
        Some(r#"{"id":"other"}"#),
    )
    .await;
    assert_eq!(status, 201);
    for (user, p) in [("rita", "read"), ("will", "write"), ("adam", "admin")] {
        let (status, body) = call(
            &server,
            &owner,
            "PUT",
            &format!("/api/documents/{DOC}/access/{user}"),
            Some(&json!({"permission": p}).to_string()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut links = Vec::new();
    for p in ["read", "write", "read"] {
        let (status, body) = call(
            &server,
            &owner,
            "POST",
            &format!("/api/documents/{DOC}/links"),
            Some(&json!({"permission": p, "expires_in": 600}).to_string()),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v["url"],
            format!("/d/{DOC}?link={}", v["token"].as_str().expect("token"))
        );
        links.push((
            v["id"].as_str().expect("id").to_owned(),
            v["token"].as_str().expect("token").to_owned(),
        ));
    }
    let (status, _) = call(
        &server,
        &owner,
        "DELETE",
        &format!("/api/documents/{DOC}/links/{}", links[2].0),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let callers = vec![
        Caller {
            name: "no token",
            query: String::new(),
            right: Err(()),
            signed_in: false,
        },
        Caller {
            name: "bad signature",
            query: format!("token={}", bad_signature()),
            right: Err(()),
            signed_in: false,
        },
        Caller {
            name: "expired",
            query: format!("token={}", expired_token()),
            right: Err(()),
            signed_in: false,
        },
        olga.clone(),
        Caller {
            name: "reader",
            query: format!("token={}", token("rita", false)),
            right: Ok(Some("read")),
            signed_in: true,
        },
        Caller {
            name: "writer",
            query: format!("token={}", token("will", false)),
            right: Ok(Some("write")),
            signed_in: true,
        },
        Caller {
            name: "admin",
            query: format!("token={}", token("adam", false)),
            right: Ok(Some("admin")),
            signed_in: true,
        },
        Caller {
            name: "server admin",
            query: format!("token={}", token("root", true)),
            right: Ok(Some("admin")),
            signed_in: true,
        },
        Caller {
            name: "read link",
            query: format!("link={}", links[0].1),
            right: Ok(Some("read")),
            signed_in: false,
        },
        Caller {
            name: "write link",
            query: format!("link={}", links[1].1),
            right: Ok(Some("write")),
            signed_in: false,
        },
        Caller {
            name: "revoked link",
            query: format!("link={}", links[2].1),
            right: Err(()),
            signed_in: false,
        },
    ];

    for caller in &callers {
        // REST, read side: each needs read.
        for path in [
            "",
            "/ops",
            "/text",
            "/diff?from=0&to=0",
            "/revisions",
            "/blame",
        ] {
            let before = state(&server, &owner).await;
            let (status, body) = call(
                &server,
                caller,
                "GET",
                &format!("/api/documents/{DOC}{path}"),
                None,
            )
            .await;
            assert_eq!(
                status,
                expected(caller, "read", 200),
                "{} GET {path}: {body}",
                caller.name
            );
            if status != 200 {
                let v: Value = serde_json::from_str(&body).expect("a JSON error");
                assert!(v["code"].is_string(), "{} GET {path}: {body}", caller.name);
            }
            assert_eq!(
                state(&server, &owner).await,
                before,
                "{} GET {path} changed something",
                caller.name
            );
        }
        // The list shows the document only to those who may read it.
        let (status, body) = call(&server, caller, "GET", "/api/documents", None).await;
        match caller.right {
            Err(()) => assert_eq!(status, 401, "{}: {body}", caller.name),
            Ok(p) => {
                assert_eq!(status, 200, "{}: {body}", caller.name);
                let listed = body.contains(&format!("\"id\":\"{DOC}\""));
                assert_eq!(listed, p.is_some(), "{} list: {body}", caller.name);
                assert_eq!(
                    body.contains("\"id\":\"other\""),
                    caller.name == "olga" || caller.name == "server admin",
                    "{} list: {body}",
                    caller.name
                );
            }
        }
        // Restore needs write; replay, access and links need admin.
        let writes: Vec<(&str, String, Option<String>, &str, u16)> = vec![
            (
                "POST",
                format!("/api/documents/{DOC}/restore"),
                Some(r#"{"rev":0}"#.into()),
                "write",
                200,
            ),
            (
                "POST",
                format!("/api/admin/documents/{DOC}/replay"),
                None,
                "admin",
                200,
            ),
            (
                "GET",
                format!("/api/documents/{DOC}/access"),
                None,
                "admin",
                200,
            ),
            (
                "PUT",
                format!("/api/documents/{DOC}/access/tmp"),
                Some(r#"{"permission":"read"}"#.into()),
                "admin",
                200,
            ),
            (
                "DELETE",
                format!("/api/documents/{DOC}/access/tmp"),
                None,
                "admin",
                204,
            ),
            (
                "POST",
                format!("/api/documents/{DOC}/links"),
                Some(r#"{"permission":"read","expires_in":60}"#.into()),
                "admin",
                201,
            ),
            (
                "GET",
                format!("/api/documents/{DOC}/links"),
                None,
                "admin",
                200,
            ),
        ];
        for (method, path, body, needed, ok) in writes {
            // DELETE access/tmp needs the grant there to succeed.
            if method == "DELETE" {
                call(
                    &server,
                    &owner,
                    "PUT",
                    &format!("/api/documents/{DOC}/access/tmp"),
                    Some(r#"{"permission":"read"}"#),
                )
                .await;
            }
            let before = state(&server, &owner).await;
            let (status, answer) = call(&server, caller, method, &path, body.as_deref()).await;
            let want = expected(caller, needed, ok);
            assert_eq!(status, want, "{} {method} {path}: {answer}", caller.name);
            if status != ok {
                assert_eq!(
                    state(&server, &owner).await,
                    before,
                    "{} {method} {path} was refused but changed something",
                    caller.name
                );
            }
            if method == "DELETE" && status != ok {
                let tmp = format!("/api/documents/{DOC}/access/tmp");
                call(&server, &owner, "DELETE", &tmp, None).await;
            }
            if method == "PUT" && status == ok {
                call(
                    &server,
                    &owner,
                    "DELETE",
                    &format!("/api/documents/{DOC}/access/tmp"),
                    None,
                )
                .await;
            }
        }
        // Revoking a link.
        let (_, made) = call(
            &server,
            &owner,
            "POST",
            &format!("/api/documents/{DOC}/links"),
            Some(r#"{"permission":"read","expires_in":60}"#),
        )
        .await;
        let made: Value = serde_json::from_str(&made).expect("json");
        let before = state(&server, &owner).await;
        let path = format!(
            "/api/documents/{DOC}/links/{}",
            made["id"].as_str().expect("id")
        );
        let (status, answer) = call(&server, caller, "DELETE", &path, None).await;
        assert_eq!(
            status,
            expected(caller, "admin", 204),
            "{} DELETE link: {answer}",
            caller.name
        );
        if status != 204 {
            assert_eq!(
                state(&server, &owner).await,
                before,
                "{} DELETE link changed something",
                caller.name
            );
        }
        // Creating a document takes a signed-in user.
        let new_id = format!("new-{}", caller.name.replace(' ', "-"));
        let (status, answer) = call(
            &server,
            caller,
            "POST",
            "/api/documents",
            Some(&json!({"id": new_id}).to_string()),
        )
        .await;
        let want = match caller.right {
            Err(()) => 401,
            Ok(_) if caller.signed_in => 201,
            Ok(_) => 403,
        };
        assert_eq!(
            status, want,
            "{} POST /api/documents: {answer}",
            caller.name
        );

        // The WebSocket: refused before any document data, or joined with
        // the right permission; then each message.
        let before = state(&server, &owner).await;
        let url = with_query(&server.ws_url(DOC), &caller.query);
        let mut s = Socket::connect(&url).await;
        s.send(&json!({"type": "join", "client": null, "rev": null, "user": {"name": "x"}}))
            .await;
        match caller.right {
            Err(()) | Ok(None) => {
                let code = if caller.right.is_err() { 4401 } else { 4403 };
                loop {
                    match s.next().await {
                        Received::Msg(m) => {
                            assert_eq!(
                                m["type"], "error",
                                "{}: only an error before the close: {m}",
                                caller.name
                            );
                            assert!(m.get("text").is_none() && m.get("ops").is_none());
                        }
                        Received::Closed(c) => {
                            assert_eq!(c, Some(code), "{} WebSocket", caller.name);
                            break;
                        }
                    }
                }
            }
            Ok(Some(p)) => {
                let joined = s.recv_type("joined").await;
                assert_eq!(joined["permission"], p, "{} joined", caller.name);
                let rev = joined["rev"].as_u64().expect("rev");
                let len = joined["text"].as_str().expect("text").chars().count();
                s.send(&json!({"type": "presence", "rev": rev, "selection": {"ranges": [{"anchor": 0, "head": 0}]}})).await;
                s.send(&json!({"type": "op", "rev": rev, "seq": 1, "op": ["!", len]}))
                    .await;
                let answer = loop {
                    let m = s.recv().await;
                    if m["type"] == "ack" || m["type"] == "error" {
                        break m;
                    }
                };
                s.send(&json!({"type": "language", "language": "rust"}))
                    .await;
                if rank(p) >= rank("write") {
                    assert_eq!(answer["type"], "ack", "{} op: {answer}", caller.name);
                    language_becomes(&server, &owner, "rust", caller.name).await;
                    // Put the text and the language back for the next caller.
                    s.send(&json!({"type": "op", "rev": answer["rev"], "seq": 2, "op": [-1, len]}))
                        .await;
                    s.recv_type("ack").await;
                    s.send(&json!({"type": "language", "language": "plaintext"}))
                        .await;
                    language_becomes(&server, &owner, "plaintext", caller.name).await;
                } else {
                    assert_eq!(
                        (
                            answer["type"].as_str(),
                            answer["code"].as_str(),
                            answer["seq"].as_u64()
                        ),
                        (Some("error"), Some("forbidden"), Some(1)),
                        "{} op: {answer}",
                        caller.name
                    );
                    let e = s.recv_type("error").await;
                    assert_eq!(e["code"], "forbidden", "{} language: {e}", caller.name);
                    let (_, doc) = call(
                        &server,
                        &owner,
                        "GET",
                        &format!("/api/documents/{DOC}"),
                        None,
                    )
                    .await;
                    let now = state(&server, &owner).await;
                    assert_eq!(
                        now, before,
                        "{} was refused but changed something: {doc}",
                        caller.name
                    );
                }
                s.close().await;
            }
        }
    }
}

on_both_stores!(another_user_cannot_take_over_a_client_id, takeover);

async fn takeover(db: Db) {
    let server = Server::start_db(
        &db,
        &[
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--default-permission",
            "write",
        ],
    );
    let alice = format!("token={}", token("alice", false));
    let mallory = format!("token={}", token("mallory", false));
    let mut a = Socket::connect(&with_query(&server.ws_url("t"), &alice)).await;
    a.send(&json!({"type": "join", "client": null, "rev": null, "user": {"name": "Alice"}}))
        .await;
    let joined = a.recv_type("joined").await;
    let id = joined["client"].as_str().expect("client").to_owned();
    assert_eq!(joined["permission"], "admin", "the creator administers it");
    a.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["a"]}))
        .await;
    a.recv_type("ack").await;
    // Mallory sees Alice's client id (peers do) and tries to resume it.
    let mut m = Socket::connect(&with_query(&server.ws_url("t"), &mallory)).await;
    m.send(&json!({"type": "join", "client": id, "rev": 1, "user": {"name": "Alice"}}))
        .await;
    let e = m.recv_type("error").await;
    assert_eq!(e["code"], "forbidden", "{e}");
    assert_eq!(m.closed().await, Some(4403));
    // Alice's session goes on, and her ops are hers.
    a.send(&json!({"type": "op", "rev": 1, "seq": 2, "op": [1, "b"]}))
        .await;
    assert_eq!(a.recv_type("ack").await["rev"], 2);
    let (_, ops) = http_request(
        &server.addr,
        "GET",
        &with_query("/api/documents/t/ops", &alice),
        None,
    )
    .await;
    let ops: Value = serde_json::from_str(&ops).expect("json");
    for op in ops["ops"].as_array().expect("ops") {
        assert_eq!(op["author"], "alice", "{op}");
    }
    // Once Alice has left, the id is still hers.
    a.close().await;
    let mut m = Socket::connect(&with_query(&server.ws_url("t"), &mallory)).await;
    m.send(&json!({"type": "join", "client": id, "rev": 2, "user": null}))
        .await;
    assert_eq!(m.recv_type("error").await["code"], "forbidden");
    // Alice resumes it.
    let mut a = Socket::connect(&with_query(&server.ws_url("t"), &alice)).await;
    a.send(&json!({"type": "join", "client": id, "rev": 2, "user": null}))
        .await;
    let j = a.recv_type("joined").await;
    assert_eq!(j["client"], id.as_str());
}

on_both_stores!(a_revoked_grant_or_link_takes_effect_at_once, revoked);

async fn revoked(db: Db) {
    let server = Server::start_db(&db, &["--auth", "jwt", "--jwt-secret", SECRET]);
    let alice = format!("token={}", token("alice", false));
    let rita = format!("token={}", token("rita", false));
    let (s, _) = http_request(
        &server.addr,
        "POST",
        &with_query("/api/documents", &alice),
        Some(r#"{"id":"r","text":"x"}"#),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = http_request(
        &server.addr,
        "PUT",
        &with_query("/api/documents/r/access/rita", &alice),
        Some(r#"{"permission":"write"}"#),
    )
    .await;
    assert_eq!(s, 200);
    let (_, link) = http_request(
        &server.addr,
        "POST",
        &with_query("/api/documents/r/links", &alice),
        Some(r#"{"permission":"write","expires_in":60}"#),
    )
    .await;
    let link: Value = serde_json::from_str(&link).expect("json");
    let mut r = Socket::connect(&with_query(&server.ws_url("r"), &rita)).await;
    r.send(&json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    assert_eq!(r.recv_type("joined").await["permission"], "write");
    let mut g = Socket::connect(&with_query(
        &server.ws_url("r"),
        &format!("link={}", link["token"].as_str().expect("token")),
    ))
    .await;
    g.send(&json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    assert_eq!(g.recv_type("joined").await["permission"], "write");
    // Downgraded to read: the next op is refused.
    let (s, _) = http_request(
        &server.addr,
        "PUT",
        &with_query("/api/documents/r/access/rita", &alice),
        Some(r#"{"permission":"read"}"#),
    )
    .await;
    assert_eq!(s, 200);
    r.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": [1, "!"]}))
        .await;
    let e = r.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["seq"].as_u64()),
        (Some("forbidden"), Some(1)),
        "{e}"
    );
    // Revoked: closed at once.
    let (s, _) = http_request(
        &server.addr,
        "DELETE",
        &with_query("/api/documents/r/access/rita", &alice),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(r.closed().await, Some(4403));
    let path = format!(
        "/api/documents/r/links/{}",
        link["id"].as_str().expect("id")
    );
    let (s, _) = http_request(&server.addr, "DELETE", &with_query(&path, &alice), None).await;
    assert_eq!(s, 204);
    assert_eq!(g.closed().await, Some(4403));
    assert_eq!(
        fetch_doc_as(&server, "r", &alice).await,
        (0, "x".to_owned())
    );
}

/// Waits (with a deadline) until the owner sees `language`.
async fn language_becomes(server: &Server, owner: &Caller, language: &str, who: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = call(server, owner, "GET", &format!("/api/documents/{DOC}"), None).await;
        if body.contains(&format!("\"language\":\"{language}\"")) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{who}: the language did not become {language}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn fetch_doc_as(server: &Server, doc: &str, query: &str) -> (u64, String) {
    let (status, body) = http_request(
        &server.addr,
        "GET",
        &with_query(&format!("/api/documents/{doc}"), query),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    (
        v["rev"].as_u64().expect("rev"),
        v["text"].as_str().expect("text").to_owned(),
    )
}
