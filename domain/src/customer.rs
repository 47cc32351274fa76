//! The single customer view: one person, the records that make it up, the golden record built
//! from them, and the evidence of each link between records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{CustomerId, IdentifierKind, RecordKey};
use crate::record::Profile;
use crate::values::PostalAddress;

/// One surviving value of the golden record and the record it was taken from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GoldenValue {
    #[schema(example = "Robert")]
    pub value: String,
    /// The record the value comes from.
    pub from: RecordKey,
}

/// The surviving address and the record it was taken from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GoldenAddress {
    pub value: PostalAddress,
    pub from: RecordKey,
}

/// The best-known value of each field for one customer, each naming its source record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GoldenRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<GoldenValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<GoldenValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<GoldenValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<GoldenValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<GoldenValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<GoldenValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<GoldenAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty_id: Option<GoldenValue>,
}

/// One record of a customer, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberRecord {
    pub record: Profile,
    /// When c360 first received this record.
    pub first_seen_at: DateTime<Utc>,
    /// When c360 last stored a change to this record.
    pub last_changed_at: DateTime<Utc>,
}

/// One identifier of a customer and how many of its records carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentifierEntry {
    pub kind: IdentifierKind,
    #[schema(example = "bob.smith@example.com")]
    pub value: String,
    pub records: u32,
}

pub use crate::enrichment::Enrichment;

/// How one field compared in a scored pair, and what it weighed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldEvidence {
    #[schema(example = "first_name")]
    pub field: String,
    /// `exact`, `nickname`, `close`, `fuzzy`, `same_user`, `different`...
    #[schema(example = "nickname")]
    pub level: String,
    /// Match weight in bits (log2 of m/u, term frequency included); positive is for a match.
    pub weight: f64,
}

/// Why two records were linked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LinkEvidence {
    /// A deterministic rule fired, e.g. `same_email_compatible_first_name`.
    Rule {
        #[schema(example = "same_email_compatible_first_name")]
        rule: String,
        /// The probabilistic score of the same pair, for reference.
        probability: f64,
        fields: Vec<FieldEvidence>,
    },
    /// The Fellegi-Sunter score was at or above the match threshold.
    Score {
        probability: f64,
        /// Total match weight in bits, prior included.
        weight: f64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        names_swapped: bool,
        fields: Vec<FieldEvidence>,
    },
    /// A person decided by hand.
    Manual {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// The single customer view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerView {
    pub customer_id: CustomerId,
    /// Set when the id asked for was absorbed by a merge: that id now resolves to this customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<CustomerId>,
    pub golden: GoldenRecord,
    pub records: Vec<MemberRecord>,
    pub identifiers: Vec<IdentifierEntry>,
    pub enrichment: Enrichment,
    /// Increases by one with every change to this customer.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stored record and the customer it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    pub customer_id: CustomerId,
    pub record: Profile,
    pub first_seen_at: DateTime<Utc>,
    pub last_changed_at: DateTime<Utc>,
}

/// One line of the customers export: the golden record with its enrichment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportedCustomer {
    pub customer_id: CustomerId,
    pub golden: GoldenRecord,
    pub enrichment: Enrichment,
    pub record_count: u64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}
