-- How many stored records carry each normalized first and last name, for the term-frequency
-- adjustment: a shared "smith" says less than a shared "quixote".
CREATE TABLE name_counts (
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (field, value)
);
