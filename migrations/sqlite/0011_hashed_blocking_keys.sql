-- The blocking index files each record under 64-bit numbers, the hashes of its blocking keys
-- (c360_matching::batch::filed_key), instead of the keys' texts: about 16 rows per record, and
-- integer keys make the index smaller and bulk inserts into it cheaper. The texts stay in
-- records.filed_keys. SQL cannot compute the hashes, so the rows are filed again by the
-- service when it next starts (Database::migrate), from records.filed_keys, in one
-- transaction with the removal of the row below.
DROP TABLE blocking_keys;
CREATE TABLE blocking_keys (
    key       INTEGER NOT NULL,
    source    TEXT NOT NULL,
    source_id TEXT NOT NULL,
    PRIMARY KEY (key, source, source_id)
) WITHOUT ROWID;
CREATE TABLE blocking_keys_refiling (pending INTEGER NOT NULL);
INSERT INTO blocking_keys_refiling (pending) SELECT 1 WHERE EXISTS (SELECT 1 FROM records);
