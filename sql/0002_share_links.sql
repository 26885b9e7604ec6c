-- Share links: whoever presents a link's token gets its permission (read or
-- write, never admin) on its document until it expires or is revoked.
--
-- Only a hash of the token is stored (the server hashes what a client
-- presents and looks the hash up), so a copy of the database holds no
-- usable link. The hash is unique, so a lookup finds at most one link; the
-- id, which names a link to list and revoke it, is not secret.
--
-- Expired links stay until revoked: the caller compares expires_ms with the
-- time.

CREATE TABLE share_links (
    id          text PRIMARY KEY,
    document    text NOT NULL REFERENCES documents (id),
    token_hash  text NOT NULL,
    permission  text NOT NULL CHECK (permission IN ('read', 'write')),
    expires_ms  bigint NOT NULL,
    created_ms  bigint NOT NULL,
    created_by  text NOT NULL
);

-- Presenting a token: one lookup by its hash.
CREATE UNIQUE INDEX share_links_token_hash ON share_links (token_hash);

-- Listing a document's links, newest first.
CREATE INDEX share_links_document ON share_links (document, created_ms DESC);
