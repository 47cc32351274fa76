//! The application layer of c360: the [`Resolver`] that takes records in, resolves them with
//! `c360-matching` and keeps the identity graph and the single customer view in a store.

mod aws;
pub mod bulk_load;
pub mod curation;
pub mod customer_view;
pub mod enrich;
pub mod error;
pub mod exports;
pub mod input;
pub mod jobs;
pub mod resident;
pub mod resolver;
pub mod store;
pub mod synth;

pub use error::{ServiceError, StoreError};
pub use resolver::{Resolver, StoreCounts};
pub use store::{Database, Engine};
