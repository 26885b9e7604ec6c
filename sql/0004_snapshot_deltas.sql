-- Snapshots kept as deltas (src/store/checkpoint.rs).
--
-- A snapshot row holds either the full text (`base` NULL) or, as the UTF-8
-- bytes of an ot.js JSON op, the change from the snapshot at revision
-- `base` of the same document to this one. `chain_cost` is what rebuilding
-- the row costs from the full text its chain ends on (bytes of its deltas
-- plus a fixed cost per delta); 0 for a full text, which every snapshot
-- written before this migration is.
ALTER TABLE snapshots
    ADD COLUMN base bigint CHECK (base < rev),
    ADD COLUMN chain_cost bigint NOT NULL DEFAULT 0;
