-- How many transactions have written to the identity graph (records, links, customers'
-- membership, manual links). Every such write counts itself; a bulk job that holds the
-- store's records in memory compares the count, under the writer lock, with the one after its
-- previous chunk, and reads the store again when anything else wrote in between.
CREATE TABLE graph_writes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO graph_writes (id, n) VALUES (1, 0);
