-- Each record lists the blocking keys it is filed under (a JSON array), so that an update or
-- a delete removes exactly those rows by primary key. The index of blocking_keys by record
-- goes: keeping it up to date cost more than the primary key itself on bulk loads (the rows
-- arrive in key order, so every row landed on a different page of the record index), and
-- nothing else read through it.
ALTER TABLE records ADD COLUMN filed_keys TEXT;
UPDATE records SET filed_keys = (
    SELECT json_group_array(b.key) FROM blocking_keys b
    WHERE b.source = records.source AND b.source_id = records.source_id
);
-- The rows themselves in primary-key order, without a rowid table beside them: one B-tree
-- instead of two.
CREATE TABLE blocking_keys_by_key (
    key       TEXT NOT NULL,
    source    TEXT NOT NULL,
    source_id TEXT NOT NULL,
    PRIMARY KEY (key, source, source_id)
) WITHOUT ROWID;
INSERT INTO blocking_keys_by_key (key, source, source_id)
    SELECT key, source, source_id FROM blocking_keys ORDER BY key, source, source_id;
DROP TABLE blocking_keys;
ALTER TABLE blocking_keys_by_key RENAME TO blocking_keys;
