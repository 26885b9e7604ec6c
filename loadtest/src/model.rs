//! A load client's model of the document: full (the text in a rope, every
//! op transformed and applied, as a browser does) or lean (its length only,
//! see [`crate::lean`]). The workload drives either through this, and reads
//! each frame through [`Model::take_frame`], which also accepts the batched
//! frames (a JSON array of messages) a client gets after `"batch": true`.

use std::time::Instant;

use anyhow::{Context, Result, anyhow};

use crate::client::{OtClient, Rng, ServerMsg, insert_op, parse_op};
use crate::lean::{LeanClient, LeanMsg, random_letters};

pub enum Model {
    Full(OtClient),
    Lean(LeanClient),
}

/// One of our ops, acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub rev: u64,
    pub sent_at: Instant,
    pub edits: u64,
}

/// What a server message meant to the workload.
#[derive(Debug)]
pub enum Event {
    Ack(Acked),
    /// An ack whose seq is not the op in flight (counted as an error).
    StrayAck(Option<u64>),
    /// Another client's op, now applied, committed as this revision.
    Op(u64),
    Error {
        code: String,
        message: String,
        seq: Option<u64>,
    },
}

/// What a client ends with, for the convergence check.
pub enum EndState {
    Text(String),
    Len(usize),
}

impl Model {
    pub fn new(lean: bool, name: &str) -> Model {
        if lean {
            Model::Lean(LeanClient::new(name))
        } else {
            Model::Full(OtClient::new(name))
        }
    }

    /// The `join` message; `batch` asks for batched frames.
    pub fn join_msg(&self, reload: bool, batch: bool) -> String {
        let (id, rev, name) = match self {
            Model::Full(c) => (&c.id, c.rev, &c.name),
            Model::Lean(c) => (&c.id, c.rev, &c.name),
        };
        let (client, rev) = match id {
            Some(id) if !reload => (serde_json::json!(id), serde_json::json!(rev)),
            Some(id) => (serde_json::json!(id), serde_json::Value::Null),
            None => (serde_json::Value::Null, serde_json::Value::Null),
        };
        let mut v = serde_json::json!({"type": "join", "client": client, "rev": rev, "user": {"name": name}});
        if batch {
            v["batch"] = true.into();
        }
        v.to_string()
    }

    /// Takes in `joined`: the ack of the op in flight if the catch-up holds
    /// it, and the edits dropped if the server sent the text.
    pub fn on_joined(&mut self, m: &ServerMsg) -> Result<(Option<Acked>, u64)> {
        Ok(match self {
            Model::Full(c) => {
                let out = c.on_joined(m)?;
                let acked = out.acked.map(|(rev, i)| Acked {
                    rev,
                    sent_at: i.sent_at,
                    edits: i.edits,
                });
                (acked, out.dropped_edits)
            }
            Model::Lean(c) => {
                let out = c.on_joined(m)?;
                let acked = out.acked.map(|(rev, i)| Acked {
                    rev,
                    sent_at: i.sent_at,
                    edits: i.edits,
                });
                (acked, out.dropped_edits)
            }
        })
    }

    /// A local edit: `chars` random letters at a random position.
    pub fn edit(&mut self, rng: &mut Rng, chars: usize) -> Result<()> {
        match self {
            Model::Full(c) => {
                let len = c.text.len_chars();
                let pos = rng.below(len as u64 + 1) as usize;
                let s = random_letters(rng, chars);
                c.edit(insert_op(len, pos, &s))
            }
            Model::Lean(c) => {
                c.edit(chars);
                Ok(())
            }
        }
    }

    pub fn take_send(&mut self, now: Instant, rng: &mut Rng) -> Option<String> {
        match self {
            Model::Full(c) => c.take_send(now),
            Model::Lean(c) => c.take_send(now, rng),
        }
    }

    pub fn resend_msg(&self) -> Option<String> {
        match self {
            Model::Full(c) => c.resend_msg(),
            Model::Lean(c) => c.resend_msg(),
        }
    }

    pub fn has_inflight(&self) -> bool {
        match self {
            Model::Full(c) => c.inflight.is_some(),
            Model::Lean(c) => c.inflight.is_some(),
        }
    }

    pub fn pending(&self) -> bool {
        match self {
            Model::Full(c) => c.pending(),
            Model::Lean(c) => c.pending(),
        }
    }

    pub fn rev(&self) -> u64 {
        match self {
            Model::Full(c) => c.rev,
            Model::Lean(c) => c.rev,
        }
    }

    /// The document's length as this client sees it.
    pub fn doc_len(&self) -> usize {
        match self {
            Model::Full(c) => c.text.len_chars(),
            Model::Lean(c) => c.len,
        }
    }

    /// The length at `rev()` (what the server has), for presence.
    pub fn server_len(&self) -> usize {
        match self {
            Model::Full(c) => c.server_len(),
            Model::Lean(c) => c.len,
        }
    }

    pub fn end_state(&self) -> EndState {
        match self {
            Model::Full(c) => EndState::Text(c.text.to_string()),
            Model::Lean(c) => EndState::Len(c.len),
        }
    }

    /// Reads one frame (a message, or an array of them) and applies it,
    /// pushing what each message meant onto `out`, in order.
    pub fn take_frame(&mut self, frame: &str, out: &mut Vec<Event>) -> Result<()> {
        let batched = frame.trim_start().starts_with('[');
        match self {
            Model::Full(c) => {
                let msgs: Vec<ServerMsg> = if batched {
                    serde_json::from_str(frame).context("server sent bad JSON")?
                } else {
                    vec![serde_json::from_str(frame).context("server sent bad JSON")?]
                };
                for m in msgs {
                    full_message(c, m, out)?;
                }
            }
            Model::Lean(c) => {
                if batched {
                    let msgs: Vec<LeanMsg> =
                        serde_json::from_str(frame).context("server sent bad JSON")?;
                    for m in msgs {
                        lean_message(c, m, out)?;
                    }
                } else {
                    let m = serde_json::from_str(frame).context("server sent bad JSON")?;
                    lean_message(c, m, out)?;
                }
            }
        }
        Ok(())
    }
}

fn full_message(c: &mut OtClient, m: ServerMsg, out: &mut Vec<Event>) -> Result<()> {
    match m.kind.as_str() {
        "ack" => {
            let rev = m.rev.context("ack without rev")?;
            if c.inflight.as_ref().map(|i| i.seq) != m.seq {
                out.push(Event::StrayAck(m.seq));
                return Ok(());
            }
            let i = c.on_ack(rev)?;
            out.push(Event::Ack(Acked {
                rev,
                sent_at: i.sent_at,
                edits: i.edits,
            }));
        }
        "op" => {
            let rev = m.rev.context("op without rev")?;
            let op = parse_op(m.op.as_ref().context("op without op")?)?;
            c.on_remote(rev, &op)?;
            out.push(Event::Op(rev));
        }
        "error" => out.push(Event::Error {
            code: m.code.unwrap_or_default(),
            message: m.message.unwrap_or_default(),
            seq: m.seq,
        }),
        _ => {}
    }
    Ok(())
}

fn lean_message(c: &mut LeanClient, m: LeanMsg<'_>, out: &mut Vec<Event>) -> Result<()> {
    match m.kind.as_ref() {
        "ack" => {
            let rev = m.rev.context("ack without rev")?;
            if c.inflight.as_ref().map(|i| i.seq) != m.seq {
                out.push(Event::StrayAck(m.seq));
                return Ok(());
            }
            let i = c.on_ack(rev)?;
            out.push(Event::Ack(Acked {
                rev,
                sent_at: i.sent_at,
                edits: i.edits,
            }));
        }
        "op" => {
            let rev = m.rev.context("op without rev")?;
            if m.client.is_some() && m.client.as_deref() == c.id.as_deref() {
                return Err(anyhow!("rev {rev}: our own op sent back as another's"));
            }
            c.on_remote(rev, m.op.context("op without op")?)?;
            out.push(Event::Op(rev));
        }
        "error" => out.push(Event::Error {
            code: m.code.map(|c| c.into_owned()).unwrap_or_default(),
            message: m.message.map(|c| c.into_owned()).unwrap_or_default(),
            seq: m.seq,
        }),
        _ => {}
    }
    Ok(())
}
