pub mod curation;
pub mod customers;
pub mod ops;
pub mod records;
