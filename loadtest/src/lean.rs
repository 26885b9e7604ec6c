//! The lean simulated client of `--full-clients`: it keeps the document's
//! length, not its text, so that a thousand of them on one document cost
//! the load generator little more than reading their sockets.
//!
//! What it still checks: every `op` and `ack` is the next revision (no gap,
//! no repeat), each remote op's base length is the length it holds (so the
//! stream of ops it was sent is consistent), and at the end its revision and
//! length equal the server's. What it gives up: the text, and with it the
//! transform of pending edits. Its op in flight keeps the revision it was
//! based on, and a resend after a reconnect is the same message, which the
//! server transforms (PROTOCOL.md: an op is based on the revision it names).
//! Edits made while an op is in flight are only counted; when the ack comes
//! they become one insert of all their characters at a random position of
//! the document at the acked revision, as composing inserts would give.
//!
//! Messages are parsed into [`LeanMsg`], which borrows its strings from the
//! frame and reads an op as two lengths ([`OpLens`]) without building it.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::client::{CatchUp, Rng, ServerMsg, parse_op};

/// A server message as a lean client reads it; other fields are skipped.
#[derive(Debug, Deserialize)]
pub struct LeanMsg<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    pub rev: Option<u64>,
    pub seq: Option<u64>,
    #[serde(borrow)]
    pub client: Option<Cow<'a, str>>,
    pub op: Option<OpLens>,
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
}

/// An op's base and target lengths in characters, read without building it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpLens {
    pub base: usize,
    pub target: usize,
}

impl<'de> Deserialize<'de> for OpLens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Comp(i64, usize);
        impl<'de> Deserialize<'de> for Comp {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = Comp;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an integer or a string")
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Comp, E> {
                        Ok(Comp(v, 0))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Comp, E> {
                        i64::try_from(v)
                            .map(|v| Comp(v, 0))
                            .map_err(|_| E::custom("integer out of range"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Comp, E> {
                        Ok(Comp(0, v.chars().count()))
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OpLens;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an op")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OpLens, A::Error> {
                let mut l = OpLens::default();
                while let Some(Comp(n, ins)) = seq.next_element()? {
                    // A retain counts in both, a delete in the base only,
                    // an insert in the target only.
                    let abs = n.unsigned_abs() as usize;
                    l.base += abs;
                    if n > 0 {
                        l.target += abs;
                    }
                    l.target += ins;
                }
                Ok(l)
            }
        }
        d.deserialize_seq(V)
    }
}

/// The op a lean client has sent and not yet seen acknowledged.
#[derive(Debug, Clone)]
pub struct LeanInflight {
    pub seq: u64,
    /// The message as sent, resent as it is (same base revision, same seq).
    pub msg: String,
    /// Characters it inserts: the document grows by this once it is acked.
    pub inserted: usize,
    pub sent_at: Instant,
    /// Local edits it holds.
    pub edits: u64,
}

/// What [`LeanClient::on_joined`] found (as [`crate::client::JoinOutcome`]).
#[derive(Debug, Default)]
pub struct LeanJoin {
    pub acked: Option<(u64, LeanInflight)>,
    pub dropped_edits: u64,
}

pub struct LeanClient {
    pub id: Option<String>,
    pub rev: u64,
    /// The document's length at `rev`, in characters.
    pub len: usize,
    pub inflight: Option<LeanInflight>,
    /// Edits made while an op was in flight: (characters, edits).
    pub buffer: Option<(usize, u64)>,
    pub next_seq: u64,
    pub name: String,
}

impl Default for LeanClient {
    fn default() -> Self {
        LeanClient {
            id: None,
            rev: 0,
            len: 0,
            inflight: None,
            buffer: None,
            next_seq: 1,
            name: String::new(),
        }
    }
}

impl LeanClient {
    pub fn new(name: &str) -> LeanClient {
        LeanClient {
            name: name.to_owned(),
            ..LeanClient::default()
        }
    }

    /// Takes in `joined` (rare: parsed whole, as a full client does).
    pub fn on_joined(&mut self, m: &ServerMsg) -> Result<LeanJoin> {
        let mut out = LeanJoin::default();
        self.id = Some(m.client.clone().context("joined without client")?);
        if let Some(ops) = &m.ops {
            for CatchUp { rev, client, op } in ops {
                if client.is_some() && *client == self.id {
                    out.acked = Some((*rev, self.on_ack(*rev)?));
                } else {
                    let op = parse_op(op)?;
                    self.on_remote(
                        *rev,
                        OpLens {
                            base: op.base_len(),
                            target: op.target_len(),
                        },
                    )?;
                }
            }
        } else {
            let text = m
                .text
                .as_deref()
                .context("joined with neither ops nor text")?;
            out.dropped_edits =
                self.inflight.take().map_or(0, |i| i.edits) + self.buffer.take().map_or(0, |b| b.1);
            self.len = text.chars().count();
            self.rev = m.rev.context("joined without rev")?;
        }
        if m.rev != Some(self.rev) {
            bail!("joined rev {:?} but catch-up ends at {}", m.rev, self.rev);
        }
        Ok(out)
    }

    /// A local edit of `chars` characters: counted until it can be sent.
    pub fn edit(&mut self, chars: usize) {
        self.buffer = Some(match self.buffer.take() {
            None => (chars, 1),
            Some((c, n)) => (c + chars, n + 1),
        });
    }

    /// When nothing is in flight, sends the buffered edits as one insert at
    /// a random position of the document at `rev`.
    pub fn take_send(&mut self, now: Instant, rng: &mut Rng) -> Option<String> {
        if self.inflight.is_some() {
            return None;
        }
        let (chars, edits) = self.buffer.take()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let pos = rng.below(self.len as u64 + 1) as usize;
        let text = random_letters(rng, chars);
        let mut op = String::with_capacity(chars + 32);
        op.push('[');
        if pos > 0 {
            op.push_str(&format!("{pos},"));
        }
        op.push_str(&format!("\"{text}\""));
        if self.len > pos {
            op.push_str(&format!(",{}", self.len - pos));
        }
        op.push(']');
        let msg = format!(
            r#"{{"type":"op","rev":{},"seq":{seq},"op":{op}}}"#,
            self.rev
        );
        self.inflight = Some(LeanInflight {
            seq,
            msg: msg.clone(),
            inserted: chars,
            sent_at: now,
            edits,
        });
        Some(msg)
    }

    pub fn resend_msg(&self) -> Option<String> {
        self.inflight.as_ref().map(|i| i.msg.clone())
    }

    /// Our op was committed as `rev`.
    pub fn on_ack(&mut self, rev: u64) -> Result<LeanInflight> {
        if rev != self.rev + 1 {
            bail!("ack for rev {rev} at rev {} (gap)", self.rev);
        }
        let inf = self.inflight.take().context("ack with nothing in flight")?;
        self.rev = rev;
        self.len += inf.inserted;
        Ok(inf)
    }

    /// Another client's op, committed as `rev`.
    pub fn on_remote(&mut self, rev: u64, op: OpLens) -> Result<()> {
        if rev != self.rev + 1 {
            bail!("op for rev {rev} at rev {} (gap)", self.rev);
        }
        if op.base != self.len {
            bail!(
                "op for rev {rev} is based on {} characters, the document has {}",
                op.base,
                self.len
            );
        }
        self.rev = rev;
        self.len = op.target;
        Ok(())
    }

    pub fn pending(&self) -> bool {
        self.inflight.is_some() || self.buffer.is_some()
    }
}

/// `n` random lowercase letters.
pub fn random_letters(rng: &mut Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(json: &str) -> OpLens {
        serde_json::from_str(json).expect("op")
    }

    #[test]
    fn op_lengths_without_building_the_op() {
        assert_eq!(
            lens(r#"[5,"abc",-3,2]"#),
            OpLens {
                base: 10,
                target: 10
            }
        );
        assert_eq!(lens(r#"["h\u00e9\"llo"]"#), OpLens { base: 0, target: 6 });
        assert_eq!(lens(r#"[3,"😀"]"#), OpLens { base: 3, target: 4 });
        assert_eq!(lens("[-4]"), OpLens { base: 4, target: 0 });
        assert_eq!(lens("[]"), OpLens::default());
    }

    #[test]
    fn messages_parse_borrowed() {
        let m: LeanMsg = serde_json::from_str(
            r#"{"type":"op","rev":43,"client":"9f2c","op":["pub ",13],"selection":{"ranges":[]}}"#,
        )
        .expect("msg");
        assert_eq!((m.kind.as_ref(), m.rev), ("op", Some(43)));
        assert_eq!(
            m.op,
            Some(OpLens {
                base: 13,
                target: 17
            })
        );
        let m: LeanMsg = serde_json::from_str(r#"{"type":"ack","seq":7,"rev":42}"#).expect("ack");
        assert_eq!((m.kind.as_ref(), m.seq, m.rev), ("ack", Some(7), Some(42)));
    }

    #[test]
    fn revisions_must_follow_and_lengths_match() {
        let mut c = LeanClient {
            rev: 10,
            len: 5,
            ..LeanClient::default()
        };
        let mut rng = Rng::new(3);
        c.edit(4);
        let msg = c.take_send(Instant::now(), &mut rng).expect("sent");
        assert!(msg.contains(r#""rev":10,"seq":1"#), "{msg}");
        let op: serde_json::Value = serde_json::from_str(&msg).expect("json");
        let op: OpLens = serde_json::from_value(op["op"].clone()).expect("op");
        assert_eq!(op, OpLens { base: 5, target: 9 });
        c.edit(4);
        c.edit(4);
        assert!(
            c.take_send(Instant::now(), &mut rng).is_none(),
            "one in flight"
        );
        c.on_remote(11, OpLens { base: 5, target: 6 })
            .expect("next rev");
        assert!(
            c.on_remote(11, OpLens { base: 6, target: 7 }).is_err(),
            "repeat"
        );
        assert!(
            c.on_remote(13, OpLens { base: 6, target: 7 }).is_err(),
            "gap"
        );
        assert!(
            c.on_remote(
                12,
                OpLens {
                    base: 9,
                    target: 10
                }
            )
            .is_err(),
            "length"
        );
        assert_eq!(c.on_ack(12).expect("ack").edits, 1);
        assert_eq!((c.rev, c.len), (12, 10));
        let msg = c.take_send(Instant::now(), &mut rng).expect("buffer sent");
        let v: serde_json::Value = serde_json::from_str(&msg).expect("json");
        let op: OpLens = serde_json::from_value(v["op"].clone()).expect("op");
        assert_eq!(
            (v["rev"].as_u64(), op),
            (
                Some(12),
                OpLens {
                    base: 10,
                    target: 18
                }
            )
        );
    }
}
