//! The OT client state machine, as the browser client behaves (PROTOCOL.md,
//! docs/protocol.md section 7): one op in flight, later edits composed into a
//! buffer, remote ops transformed against both, `seq` fixed per op and kept
//! on resend, resume after a disconnect. The text is a rope so that large
//! documents stay cheap to edit. No I/O here except [`connect`].

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use ropey::Rope;
use serde::Deserialize;
use tandem::ot::{Component, OpLimits, RawOp, TextOp};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket with TCP_NODELAY (small frames must not wait for Nagle).
pub async fn connect(url: &str) -> Result<Ws> {
    let (ws, _) = connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connect {url}"))?;
    Ok(ws)
}

/// Any message from the server; fields a type does not use are `None`.
#[derive(Debug, Deserialize)]
pub struct ServerMsg {
    #[serde(rename = "type")]
    pub kind: String,
    pub rev: Option<u64>,
    pub seq: Option<u64>,
    pub client: Option<String>,
    pub op: Option<RawOp>,
    pub text: Option<String>,
    pub ops: Option<Vec<CatchUp>>,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// One entry of `joined.ops`.
#[derive(Debug, Deserialize)]
pub struct CatchUp {
    pub rev: u64,
    pub client: Option<String>,
    pub op: RawOp,
}

/// The op this client has sent and not yet seen acknowledged.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub seq: u64,
    pub op: TextOp,
    /// When it first left (kept across resends).
    pub sent_at: Instant,
    /// How many local edits it holds (the buffer composes several).
    pub edits: u64,
}

/// What [`OtClient::on_joined`] found.
#[derive(Debug, Default)]
pub struct JoinOutcome {
    /// The in-flight op was committed before the drop: its ack (rev, op).
    pub acked: Option<(u64, Inflight)>,
    /// Edits dropped because the server answered with full `text`.
    pub dropped_edits: u64,
}

fn limits() -> OpLimits {
    OpLimits {
        max_components: usize::MAX,
        max_insert_chars: usize::MAX,
        max_document_chars: usize::MAX / 2,
    }
}

/// Parses an op the server sent.
pub fn parse_op(raw: &RawOp) -> Result<TextOp> {
    TextOp::parse(raw, &limits()).map_err(|e| anyhow!("bad op from server: {e}"))
}

/// An insert of `text` at `pos` into a document of `len` characters.
pub fn insert_op(len: usize, pos: usize, text: &str) -> TextOp {
    TextOp::from_components([
        Component::Retain(pos),
        Component::Insert(text),
        Component::Retain(len - pos),
    ])
}

/// One trace patch: delete `del` characters at `pos`, insert `ins` there.
pub fn patch_op(len: usize, pos: usize, del: usize, ins: &str) -> TextOp {
    TextOp::from_components([
        Component::Retain(pos),
        Component::Insert(ins),
        Component::Delete(del),
        Component::Retain(len - pos - del),
    ])
}

pub struct OtClient {
    pub id: Option<String>,
    pub text: Rope,
    pub rev: u64,
    pub inflight: Option<Inflight>,
    pub buffer: Option<(TextOp, u64)>,
    pub next_seq: u64,
    pub name: String,
}

impl OtClient {
    pub fn new(name: &str) -> OtClient {
        OtClient {
            id: None,
            text: Rope::new(),
            rev: 0,
            inflight: None,
            buffer: None,
            next_seq: 1,
            name: name.to_owned(),
        }
    }

    /// The `join` message: fresh, resuming, or (`reload`) asking for the
    /// full text under the same id.
    pub fn join_msg(&self, reload: bool) -> String {
        let user = serde_json::json!({"name": self.name});
        let v = match &self.id {
            Some(id) if !reload => {
                serde_json::json!({"type": "join", "client": id, "rev": self.rev, "user": user})
            }
            Some(id) => {
                serde_json::json!({"type": "join", "client": id, "rev": null, "user": user})
            }
            None => serde_json::json!({"type": "join", "client": null, "rev": null, "user": user}),
        };
        v.to_string()
    }

    /// Takes in `joined`: catch-up ops (own entries are the in-flight op's
    /// ack) or the full text (pending edits are dropped: the simple client of
    /// docs/protocol.md section 7.2).
    pub fn on_joined(&mut self, m: &ServerMsg) -> Result<JoinOutcome> {
        let mut out = JoinOutcome::default();
        let id = m.client.clone().context("joined without client")?;
        self.id = Some(id);
        if let Some(ops) = &m.ops {
            for e in ops {
                if e.client.is_some() && e.client == self.id {
                    out.acked = Some((e.rev, self.on_ack(e.rev)?));
                } else {
                    self.on_remote(e.rev, &parse_op(&e.op)?)?;
                }
            }
        } else {
            let text = m
                .text
                .as_deref()
                .context("joined with neither ops nor text")?;
            out.dropped_edits =
                self.inflight.take().map_or(0, |i| i.edits) + self.buffer.take().map_or(0, |b| b.1);
            self.text = Rope::from_str(text);
            self.rev = m.rev.context("joined without rev")?;
        }
        if m.rev != Some(self.rev) {
            bail!("joined rev {:?} but catch-up ends at {}", m.rev, self.rev);
        }
        Ok(out)
    }

    /// A local edit: applied at once, composed into the buffer.
    pub fn edit(&mut self, op: TextOp) -> Result<()> {
        op.apply(&mut self.text, usize::MAX)
            .map_err(|e| anyhow!("local op: {e}"))?;
        self.buffer = Some(match self.buffer.take() {
            None => (op, 1),
            Some((b, n)) => (b.compose(&op).map_err(|e| anyhow!("compose: {e}"))?, n + 1),
        });
        Ok(())
    }

    /// When nothing is in flight, moves the buffer in flight and returns the
    /// message to send.
    pub fn take_send(&mut self, now: Instant) -> Option<String> {
        if self.inflight.is_some() {
            return None;
        }
        let (op, edits) = self.buffer.take()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight = Some(Inflight {
            seq,
            op,
            sent_at: now,
            edits,
        });
        self.resend_msg()
    }

    /// The in-flight op as a message based on the current revision (same seq).
    pub fn resend_msg(&self) -> Option<String> {
        let i = self.inflight.as_ref()?;
        Some(format!(
            r#"{{"type":"op","rev":{},"seq":{},"op":{}}}"#,
            self.rev,
            i.seq,
            i.op.to_json()
        ))
    }

    /// Our op was committed as `rev`.
    pub fn on_ack(&mut self, rev: u64) -> Result<Inflight> {
        if rev != self.rev + 1 {
            bail!("ack for rev {rev} at rev {} (gap)", self.rev);
        }
        self.rev = rev;
        self.inflight.take().context("ack with nothing in flight")
    }

    /// Another client's op, committed as `rev`.
    pub fn on_remote(&mut self, rev: u64, op: &TextOp) -> Result<()> {
        if rev != self.rev + 1 {
            bail!("op for rev {rev} at rev {} (gap)", self.rev);
        }
        let mut op = op.clone();
        if let Some(inf) = self.inflight.as_mut() {
            let (p2, o2) = inf
                .op
                .transform(&op)
                .map_err(|e| anyhow!("transform: {e}"))?;
            inf.op = p2;
            op = o2;
        }
        if let Some((b, _)) = self.buffer.as_mut() {
            let (b2, o2) = b.transform(&op).map_err(|e| anyhow!("transform: {e}"))?;
            *b = b2;
            op = o2;
        }
        op.apply(&mut self.text, usize::MAX)
            .map_err(|e| anyhow!("remote op: {e}"))?;
        self.rev = rev;
        Ok(())
    }

    /// Length of the document at `rev` (what the server has), for presence.
    pub fn server_len(&self) -> usize {
        if let Some(i) = &self.inflight {
            i.op.base_len()
        } else if let Some((b, _)) = &self.buffer {
            b.base_len()
        } else {
            self.text.len_chars()
        }
    }

    pub fn pending(&self) -> bool {
        self.inflight.is_some() || self.buffer.is_some()
    }
}

/// A small deterministic xorshift generator (seeded by `--seed`).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
