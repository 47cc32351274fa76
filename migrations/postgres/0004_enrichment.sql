-- Geo and demographic enrichment of each customer's golden address.
-- enrichment_key is the normalized golden address the enrichment belongs to: when survivorship
-- picks another address the key changes and the customer becomes pending again; when it does
-- not change, nothing is recomputed.
ALTER TABLE customers ADD COLUMN enrichment TEXT;
ALTER TABLE customers ADD COLUMN enrichment_key TEXT;
ALTER TABLE customers ADD COLUMN enrichment_pending BIGINT NOT NULL DEFAULT 0;
-- Set only for a rooftop point inside a known block group; the demographic insights group by it.
ALTER TABLE customers ADD COLUMN blockgroup_geoid TEXT;
CREATE INDEX customers_enrichment_pending ON customers (id) WHERE enrichment_pending = 1;
CREATE INDEX customers_blockgroup ON customers (blockgroup_geoid) WHERE merged_into IS NULL;

-- Every address is geocoded once per geocoder: later customers with the same normalized
-- address, and re-enrichment after a restart, read the answer from here.
CREATE TABLE geocode_cache (
    geocoder    TEXT NOT NULL,
    address_key TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (geocoder, address_key)
);
