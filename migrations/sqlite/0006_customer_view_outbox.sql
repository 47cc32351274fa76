-- The customer-view outbox. When the single customer view is served from another store
-- (DynamoDB), every change to a customer row queues the customer id here, in the same
-- transaction as the change, so that no change can be missed by the publisher: it copies the
-- queued customers to the view store and removes an entry only if its seq is still the one it
-- published (a change made meanwhile bumps seq and stays queued).
CREATE TABLE view_outbox (
    customer_id TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL
);

-- One row: whether the outbox is filled (1 while a separate view store is configured). With
-- the SQL view (the default) the customers table is the view and nothing is queued.
CREATE TABLE view_projection (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    enabled BIGINT NOT NULL
);
INSERT INTO view_projection (id, enabled) VALUES (1, 0);

CREATE TRIGGER customers_queue_view_insert AFTER INSERT ON customers
WHEN (SELECT enabled FROM view_projection WHERE id = 1) = 1
BEGIN
    INSERT INTO view_outbox (customer_id, seq) VALUES (NEW.id, 1)
    ON CONFLICT (customer_id) DO UPDATE SET seq = seq + 1;
END;

CREATE TRIGGER customers_queue_view_update AFTER UPDATE ON customers
WHEN (SELECT enabled FROM view_projection WHERE id = 1) = 1
BEGIN
    INSERT INTO view_outbox (customer_id, seq) VALUES (NEW.id, 1)
    ON CONFLICT (customer_id) DO UPDATE SET seq = seq + 1;
END;

CREATE TRIGGER customers_queue_view_delete AFTER DELETE ON customers
WHEN (SELECT enabled FROM view_projection WHERE id = 1) = 1
BEGIN
    INSERT INTO view_outbox (customer_id, seq) VALUES (OLD.id, 1)
    ON CONFLICT (customer_id) DO UPDATE SET seq = seq + 1;
END;
