-- A record's identifiers (emails, phones, loyalty, device and cookie ids) are blocking keys
-- too: `em:`, `ph:`, `ly:`, `dv:` or `ck:` and the normalized value, the value this table
-- held. Look-ups by identifier read blocking_keys, and a customer's identifiers are counted
-- from its records. The second copy cost every write three more B-trees (rows, primary key,
-- index by record), a large share of a bulk load's index writes.
DROP TABLE record_identifiers;
