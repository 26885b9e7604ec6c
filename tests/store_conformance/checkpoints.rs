//! Snapshots kept as deltas from the snapshot before them (the store
//! decides which; `src/store/checkpoint.rs`): whatever a store keeps, the
//! text it returns at a revision is the text the log gives there.

use ropey::Rope;
use tandem::ids::Revision;
use tandem::store::Store;

use super::*;

/// A small deterministic generator (xorshift64*), so that a failure can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A random history over a text long enough for deltas: mostly typing and
/// deleting near a cursor (snapshots become deltas), sometimes a jump, and
/// now and then an edit at both ends or a large cut (the text is stored
/// whole again). Returns the ops and the text after each revision (index 0:
/// the initial text).
fn random_history(seed: u64, ops: u64) -> (Vec<Arc<OpRecord>>, Vec<String>) {
    let mut rng = Rng(seed);
    let who = client("rand");
    let initial: String = (0..6_000).map(|i| PIECES[i % PIECES.len()]).collect();
    let mut texts = vec![initial];
    let mut records = Vec::new();
    let mut cursor = 0usize;
    for rev in 1..=ops {
        let before: Vec<char> = texts.last().map_or(Vec::new(), |t| t.chars().collect());
        let len = before.len();
        if rng.below(20) == 0 {
            cursor = rng.below(len as u64 + 1) as usize;
        }
        cursor = cursor.min(len);
        let roll = rng.below(1_000);
        let components: Vec<Component<'_>> = if roll < 10 && len > 10 {
            // Both ends at once: the delta spans the whole text.
            vec![
                Component::Delete(1),
                Component::Retain(len - 2),
                Component::Delete(1),
                Component::Insert("€"),
            ]
        } else if roll < 13 && len > 2_000 {
            let cut = len / 4;
            vec![Component::Delete(cut), Component::Retain(len - cut)]
        } else if roll < 300 && cursor > 0 {
            let n = (1 + rng.below(3) as usize).min(cursor);
            cursor -= n;
            vec![
                Component::Retain(cursor),
                Component::Delete(n),
                Component::Retain(len - cursor - n),
            ]
        } else {
            let piece = PIECES[rng.below(PIECES.len() as u64) as usize];
            let at = cursor;
            cursor += piece.chars().count();
            vec![
                Component::Retain(at),
                Component::Insert(piece),
                Component::Retain(len - at),
            ]
        };
        let op = TextOp::from_components(components);
        let after = op
            .apply_str(texts.last().map_or("", String::as_str))
            .expect("the generated op applies");
        records.push(Arc::new(OpRecord {
            rev: Revision(rev),
            client: who.clone(),
            seq: Seq(rev),
            author: "rand".into(),
            op,
            time_ms: 1_700_000_000_000 + rev as i64,
        }));
        texts.push(after);
    }
    (records, texts)
}

/// Random histories with snapshots at random revisions (some written with
/// their batch, some put afterwards, a few out of order): at every revision,
/// the snapshot at or before it is the text of the naive replay there, and
/// so is that snapshot plus the ops after it.
pub async fn snapshot_deltas_random(store: &dyn Store) {
    for seed in [0x5eed_0001_u64, 0x5eed_0002] {
        let id = doc(&format!("random-{seed:x}"));
        let (ops, texts) = random_history(seed, 600);
        store
            .create_document(&id, "rust", &texts[0])
            .await
            .expect("create");
        let mut rng = Rng(seed ^ 0xabcd);
        let mut late = Vec::new();
        let mut next = 0usize;
        while next < ops.len() {
            let n = (1 + rng.below(12) as usize).min(ops.len() - next);
            let end = (next + n) as u64;
            let snapshot =
                (rng.below(3) == 0).then(|| (Revision(end), Rope::from_str(&texts[end as usize])));
            let batch = AppendBatch {
                doc: id.clone(),
                ops: ops[next..next + n].to_vec(),
                snapshot,
                epoch: LeaseEpoch::ZERO,
            };
            store.append(batch).await.expect("append");
            next += n;
            match rng.below(8) {
                0 => store
                    .put_snapshot(
                        &id,
                        Revision(end),
                        Rope::from_str(&texts[end as usize]),
                        LeaseEpoch::ZERO,
                    )
                    .await
                    .expect("put"),
                1 => late.push(rng.below(end) + 1),
                _ => {}
            }
        }
        // Snapshots put behind later ones: each becomes a base, or a delta
        // of an older one, and must not break the chains around it.
        for rev in late {
            store
                .put_snapshot(
                    &id,
                    Revision(rev),
                    Rope::from_str(&texts[rev as usize]),
                    LeaseEpoch::ZERO,
                )
                .await
                .expect("put late");
        }
        let stored = store.snapshot_revisions(&id).await.expect("revisions");
        assert!(
            stored.len() > 25,
            "seed {seed:x}: {} snapshots",
            stored.len()
        );
        for rev in 0..=ops.len() as u64 {
            let snap = store
                .snapshot_at_or_before(&id, Revision(rev))
                .await
                .expect("read")
                .expect("a snapshot at or before every revision");
            let expected_rev = stored.iter().rev().find(|r| r.0 <= rev).copied();
            assert_eq!(Some(snap.rev), expected_rev, "seed {seed:x} at {rev}");
            assert!(
                snap.text == texts[snap.rev.0 as usize],
                "seed {seed:x}: snapshot {} differs from the replay",
                snap.rev
            );
            let tail = &ops[snap.rev.0 as usize..rev as usize];
            let text = tandem::history::text_at(&snap.text, tail.iter().map(|o| &o.op))
                .expect("ops apply to the snapshot");
            assert!(text == texts[rev as usize], "seed {seed:x}: text at {rev}");
        }
    }
}

/// A snapshot stored as a delta is rebuilt the same after the store is
/// reopened, and a snapshot written again at its revision keeps the first.
pub async fn snapshot_deltas_survive_reopen(backend: &dyn Backend) {
    let id = doc("delta-reopen");
    let (ops, texts) = random_history(0x5eed_0003, 200);
    {
        let store = backend.open().await;
        store
            .create_document(&id, "rust", &texts[0])
            .await
            .expect("create");
        for chunk in ops.chunks(10) {
            let end = chunk.last().map_or(0, |o| o.rev.0);
            let batch = AppendBatch {
                doc: id.clone(),
                ops: chunk.to_vec(),
                snapshot: Some((Revision(end), Rope::from_str(&texts[end as usize]))),
                epoch: LeaseEpoch::ZERO,
            };
            store.append(batch).await.expect("append");
        }
        store
            .put_snapshot(
                &id,
                Revision(100),
                Rope::from_str("other"),
                LeaseEpoch::ZERO,
            )
            .await
            .expect("put again");
    }
    let store = backend.open().await;
    for rev in (0..=200).step_by(10) {
        let snap = store
            .snapshot_at_or_before(&id, Revision(rev))
            .await
            .expect("read")
            .expect("snapshot");
        assert_eq!(snap.rev, Revision(rev));
        assert!(snap.text == texts[rev as usize], "snapshot {rev}");
    }
}
