-- Each record lists the blocking keys it is filed under (a JSON array), so that an update or
-- a delete removes exactly those rows by primary key. The index of blocking_keys by record
-- goes: keeping it up to date cost more than the primary key itself on bulk loads, and
-- nothing else read through it.
ALTER TABLE records ADD COLUMN filed_keys TEXT;
UPDATE records r SET filed_keys = k.keys
FROM (
    SELECT source, source_id, CAST(json_agg(key) AS TEXT) AS keys
    FROM blocking_keys GROUP BY source, source_id
) k
WHERE r.source = k.source AND r.source_id = k.source_id;
DROP INDEX blocking_keys_record;
