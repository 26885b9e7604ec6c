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

use bytestring::ByteString;

/// A batch is not grown past this many bytes (one message may exceed it).
pub const BATCH_BYTES: usize = 64 * 1024;

/// Groups `frames`, in order, into frames to write: runs of two or more as
/// one JSON array, a lone one as it is.
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
        s.push_str(f);
    }
    s.push(']');
    ByteString::from(s)
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
