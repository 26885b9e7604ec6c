-- Ownership epochs for several nodes on one database.
--
-- A node that takes a document (it holds the document's lease in Redis)
-- first claims it here: `epoch` grows by one and the node writes with that
-- value. Appends, language changes and snapshots carrying an older epoch are
-- refused, so a node that lost its lease (paused, partitioned) cannot write
-- after the next owner took the document, even where the revisions it would
-- write are still free. The primary key (document, rev) of `ops` remains the
-- last fence.
ALTER TABLE documents ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
