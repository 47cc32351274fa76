-- A customer holding two records that a guard rail says are different people (a must-link
-- made by hand, or records that arrived in an order that chained past a guard): the first such
-- pair and the guard, as JSON, recomputed with the golden record; NULL when coherent. The
-- incoherent-customer report reads the rows where it is set.
ALTER TABLE customers ADD COLUMN incoherence TEXT;
CREATE INDEX customers_incoherent ON customers (updated_at) WHERE incoherence IS NOT NULL;
