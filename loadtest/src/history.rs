//! `--write-history FILE --ops N`: an export file (the JSON-lines format
//! `tandem import` reads, src/replay.rs) of a document whose history is N
//! ops, each typing one character at the end of the text, so the final text
//! is N characters: [`CORPUS`] cycled. No server is involved.
//!
//! A handful of authors take turns: each types a run of 20–420 characters
//! (60–300 ms between keystrokes) before another one takes over after a
//! pause of 2–60 s. Each author has one client id and its own `seq`,
//! 1, 2, 3, …; `time` is Unix milliseconds, the last op at about "now".
//! Everything but `time` depends only on N and the seed.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::client::Rng;

/// The text the history types, cycled: ASCII, code-like, with newlines,
/// indentation, quotes and a backslash (escaped in the JSON).
pub const CORPUS: &str = r#"use std::collections::HashMap;

/// Counts the words of every line and keeps the most frequent ones.
pub struct WordCount {
    counts: HashMap<String, usize>,
    lines: usize,
}

impl WordCount {
    pub fn new() -> Self {
        WordCount { counts: HashMap::new(), lines: 0 }
    }

    pub fn add_line(&mut self, line: &str) {
        self.lines += 1;
        for word in line.split_whitespace() {
            let word = word.trim_matches(|c: char| !c.is_alphanumeric());
            if word.is_empty() {
                continue;
            }
            *self.counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }

    pub fn top(&self, n: usize) -> Vec<(&str, usize)> {
        let mut all: Vec<_> = self.counts.iter().map(|(w, c)| (w.as_str(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

fn main() {
    let mut wc = WordCount::new();
    for line in "lorem ipsum dolor sit amet\nconsectetur adipiscing elit".lines() {
        wc.add_line(line);
    }
    for (word, count) in wc.top(10) {
        println!("{word:>12}\t{count}");
    }
}

"#;

/// The authors: (name, client id).
const AUTHORS: [&str; 5] = ["ada", "grace", "linus", "barbara", "ken"];

/// The document's text after `ops` ops: [`CORPUS`] cycled to `ops` chars.
pub fn history_text(ops: u64) -> String {
    CORPUS.chars().cycle().take(ops as usize).collect()
}

/// Who types each op and how long after the previous one (ms).
struct Typist {
    rng: Rng,
    author: usize,
    left: u64,
    first: bool,
}

impl Typist {
    fn new(seed: u64) -> Typist {
        Typist {
            rng: Rng::new(seed ^ 0x6869_7374),
            author: 0,
            left: 0,
            first: true,
        }
    }

    /// (author index, milliseconds since the previous op).
    fn next(&mut self) -> (usize, i64) {
        let mut gap = 60 + self.rng.below(241) as i64;
        if self.left == 0 {
            if !self.first {
                self.author = (self.author + 1 + self.rng.below(AUTHORS.len() as u64 - 1) as usize)
                    % AUTHORS.len();
                gap = 2_000 + self.rng.below(58_001) as i64;
            }
            self.left = 20 + self.rng.below(401);
        }
        self.left -= 1;
        if std::mem::take(&mut self.first) {
            gap = 0;
        }
        (self.author, gap)
    }
}

/// What [`write_history`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistorySummary {
    pub doc: String,
    pub ops: u64,
    /// Characters of the final text (= ops).
    pub text_chars: u64,
    pub file_bytes: u64,
    pub clients: usize,
    pub first_time_ms: i64,
    pub last_time_ms: i64,
    pub elapsed_s: f64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `c` as the inside of a JSON string.
fn push_json_char(out: &mut Vec<u8>, c: char) {
    match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\r' => out.extend_from_slice(b"\\r"),
        c if (c as u32) < 0x20 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
}

/// Writes the export of document `doc` with `ops` one-character inserts to
/// `out` (streamed; the caller buffers). Returns the first and last op's
/// time (Unix ms) and how many clients typed.
pub fn write_history_to(
    out: &mut impl Write,
    doc: &str,
    ops: u64,
    seed: u64,
) -> Result<(i64, i64, usize)> {
    if tandem::ids::DocId::parse(doc).is_err() {
        bail!("bad document id {doc:?} (1-128 of [A-Za-z0-9._-])");
    }
    // First pass: the history's span, so that the last op is at "now".
    let mut span = 0i64;
    let mut t = Typist::new(seed);
    for _ in 0..ops {
        span += t.next().1;
    }
    let start = now_ms() - span;
    let mut id_rng = Rng::new(seed ^ 0x636c_6965);
    let clients: Vec<String> = AUTHORS
        .iter()
        .map(|_| format!("{:016x}", id_rng.next_u64()))
        .collect();
    let header = serde_json::json!({"id": doc, "language": "rust", "rev": ops});
    writeln!(out, "{header}")?;
    writeln!(out, "{}", serde_json::json!({"rev": 0, "text": ""}))?;
    let mut seqs = [0u64; AUTHORS.len()];
    let mut typist = Typist::new(seed);
    let mut time = start;
    let mut line = Vec::with_capacity(160);
    for (i, c) in (0..ops).zip(CORPUS.chars().cycle()) {
        let (a, gap) = typist.next();
        time += gap;
        seqs[a] += 1;
        line.clear();
        let _ = write!(
            line,
            r#"{{"rev":{},"client":"{}","seq":{},"author":"{}","op":["#,
            i + 1,
            clients[a],
            seqs[a],
            AUTHORS[a]
        );
        if i > 0 {
            let _ = write!(line, "{i},");
        }
        line.push(b'"');
        push_json_char(&mut line, c);
        let _ = writeln!(line, r#""],"time":{time}}}"#);
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok((start, time, seqs.iter().filter(|&&s| s > 0).count()))
}

/// [`write_history_to`] a file, through a `BufWriter`.
pub fn write_history(path: &Path, doc: &str, ops: u64, seed: u64) -> Result<HistorySummary> {
    let started = Instant::now();
    if tandem::ids::DocId::parse(doc).is_err() {
        bail!("bad document id {doc:?} (1-128 of [A-Za-z0-9._-])");
    }
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let (first, last, clients) = write_history_to(&mut out, doc, ops, seed)
        .with_context(|| format!("write {}", path.display()))?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    let file_bytes = file.metadata()?.len();
    Ok(HistorySummary {
        doc: doc.to_owned(),
        ops,
        text_chars: ops,
        file_bytes,
        clients,
        first_time_ms: first,
        last_time_ms: last,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tandem::ot::{OpLimits, RawOp, TextOp};

    #[test]
    fn history_replays_to_the_cycled_corpus() {
        let ops = CORPUS.chars().count() as u64 * 2 + 17;
        let mut buf = Vec::new();
        write_history_to(&mut buf, "doc-1", ops, 7).expect("write");
        let text = std::str::from_utf8(&buf).expect("utf-8");
        let mut lines = text.lines();
        let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["id"], "doc-1");
        assert_eq!(header["rev"], ops);
        let snap: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(snap, serde_json::json!({"rev": 0, "text": ""}));
        let limits = OpLimits {
            max_components: usize::MAX,
            max_insert_chars: usize::MAX,
            max_document_chars: usize::MAX / 2,
        };
        let mut rope = ropey::Rope::new();
        let mut seqs = std::collections::HashMap::new();
        let mut last_time = 0;
        let mut n = 0;
        for l in lines {
            n += 1;
            let v: Value = serde_json::from_str(l).expect(l);
            assert_eq!(v["rev"], n, "{l}");
            let raw: RawOp = serde_json::from_value(v["op"].clone()).expect(l);
            let op = TextOp::parse(&raw, &limits).expect(l);
            op.apply(&mut rope, usize::MAX).expect(l);
            let seq = seqs
                .entry(v["client"].as_str().unwrap().to_owned())
                .or_insert(0);
            *seq += 1;
            assert_eq!(v["seq"], *seq, "{l}");
            let time = v["time"].as_i64().unwrap();
            assert!(time >= last_time, "{l}");
            last_time = time;
            assert!(AUTHORS.contains(&v["author"].as_str().unwrap()));
        }
        assert_eq!(n, ops);
        assert_eq!(rope.to_string(), history_text(ops));
        assert!(seqs.len() > 1, "several clients");
        // Unix milliseconds, ending about now.
        assert!((now_ms() - last_time).abs() < 60_000, "{last_time}");
    }
}
