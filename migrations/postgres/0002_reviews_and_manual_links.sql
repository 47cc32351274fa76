-- Possible matches waiting for a person, and links people made by hand.

-- A pair the engine could not settle: its probability fell in the review band, or a guard
-- rail held back a link that scored as a match. (a_*) sorts before (b_*).
CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    a_source    TEXT NOT NULL,
    a_source_id TEXT NOT NULL,
    b_source    TEXT NOT NULL,
    b_source_id TEXT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    reason      TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    created_at  BIGINT NOT NULL,
    decided_at  BIGINT,
    UNIQUE (a_source, a_source_id, b_source, b_source_id)
);
CREATE INDEX reviews_status ON reviews (status, created_at);
CREATE INDEX reviews_b ON reviews (b_source, b_source_id);

-- must_link / cannot_link between two records, undone by setting undone_at.
CREATE TABLE manual_links (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    a_source    TEXT NOT NULL,
    a_source_id TEXT NOT NULL,
    b_source    TEXT NOT NULL,
    b_source_id TEXT NOT NULL,
    note        TEXT,
    created_at  BIGINT NOT NULL,
    undone_at   BIGINT
);
CREATE INDEX manual_links_a ON manual_links (a_source, a_source_id);
CREATE INDEX manual_links_b ON manual_links (b_source, b_source_id);
