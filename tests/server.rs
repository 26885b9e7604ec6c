//! The WebSocket protocol end to end against the real `tandem` binary:
//! convergence, resume and resend, presence, REST, and every kind of bad
//! input (each refused with the documented error or close code, changing
//! nothing for the document or anyone else).

mod common;

use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn joined(url: &str) -> (Socket, Value) {
    let mut s = Socket::connect(url).await;
    s.send(&json!({"type": "join", "client": null, "rev": null, "user": {"name": "t"}}))
        .await;
    let j = s.recv_type("joined").await;
    (s, j)
}

#[tokio::test]
async fn two_clients_type_concurrently_and_converge() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let url = server.ws_url("pair");
    let mut a = OtClient::join(&url, "Ada").await;
    let mut b = OtClient::join(&url, "Bob").await;
    let mut rng = Rng::new(7);
    for _ in 0..60 {
        let op = random_op(&mut rng, a.text.chars().count());
        a.edit(op).await;
        let op = random_op(&mut rng, b.text.chars().count());
        b.edit(op).await;
    }
    for _ in 0..3 {
        let (rev, _) = fetch_doc(&server.addr, "pair").await;
        a.settle(rev).await;
        b.settle(rev).await;
    }
    let (rev, text) = fetch_doc(&server.addr, "pair").await;
    a.settle(rev).await;
    b.settle(rev).await;
    assert_eq!(rev, a.sent() + b.sent(), "every op sent was committed once");
    assert_eq!(a.text, text);
    assert_eq!(b.text, text);
}

on_both_stores!(twenty_clients_with_disconnects_converge_without_gaps, crowd);

async fn crowd(db: Db) {
    let server = Server::start_db(&db, &[]);
    let url = server.ws_url("crowd");
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(OtClient::join(&url, &format!("user{i}")).await);
    }
    let mut rng = Rng::new(2024);
    for round in 0..15 {
        for c in clients.iter_mut() {
            let len = c.text.chars().count();
            let op = random_op(&mut rng, len);
            c.edit(op).await;
            if rng.below(10) == 0 {
                // Drop the connection, maybe with an op in flight: the
                // client resumes from its revision and resends.
                c.disconnect();
            }
        }
        // Let some traffic through between rounds, unevenly.
        for c in clients.iter_mut() {
            if c.socket.is_none() {
                if round % 2 == 0 {
                    c.connect().await;
                }
                continue;
            }
            for _ in 0..rng.below(4) {
                if !c.step().await {
                    break;
                }
            }
        }
    }
    for c in clients.iter_mut() {
        if c.socket.is_none() {
            c.connect().await;
        }
    }
    // Quiesce: settle every client until nothing is pending anywhere.
    let deadline = std::time::Instant::now() + LONG_WAIT;
    loop {
        let in_time = std::time::Instant::now() < deadline;
        assert!(in_time, "the crowd did not quiesce within {LONG_WAIT:?}");
        let (rev, _) = fetch_doc(&server.addr, "crowd").await;
        for c in clients.iter_mut() {
            c.settle(rev).await;
        }
        let (after, _) = fetch_doc(&server.addr, "crowd").await;
        if after == rev && clients.iter().all(|c| !c.pending() && c.rev == rev) {
            break;
        }
    }
    let (rev, text) = fetch_doc(&server.addr, "crowd").await;
    let sent: u64 = clients.iter().map(OtClient::sent).sum();
    assert_eq!(rev, sent, "each op sent was committed exactly once");
    for c in &clients {
        assert_eq!(c.text, text, "client {} diverged", c.name);
        let first = c.seen_revs.first().copied().unwrap_or(1);
        let expected: Vec<u64> = (first..=rev).collect();
        assert_eq!(c.seen_revs, expected, "client {} saw a gap", c.name);
    }
}

#[tokio::test]
async fn resent_op_is_acked_with_its_revision_and_applied_once() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let url = server.ws_url("resend");
    let (mut s, j) = joined(&url).await;
    let client = j["client"].as_str().expect("id").to_owned();
    s.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["hello"]}))
        .await;
    // The ack is lost: drop the connection without reading it.
    s.close().await;

    let mut s = Socket::connect(&url).await;
    s.send(&json!({"type": "join", "client": client, "rev": 0, "user": null}))
        .await;
    let j = s.recv_type("joined").await;
    // Either the op is in the catch-up (rule 3) or still committing; the
    // resend must be acked with the same revision either way.
    s.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["hello"]}))
        .await;
    let ack = s.recv_type("ack").await;
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["rev"], 1);
    if let Some(ops) = j["ops"].as_array() {
        assert!(ops.iter().all(|o| o["client"] == client.as_str()));
    }
    let (rev, text) = fetch_doc(&server.addr, "resend").await;
    assert_eq!((rev, text.as_str()), (1, "hello"));

    // After a restart, dedupe still holds (read back from the store).
    server.terminate();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let mut s = Socket::connect(&server.ws_url("resend")).await;
    s.send(&json!({"type": "join", "client": client, "rev": 1, "user": null}))
        .await;
    s.recv_type("joined").await;
    s.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["hello"]}))
        .await;
    let ack = s.recv_type("ack").await;
    assert_eq!(ack["rev"], 1);
    assert_eq!(
        fetch_doc(&server.addr, "resend").await,
        (1, "hello".to_owned())
    );
}

#[tokio::test]
async fn resume_gets_catch_up_ops_and_presence_flows() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let url = server.ws_url("resume");
    let (mut a, ja) = joined(&url).await;
    let a_id = ja["client"].as_str().expect("id").to_owned();
    let (mut b, _) = joined(&url).await;
    let peer = a.recv_type("peer").await;
    assert_eq!(peer["user"]["name"], "t");

    b.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["ab😀"]}))
        .await;
    assert_eq!(b.recv_type("ack").await["rev"], 1);
    let op = a.recv_type("op").await;
    assert_eq!(op["op"], json!(["ab😀"]));

    b.send(
        &json!({"type": "presence", "rev": 1, "selection": {"ranges": [{"anchor": 1, "head": 3}]}}),
    )
    .await;
    let p = a.recv_type("presence").await;
    assert_eq!(p["selection"]["ranges"][0]["head"], 3);

    a.close().await;
    b.send(&json!({"type": "op", "rev": 1, "seq": 2, "op": [3, "!"]}))
        .await;
    b.recv_type("ack").await;
    let mut a = Socket::connect(&url).await;
    a.send(&json!({"type": "join", "client": a_id, "rev": 1, "user": null}))
        .await;
    let j = a.recv_type("joined").await;
    assert_eq!(j["rev"], 2);
    assert_eq!(
        j["ops"],
        json!([{"rev": 2, "client": j["ops"][0]["client"], "op": [3, "!"]}])
    );
    assert!(j.get("text").is_none());

    // Language changes reach the others.
    a.send(&json!({"type": "language", "language": "rust"}))
        .await;
    let l = b.recv_type("language").await;
    assert_eq!(l["language"], "rust");
}

async fn expect_error(s: &mut Socket, code: &str) -> Value {
    let m = s.recv_type("error").await;
    assert_eq!(m["code"], code, "{m}");
    m
}

on_both_stores!(bad_input_is_refused_and_changes_nothing, bad_input);

async fn bad_input(db: Db) {
    let server = Server::start_db(&db, &["--max-message-bytes", "65536"]);
    let url = server.ws_url("bad");
    let (mut good, _) = joined(&url).await;
    good.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["base"]}))
        .await;
    good.recv_type("ack").await;

    let mut s = Socket::connect(&url).await;
    // Before join.
    s.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["x"]}))
        .await;
    expect_error(&mut s, "bad_message").await;
    // Not JSON, wrong types, unknown type, lone surrogate, deep nesting.
    for raw in [
        "not json".to_owned(),
        r#"{"type":"join","client":5}"#.to_owned(),
        r#"{"type":"teleport"}"#.to_owned(),
        r#"{"type":"join","client":null,"rev":null,"user":{"name":"\ud800"}}"#.to_owned(),
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        r#"{"type":"join","client":"bad id!","rev":null,"user":null}"#.to_owned(),
        r#"{"type":"join","client":null,"rev":null,"user":{"name":"a","color":"red"}}"#.to_owned(),
    ] {
        s.send_raw(Message::Text(raw)).await;
        expect_error(&mut s, "bad_message").await;
    }
    s.send_raw(Message::Binary(vec![1, 2, 3])).await;
    expect_error(&mut s, "bad_message").await;
    s.send(&json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    s.recv_type("joined").await;
    let bad_ops = [
        (
            json!({"type": "op", "rev": 1, "seq": 1, "op": [3]}),
            "bad_op",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 2, "op": [5, "x"]}),
            "bad_op",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 3, "op": [1.5]}),
            "bad_message",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 4, "op": [0, 4]}),
            "bad_op",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 5, "op": [{"x": 1}]}),
            "bad_message",
        ),
        (
            json!({"type": "op", "rev": 99, "seq": 6, "op": [4, "x"]}),
            "unknown_rev",
        ),
        (
            json!({"type": "op", "rev": -1, "seq": 7, "op": [4, "x"]}),
            "bad_message",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 8, "op": [-9223372036854775808i64, 9223372036854775807i64]}),
            "bad_op",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 9, "op": [9223372036854775807i64, 9223372036854775807i64]}),
            "bad_op",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 10, "op": [-5]}),
            "bad_op",
        ),
        (
            json!({"type": "presence", "rev": 1, "selection": {"ranges": [{"anchor": 0, "head": 99}]}}),
            "bad_message",
        ),
        (
            json!({"type": "language", "language": "no spaces allowed"}),
            "bad_message",
        ),
        (
            json!({"type": "op", "rev": 1, "seq": 9223372036854775808u64, "op": [4, "x"]}),
            "bad_message",
        ),
    ];
    for (msg, code) in bad_ops {
        s.send(&msg).await;
        let e = expect_error(&mut s, code).await;
        if msg["type"] == "op" && code != "bad_message" {
            assert_eq!(e["seq"], msg["seq"], "error names the op's seq");
        }
    }
    // The raw u64 overflow can only be written as text.
    s.send_raw(Message::Text(
        r#"{"type":"op","rev":1,"seq":11,"op":[-9223372036854775808, 9223372036854775809]}"#.into(),
    ))
    .await;
    expect_error(&mut s, "bad_message").await;
    // Over the size limit: refused before parsing, closed with 1009 (message
    // too big) and the limit, in one frame or in fragments (as browsers send
    // a big paste).
    let big = json!({"type": "op", "rev": 1, "seq": 12, "op": [4, "x".repeat(70_000)]});
    s.send(&big).await;
    let e = expect_error(&mut s, "too_large").await;
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("65536")),
        "{e}"
    );
    assert_eq!(s.closed().await, Some(1009));
    let (mut frag, j) = joined(&url).await;
    assert_eq!(j["limits"]["max_message_bytes"], 65536, "{j}");
    assert!(j["limits"]["max_document_chars"].as_u64().is_some(), "{j}");
    {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let chunk = "x".repeat(30_000).into_bytes();
        frag.send_raw(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await;
        for fin in [false, true] {
            frag.send_raw(Message::Frame(Frame::message(
                chunk.clone(),
                OpCode::Data(Data::Continue),
                fin,
            )))
            .await;
        }
    }
    assert_eq!(frag.closed().await, Some(1009));

    // Nothing changed, and the good client is still served.
    assert_eq!(fetch_doc(&server.addr, "bad").await, (1, "base".to_owned()));
    good.send(&json!({"type": "op", "rev": 1, "seq": 2, "op": [4, "!"]}))
        .await;
    assert_eq!(good.recv_type("ack").await["rev"], 2);
    assert_eq!(
        fetch_doc(&server.addr, "bad").await,
        (2, "base!".to_owned())
    );
}

#[tokio::test]
async fn bad_ids_and_rest_errors() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let (st, body) = http_request(&server.addr, "GET", "/api/documents/nope", None).await;
    assert_eq!(st, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["code"],
        "not_found"
    );
    let (st, _) = http_request(&server.addr, "GET", "/api/documents/bad%20id", None).await;
    assert_eq!(st, 400);
    let long = "x".repeat(129);
    let (st, _) = http_request(
        &server.addr,
        "GET",
        &format!("/api/documents/{long}/ws"),
        None,
    )
    .await;
    assert_eq!(st, 400);
    let (st, body) = http_request(
        &server.addr,
        "POST",
        "/api/documents",
        Some(r#"{"id":"made","language":"rust","text":"fn main() {}"}"#),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, _) = http_request(
        &server.addr,
        "POST",
        "/api/documents",
        Some(r#"{"id":"made"}"#),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = http_request(&server.addr, "POST", "/api/documents", Some("{oops")).await;
    assert_eq!(st, 400);
    let (st, _) = http_request(
        &server.addr,
        "POST",
        "/api/documents",
        Some(r#"{"id":"a/b"}"#),
    )
    .await;
    assert_eq!(st, 400, "a slash is not allowed in an id");
    let (st, _) = http_request(
        &server.addr,
        "POST",
        "/api/documents",
        Some(r#"{"id":"a b"}"#),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        fetch_doc(&server.addr, "made").await,
        (0, "fn main() {}".to_owned())
    );
    let (st, body) = http_request(&server.addr, "GET", "/healthz", None).await;
    assert_eq!(st, 200, "{body}");
    // Joining the created document gets its text and language.
    let (_s, j) = joined(&server.ws_url("made")).await;
    assert_eq!(j["text"], "fn main() {}");
    assert_eq!(j["language"], "rust");
}

#[tokio::test]
async fn a_flood_is_rate_limited_without_hurting_others() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &["--rate-limit", "200"]);
    let url = server.ws_url("flood");
    let (mut good, _) = joined(&url).await;
    let (mut flood, _) = joined(&url).await;
    for i in 0..2_000u64 {
        // Ops that do not apply: the flood must change nothing.
        if !flood
            .try_send(&json!({"type": "op", "rev": 0, "seq": i + 1, "op": [7]}))
            .await
        {
            break;
        }
    }
    let mut limited = 0;
    let closed;
    loop {
        match flood.next().await {
            Received::Msg(m) if m["type"] == "error" => {
                let code = m["code"].as_str().unwrap_or("");
                assert!(code == "rate_limited" || code == "bad_op", "{m}");
                if code == "rate_limited" {
                    limited += 1;
                }
            }
            Received::Msg(_) => {}
            Received::Closed(c) => {
                closed = c;
                break;
            }
        }
    }
    assert!(limited > 0, "the flood was rate limited");
    assert!(
        matches!(closed, Some(4429) | Some(4400)),
        "flood closed with {closed:?}"
    );
    good.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["ok"]}))
        .await;
    assert_eq!(good.recv_type("ack").await["rev"], 1);
    assert_eq!(fetch_doc(&server.addr, "flood").await, (1, "ok".to_owned()));
}

#[tokio::test]
async fn chatty_presence_is_coalesced_and_never_disconnects() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &["--rate-limit", "100"]);
    let url = server.ws_url("chatty");
    let (mut quiet, _) = joined(&url).await;
    let (mut chatty, _) = joined(&url).await;
    quiet.recv_type("peer").await;
    let start = std::time::Instant::now();
    for i in 0..5_000u64 {
        let sel = json!({"ranges": [{"anchor": 0, "head": 0}]});
        let _ = i;
        chatty
            .send(&json!({"type": "presence", "rev": 0, "selection": sel}))
            .await;
    }
    // The chatty client is still connected and its op is acked.
    chatty
        .send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["hi"]}))
        .await;
    assert_eq!(chatty.recv_type("ack").await["rev"], 1);
    // The quiet one got the op, and far fewer presence messages than sent.
    let mut presences = 0;
    loop {
        let m = quiet.recv().await;
        if m["type"] == "presence" {
            presences += 1;
        }
        if m["type"] == "op" {
            break;
        }
    }
    let elapsed_ticks = start.elapsed().as_millis() as u64 / 50 + 2;
    assert!(
        presences <= elapsed_ticks,
        "{presences} presence messages in {elapsed_ticks} ticks"
    );
    quiet
        .send(&json!({"type": "op", "rev": 1, "seq": 1, "op": [2, "!"]}))
        .await;
    assert_eq!(quiet.recv_type("ack").await["rev"], 2);
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_dropped_and_others_continue() {
    let dir = tmp();
    let server = Server::start(
        &dir.path().join("t.db"),
        &["--outbound-queue", "16", "--max-document-chars", "40000000"],
    );
    let url = server.ws_url("slow");
    let (mut writer, _) = joined(&url).await;
    let (mut slow, _) = joined(&url).await;
    // `slow` never reads while the writer sends large ops.
    let chunk = "y".repeat(60_000);
    let mut len = 0usize;
    let mut rev = 0u64;
    for seq in 1..=300u64 {
        let op = if len == 0 {
            json!([chunk])
        } else {
            json!([len, chunk])
        };
        writer
            .send(&json!({"type": "op", "rev": rev, "seq": seq, "op": op}))
            .await;
        let ack = writer.recv_type("ack").await;
        rev = ack["rev"].as_u64().expect("rev");
        len += 60_000;
    }
    // Now the slow client reads: what it gets ends in a close with 1013.
    assert_eq!(slow.closed().await, Some(1013));
    assert_eq!(fetch_doc(&server.addr, "slow").await.0, 300);
}

#[tokio::test]
async fn silent_clients_are_closed_as_idle() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &["--client-idle-secs", "1"]);
    // A raw socket that completes the handshake and then never answers a
    // ping (a client library would answer them for us).
    let mut tcp = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let req = format!(
        "GET /api/documents/idle/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tcp.write_all(req.as_bytes()).await.expect("handshake");
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "server never closed the idle connection");
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response")
        + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"));
    // Walk the server's frames (unmasked, small) to the close frame.
    let mut frames = &bytes[head_end..];
    let mut code = None;
    while frames.len() >= 2 {
        let (opcode, len) = (frames[0] & 0x0f, usize::from(frames[1] & 0x7f));
        let payload = &frames[2..2 + len];
        if opcode == 0x8 {
            code = Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        frames = &frames[2 + len..];
    }
    assert_eq!(code, Some(4408));
}

#[tokio::test]
async fn a_client_far_behind_is_served_from_the_store_or_told_to_reload() {
    let dir = tmp();
    let server = Server::start(
        &dir.path().join("t.db"),
        &["--history-window", "4", "--max-catchup-revisions", "20"],
    );
    let url = server.ws_url("behind");
    let (mut late, j) = joined(&url).await;
    let late_id = j["client"].as_str().expect("id").to_owned();
    let (mut busy, _) = joined(&url).await;
    for seq in 1..=10u64 {
        let op = if seq == 1 {
            json!(["x"])
        } else {
            json!([seq - 1, "x"])
        };
        busy.send(&json!({"type": "op", "rev": seq - 1, "seq": seq, "op": op}))
            .await;
        busy.recv_type("ack").await;
    }
    // Based on revision 0, ten revisions back, beyond the in-memory window:
    // transformed through ops read back from the store.
    late.send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["<"]}))
        .await;
    assert_eq!(late.recv_type("ack").await["rev"], 11);
    late.close().await;
    let mut again = Socket::connect(&url).await;
    again
        .send(&json!({"type": "join", "client": late_id, "rev": 0, "user": null}))
        .await;
    let j = again.recv_type("joined").await;
    let ops = j["ops"].as_array().expect("catch-up from the store");
    assert_eq!(ops.len(), 11);
    assert_eq!(
        ops[10]["client"],
        late_id.as_str(),
        "own op comes back as the ack"
    );
    for seq in 11..=35u64 {
        busy.send(&json!({"type": "op", "rev": seq, "seq": seq, "op": [seq, "y"]}))
            .await;
        busy.recv_type("ack").await;
    }
    // Now 25 behind, past the catch-up limit: reload.
    again
        .send(&json!({"type": "op", "rev": 11, "seq": 2, "op": [11, "!"]}))
        .await;
    expect_error(&mut again, "unknown_rev").await;
    let mut third = Socket::connect(&url).await;
    third
        .send(&json!({"type": "join", "client": late_id, "rev": 11, "user": null}))
        .await;
    let j = third.recv_type("joined").await;
    assert!(j.get("ops").is_none());
    let (rev, text) = fetch_doc(&server.addr, "behind").await;
    assert_eq!(j["rev"], rev);
    assert_eq!(j["text"], text.as_str());
    assert!(text.starts_with("<xxxxxxxxxx"), "{text}");
}

/// A client's close frame is answered at once (RFC 6455), so clients that
/// wait for the reply do not hang until the TCP connection drops.
#[tokio::test]
async fn client_close_is_answered() {
    use futures_util::{SinkExt, StreamExt};
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let (mut s, _) = joined(&server.ws_url("closing")).await;
    s.ws.send(Message::Close(None)).await.expect("send close");
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        loop {
            match s.ws.next().await {
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(
        reply,
        Ok(true),
        "no close frame back after {:?}",
        started.elapsed()
    );
}

/// Hashed assets are sent gzipped when the build left a `.gz` beside them
/// and the browser takes gzip, and are cacheable for good either way.
#[tokio::test]
async fn assets_are_gzipped_and_immutable() {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tmp();
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join("assets")).expect("mkdir");
    std::fs::write(web.join("index.html"), "<!doctype html>").expect("index");
    let js = "console.log('tandem');\n".repeat(200);
    std::fs::write(web.join("assets/app-1a2b.js"), &js).expect("js");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(js.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    std::fs::write(web.join("assets/app-1a2b.js.gz"), &gz).expect("js.gz");
    let web = web.display().to_string();
    let server = Server::start(&dir.path().join("t.db"), &["--static-dir", &web]);

    let get = |accept: &'static str| {
        let addr = server.addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let req = format!(
                "GET /assets/app-1a2b.js HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{accept}\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
            let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
            (head, buf[split + 4..].to_vec())
        }
    };
    let (head, body) = get("Accept-Encoding: br, gzip;q=0.8\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(
        head.contains("content-type: text/javascript")
            || head.contains("content-type: application/javascript"),
        "{head}"
    );
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{head}"
    );
    assert!(!head.contains("attachment"), "{head}");
    assert_eq!(body, gz);

    for accept in ["", "Accept-Encoding: gzip;q=0\r\n"] {
        let (head, body) = get(accept).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("content-encoding: gzip"), "{accept}: {head}");
        assert!(head.contains("immutable"), "{head}");
        assert_eq!(body, js.as_bytes());
    }
}

/// A client that rejoins under its id with another name (a rename) is
/// announced again with `peer`; the others do not see it leave.
#[tokio::test]
async fn rejoin_with_a_new_name_announces_the_peer_again() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &[]);
    let url = server.ws_url("rename");
    let mut ann = Socket::connect(&url).await;
    ann.send(&json!({"type": "join", "client": null, "rev": null, "user": {"name": "Ann"}}))
        .await;
    let id = ann.recv_type("joined").await["client"]
        .as_str()
        .expect("id")
        .to_owned();
    let (mut bob, _) = joined(&url).await;

    let mut renamed = Socket::connect(&url).await;
    renamed
        .send(&json!({"type": "join", "client": id, "rev": 0, "user": {"name": "Anna"}}))
        .await;
    renamed.recv_type("joined").await;
    assert_eq!(
        ann.closed().await,
        Some(1000),
        "the old connection is replaced"
    );
    let peer = bob.recv().await;
    assert_eq!(peer["type"], "peer", "no leave first: {peer}");
    assert_eq!(
        (peer["client"].as_str(), peer["user"]["name"].as_str()),
        (Some(id.as_str()), Some("Anna"))
    );
}

/// The body of `GET /healthz`.
async fn health(server: &Server) -> Value {
    let (status, body) = http_request(&server.addr, "GET", "/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("healthz JSON")
}

/// An upgrade the server must refuse because it is at its connection cap:
/// HTTP 503, the JSON error `unavailable`, and a `Retry-After`.
async fn expect_upgrade_refused(url: &str) {
    use tokio_tungstenite::tungstenite::Error;
    let refused = within(
        WAIT,
        "the answer to an upgrade over the cap",
        tokio_tungstenite::connect_async(url),
    )
    .await;
    let response = match refused {
        Err(Error::Http(response)) => response,
        Err(e) => panic!("refused, but not with an HTTP answer: {e}"),
        Ok(_) => panic!("an upgrade over the connection cap was accepted"),
    };
    assert_eq!(response.status(), 503);
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| s > 0), "Retry-After: {retry:?}");
    let body = response.body().as_deref().unwrap_or_default();
    let body: Value = serde_json::from_slice(body).expect("a JSON error body");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("connections")),
        "{body}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_503_until_one_closes() {
    let dir = tmp();
    let server = Server::start(&dir.path().join("t.db"), &["--max-connections", "3"]);
    let url = server.ws_url("crowded");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(joined(&url).await.0);
    }
    expect_upgrade_refused(&url).await;
    // Refusals are not counted; the REST API is not capped by it.
    let h = health(&server).await;
    assert_eq!(h["connections"], 3, "{h}");
    assert_eq!(h["limits"]["max_connections"], 3, "{h}");

    // One leaves: its place is given back, and taken by the next.
    sockets.pop().expect("socket").close().await;
    wait_until(WAIT, "the closed connection to be uncounted", || async {
        health(&server).await["connections"] == 2
    })
    .await;
    let (mut again, _) = joined(&url).await;
    again
        .send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["in"]}))
        .await;
    assert_eq!(again.recv_type("ack").await["rev"], 1);
    expect_upgrade_refused(&url).await;

    // Connections dropped without a close frame, and one that never
    // joined, are counted out as well.
    drop(sockets);
    drop(again);
    let never_joined = Socket::connect(&url).await;
    drop(never_joined);
    wait_until(WAIT, "every connection to be uncounted", || async {
        health(&server).await["connections"] == 0
    })
    .await;
    let (_s, j) = joined(&url).await;
    assert_eq!(j["rev"], 1);
}

#[tokio::test]
async fn documents_over_the_cap_are_refused_until_one_closes() {
    let dir = tmp();
    let server = Server::start(
        &dir.path().join("t.db"),
        &["--max-open-documents", "2", "--document-idle-secs", "1"],
    );
    let (one, _) = joined(&server.ws_url("one")).await;
    let (_two, _) = joined(&server.ws_url("two")).await;
    // A join that would open a third: `unavailable`, then 1013.
    let mut three = Socket::connect(&server.ws_url("three")).await;
    three
        .send(&json!({"type": "join", "client": null, "rev": null, "user": null}))
        .await;
    let e = expect_error(&mut three, "unavailable").await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many documents")),
        "{e}"
    );
    assert_eq!(three.closed().await, Some(1013));
    // An open document still takes more sessions.
    let (one_more, j) = joined(&server.ws_url("one")).await;
    assert_eq!(j["rev"], 0);
    // A REST read that would open a stored document: 503 JSON.
    let (st, body) = http_request(
        &server.addr,
        "POST",
        "/api/documents",
        Some(r#"{"id":"stored","text":"kept"}"#),
    )
    .await;
    assert_eq!(st, 201, "creating does not open: {body}");
    let (st, body) = http_request(&server.addr, "GET", "/api/documents/stored", None).await;
    assert_eq!(st, 503, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(v["code"], "unavailable", "{v}");
    let h = health(&server).await;
    assert_eq!(h["open_documents"], 2, "{h}");
    assert_eq!(h["limits"]["max_open_documents"], 2, "{h}");

    // Everyone leaves "one"; it closes after its idle second, and the
    // third document is served.
    one.close().await;
    one_more.close().await;
    wait_until(WAIT, "the idle document to close", || async {
        health(&server).await["open_documents"] == 1
    })
    .await;
    let (mut three, j) = joined(&server.ws_url("three")).await;
    assert_eq!(j["text"], "");
    three
        .send(&json!({"type": "op", "rev": 0, "seq": 1, "op": ["3"]}))
        .await;
    assert_eq!(three.recv_type("ack").await["rev"], 1);
    let (st, _) = http_request(&server.addr, "GET", "/api/documents/stored", None).await;
    assert_eq!(st, 503, "two documents are open again");
    assert_eq!(fetch_doc(&server.addr, "three").await, (1, "3".to_owned()));
}

#[tokio::test]
async fn a_client_over_its_queued_bytes_is_dropped_and_others_continue() {
    let dir = tmp();
    // A message count no test reaches: only the bytes can drop anyone.
    let server = Server::start(
        &dir.path().join("t.db"),
        &[
            "--outbound-queue",
            "1000000",
            "--outbound-queue-bytes",
            "262144",
            "--max-document-chars",
            "40000000",
        ],
    );
    let url = server.ws_url("slow-bytes");
    let (mut writer, _) = joined(&url).await;
    let (mut slow, _) = joined(&url).await;
    // `slow` never reads while the writer sends large ops.
    let chunk = "y".repeat(60_000);
    let mut len = 0usize;
    let mut rev = 0u64;
    for seq in 1..=300u64 {
        let op = if len == 0 {
            json!([chunk])
        } else {
            json!([len, chunk])
        };
        writer
            .send(&json!({"type": "op", "rev": rev, "seq": seq, "op": op}))
            .await;
        let ack = writer.recv_type("ack").await;
        rev = ack["rev"].as_u64().expect("rev");
        len += 60_000;
    }
    // Now the slow client reads: what it gets ends in a close with 1013.
    assert_eq!(slow.closed().await, Some(1013));
    // The writer carries on.
    writer
        .send(&json!({"type": "op", "rev": rev, "seq": 301, "op": [len, "!"]}))
        .await;
    assert_eq!(writer.recv_type("ack").await["rev"], 301);
    assert_eq!(fetch_doc(&server.addr, "slow-bytes").await.0, 301);
}

#[tokio::test]
async fn a_joined_bigger_than_the_queued_bytes_cap_is_still_sent() {
    let dir = tmp();
    let server = Server::start(
        &dir.path().join("t.db"),
        &["--outbound-queue-bytes", "65536"],
    );
    let big = "z".repeat(200_000);
    let body = json!({"id": "big", "text": big}).to_string();
    let (st, _) = http_request(&server.addr, "POST", "/api/documents", Some(&body)).await;
    assert_eq!(st, 201);
    let url = server.ws_url("big");
    // The whole text, three times the cap, in the first frame.
    let (reader, j) = joined(&url).await;
    assert_eq!(j["text"].as_str().map(str::len), Some(200_000));
    let id = j["client"].as_str().expect("id").to_owned();
    reader.close().await;
    // A catch-up over the cap, too.
    let (mut writer, _) = joined(&url).await;
    let chunk = "w".repeat(50_000);
    for seq in 1..=3u64 {
        writer
            .send(&json!({"type": "op", "rev": seq - 1, "seq": seq, "op": [chunk, 200_000 + 50_000 * (seq - 1)]}))
            .await;
        assert_eq!(writer.recv_type("ack").await["rev"], seq);
    }
    let mut back = Socket::connect(&url).await;
    back.send(&json!({"type": "join", "client": id, "rev": 0, "user": null}))
        .await;
    let j = back.recv_type("joined").await;
    assert_eq!(j["ops"].as_array().map(Vec::len), Some(3), "catch-up ops");
    // And it is served after it.
    writer
        .send(&json!({"type": "op", "rev": 3, "seq": 4, "op": ["!", 350_000]}))
        .await;
    assert_eq!(writer.recv_type("ack").await["rev"], 4);
    assert_eq!(back.recv_type("op").await["rev"], 4);
}

/// Reads frames until `count` ops have come; returns their revisions in
/// order and how many frames were arrays (batches).
async fn ops_by_frame(s: &mut Socket, count: usize) -> (Vec<u64>, usize) {
    let (mut revs, mut arrays) = (Vec::new(), 0);
    while revs.len() < count {
        let frame = s.recv().await;
        let msgs = match frame {
            Value::Array(msgs) => {
                arrays += 1;
                assert!(msgs.len() > 1, "a batch holds several messages");
                msgs
            }
            m => vec![m],
        };
        for m in msgs {
            assert!(m.is_object(), "a batch holds messages, never a batch: {m}");
            assert_ne!(m["type"], "joined", "joined never comes in a batch");
            if m["type"] == "op" {
                revs.push(m["rev"].as_u64().expect("rev"));
            }
        }
    }
    (revs, arrays)
}

#[tokio::test]
async fn a_batching_client_gets_arrays_and_a_plain_client_does_not() {
    let dir = tmp();
    // A budget of one socket write a second: news is held (50 ms at most)
    // after the first burst, so the writer's ops pile up.
    let server = Server::start(
        &dir.path().join("t.db"),
        &["--outbound-writes-per-sec", "1"],
    );
    let url = server.ws_url("batched");
    let (mut plain, _) = joined(&url).await;
    let mut batched = Socket::connect(&url).await;
    batched
        .send(&json!({"type": "join", "client": null, "rev": null, "batch": true}))
        .await;
    assert_eq!(
        batched.recv().await["type"],
        "joined",
        "joined comes first, alone"
    );
    let (mut writer, _) = joined(&url).await;
    const OPS: u64 = 12;
    for i in 0..OPS {
        let op = if i == 0 {
            json!(["x"])
        } else {
            json!([i, "x"])
        };
        writer
            .send(&json!({"type": "op", "rev": i, "seq": i + 1, "op": op}))
            .await;
        assert_eq!(writer.recv_type("ack").await["rev"], i + 1);
    }
    let want: Vec<u64> = (1..=OPS).collect();
    let (revs, arrays) = ops_by_frame(&mut batched, OPS as usize).await;
    assert_eq!(revs, want, "every op once, in order");
    assert!(arrays > 0, "the batching client got no array");
    let (revs, arrays) = ops_by_frame(&mut plain, OPS as usize).await;
    assert_eq!(revs, want);
    assert_eq!(arrays, 0, "a plain client gets one message per frame");
}
