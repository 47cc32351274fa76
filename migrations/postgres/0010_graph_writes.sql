-- How many transactions have written to the identity graph (records, links, customers'
-- membership, manual links). Every such write counts itself; a bulk job that holds the
-- store's records in memory compares the count, under the exclusive bulk lock, with the one
-- after its previous chunk, and reads the store again when anything else wrote in between.
-- A sequence, so that concurrent writers never wait on one another for it (a number taken by
-- a transaction that rolls back only makes a job read the store again).
CREATE SEQUENCE graph_writes;
