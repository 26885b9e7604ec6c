-- Tandem's first schema: documents, the op log, snapshots and access rights.
--
-- Document text can hold U+0000, which PostgreSQL `text` rejects, so
-- snapshot text is `bytea` (its UTF-8 bytes). Ops are ot.js JSON, where JSON
-- escapes U+0000 as \u0000, so `ops.op` stays readable `text`.

CREATE TABLE documents (
    id          text PRIMARY KEY,
    language    text NOT NULL,
    rev         bigint NOT NULL DEFAULT 0,
    created_ms  bigint NOT NULL,
    updated_ms  bigint NOT NULL
);

-- The primary key (document, rev) is the fence between nodes: a second
-- writer of a revision fails instead of forking history. It also serves
-- every range read of the log. (document, client, seq) dedupes resent ops
-- and serves find_op / last_seq.
CREATE TABLE ops (
    document    text NOT NULL REFERENCES documents (id),
    rev         bigint NOT NULL,
    client      text NOT NULL,
    seq         bigint NOT NULL,
    author      text NOT NULL,
    op          text NOT NULL,
    time_ms     bigint NOT NULL,
    PRIMARY KEY (document, rev),
    UNIQUE (document, client, seq)
);

CREATE TABLE snapshots (
    document    text NOT NULL REFERENCES documents (id),
    rev         bigint NOT NULL,
    text        bytea NOT NULL,
    time_ms     bigint NOT NULL,
    PRIMARY KEY (document, rev)
);

CREATE TABLE document_access (
    document    text NOT NULL REFERENCES documents (id),
    user_id     text NOT NULL,
    permission  text NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
    PRIMARY KEY (document, user_id)
);

-- list_documents: most recently changed first.
CREATE INDEX documents_updated ON documents (updated_ms DESC, id);
