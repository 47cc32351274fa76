-- c360 schema, PostgreSQL flavour. Timestamps are Unix epoch milliseconds (BIGINT) and structured
-- values are JSON text, so that one set of queries serves SQLite and PostgreSQL alike.

-- One row per customer id ever issued. A customer absorbed by a merge keeps its row with
-- `merged_into` pointing at the survivor, so that its id keeps resolving.
CREATE TABLE customers (
    id           TEXT PRIMARY KEY,
    merged_into  TEXT,
    golden       TEXT NOT NULL DEFAULT '{}',
    record_count BIGINT NOT NULL DEFAULT 0,
    version      BIGINT NOT NULL DEFAULT 1,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX customers_merged_into ON customers (merged_into);

-- The records as received (parsed and canonical), each belonging to one customer.
CREATE TABLE records (
    source            TEXT NOT NULL,
    source_id         TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    profile           TEXT NOT NULL,
    source_updated_at BIGINT,
    first_seen_at     BIGINT NOT NULL,
    last_changed_at   BIGINT NOT NULL,
    PRIMARY KEY (source, source_id)
);
CREATE INDEX records_customer ON records (customer_id);

-- Normalized identifiers, for look-ups by email, phone, loyalty/device/cookie id.
CREATE TABLE record_identifiers (
    kind      TEXT NOT NULL,
    value     TEXT NOT NULL,
    source    TEXT NOT NULL,
    source_id TEXT NOT NULL,
    PRIMARY KEY (kind, value, source, source_id)
);
CREATE INDEX record_identifiers_record ON record_identifiers (source, source_id);

-- The blocking index: candidates for a record are the records that share a key with it.
CREATE TABLE blocking_keys (
    key       TEXT NOT NULL,
    source    TEXT NOT NULL,
    source_id TEXT NOT NULL,
    PRIMARY KEY (key, source, source_id)
);
CREATE INDEX blocking_keys_record ON blocking_keys (source, source_id);

-- Edges of the identity graph, each with its evidence. (a_*) sorts before (b_*).
CREATE TABLE links (
    a_source    TEXT NOT NULL,
    a_source_id TEXT NOT NULL,
    b_source    TEXT NOT NULL,
    b_source_id TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (a_source, a_source_id, b_source, b_source_id)
);
CREATE INDEX links_b ON links (b_source, b_source_id);
