pub mod bulk;
pub mod curation;
pub mod customers;
pub mod enrichment;
pub mod ops;
pub mod records;
