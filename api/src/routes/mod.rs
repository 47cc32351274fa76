pub mod customers;
pub mod ops;
pub mod records;
