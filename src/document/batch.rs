//! Batched frames (protocol extension): a session whose client asked for
//! them at `join` (`"batch": true`) may send several messages in one
//! WebSocket frame, as a JSON array. A crowded document then costs one
//! frame per peer per burst instead of one per message, on the server's
//! side (framing, the writer's wake-ups) and on the client's.
//!
//! The frames are already serialised, so a batch is their bytes joined by
//! commas between brackets. A batch stops growing at [`BATCH_BYTES`], so a
//! few large messages do not make one huge frame; a message larger than
//! that goes alone, as itself (not in an array).
//!
//! A document builds the batch of a burst's news once, for every batching
//! session that gets all of it (see `Fanout::burst`), and queues it as one
//! frame. A session that joins such a batch with other frames splices its
//! messages in: arrays are never nested, since every message is an object.

use bytestring::ByteString;

/// A batch is not grown past this many bytes (one message may exceed it).
pub const BATCH_BYTES: usize = 64 * 1024;

/// Groups `frames`, in order, into frames to write: runs of two or more as
/// one JSON array, a lone one as it is. A frame that is a batch already
/// adds its messages to the run.
pub fn batch_frames<'a>(frames: impl IntoIterator<Item = &'a str>) -> Vec<ByteString> {
    let mut out = Vec::new();
    let mut group: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for f in frames {
        if !group.is_empty() && bytes + f.len() + 1 > BATCH_BYTES {
            out.push(join(&group));
            group.clear();
            bytes = 0;
        }
        bytes += f.len() + 1;
        group.push(f);
    }
    if !group.is_empty() {
        out.push(join(&group));
    }
    out
}

fn join(group: &[&str]) -> ByteString {
    if let [one] = group {
        return ByteString::from(*one);
    }
    let mut s = String::with_capacity(group.iter().map(|f| f.len() + 1).sum::<usize>() + 1);
    s.push('[');
    for (i, f) in group.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(messages(f));
    }
    s.push(']');
    ByteString::from(s)
}

/// The messages of a frame, comma-separated: a batch's without its
/// brackets, a single message as it is.
fn messages(frame: &str) -> &str {
    frame
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_become_arrays_and_a_lone_frame_stays_itself() {
        let a = r#"{"type":"ack","seq":1,"rev":2}"#;
        let b = r#"{"type":"op","rev":3,"client":"x","op":[1,"a"]}"#;
        assert_eq!(batch_frames([a]), vec![ByteString::from(a)]);
        let two = batch_frames([a, b]);
        assert_eq!(two.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&two[0]).expect("json");
        assert_eq!(v[0]["type"], "ack");
        assert_eq!(v[1]["rev"], 3);
        assert!(batch_frames(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_batch_joined_with_more_frames_is_spliced_not_nested() {
        let a = r#"{"type":"op","rev":1,"client":"x","op":["a"]}"#;
        let b = r#"{"type":"op","rev":2,"client":"x","op":[1,"b"]}"#;
        let ack = r#"{"type":"ack","seq":1,"rev":3}"#;
        let batch = batch_frames([a, b]);
        let out = batch_frames([batch[0].as_ref(), ack]);
        assert_eq!(out.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&out[0]).expect("json");
        let types: Vec<_> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["type"].as_str().expect("type").to_owned())
            .collect();
        assert_eq!(types, ["op", "op", "ack"]);
        assert_eq!(v[1]["op"], serde_json::json!([1, "b"]));
        // Alone, a batch goes as it is.
        assert_eq!(batch_frames([batch[0].as_ref()]), batch);
    }

    #[test]
    fn batches_stop_at_the_byte_cap() {
        let big = format!(
            r#"{{"type":"op","rev":1,"client":"x","op":["{}"]}}"#,
            "a".repeat(BATCH_BYTES)
        );
        let small = r#"{"type":"ack","seq":1,"rev":2}"#;
        let out = batch_frames([small, small, big.as_str(), small]);
        // [small, small], then the big one alone (not an array), then small.
        assert_eq!(out.len(), 3);
        assert!(out[0].starts_with('['));
        assert_eq!(&*out[1], big.as_str());
        assert_eq!(&*out[2], small);
    }
}
