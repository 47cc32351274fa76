//! What ingesting one record did.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{CustomerId, RecordKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IngestOutcome {
    /// A new record that matched nobody: a new customer.
    CreatedCustomer,
    /// A new record that joined one existing customer.
    JoinedCustomer,
    /// A new record that matched several customers and merged them into one.
    MergedCustomers,
    /// A changed version of a known record; its customer was recomputed.
    Updated,
    /// The same content as stored: nothing changed.
    Unchanged,
    /// Older than the stored version (by `updated_at`): ignored.
    IgnoredStale,
}

/// The answer to ingesting one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestResult {
    pub record: RecordKey,
    /// The customer the record belongs to now.
    pub customer_id: CustomerId,
    pub outcome: IngestOutcome,
    /// Customers absorbed into `customer_id` by this change; their ids keep resolving to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_customer_ids: Vec<CustomerId>,
    /// Customers split off by this change (an update that removed a bridge between records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_customer_ids: Vec<CustomerId>,
}
