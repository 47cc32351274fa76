//! What people add to what the engine decided: review items for uncertain pairs, manual links,
//! and the views that explain a customer (its graph) or a probe (`who is this?`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::customer::LinkEvidence;
use crate::ids::{CustomerId, RecordKey};

/// A manual decision about two records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManualLinkKind {
    /// The two records are the same person, whatever the engine says.
    MustLink,
    /// The two records are different persons: never in one customer.
    CannotLink,
}

impl ManualLinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MustLink => "must_link",
            Self::CannotLink => "cannot_link",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "must_link" => Some(Self::MustLink),
            "cannot_link" => Some(Self::CannotLink),
            _ => None,
        }
    }
}

/// A manual link as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ManualLink {
    #[schema(example = "lnk_0192f0c1a3b87c3e9d1f2a4b5c6d7e8f")]
    pub id: String,
    pub kind: ManualLinkKind,
    pub a: RecordKey,
    pub b: RecordKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Set when the link was undone; an undone link no longer counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_at: Option<DateTime<Utc>>,
}

/// Where a review item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Open,
    /// A person said: same person (a must-link was made).
    Accepted,
    /// A person said: different persons (a cannot-link was made).
    Rejected,
    /// One of the records was deleted.
    Obsolete,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Obsolete => "obsolete",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Open, Self::Accepted, Self::Rejected, Self::Obsolete]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A pair the engine could not settle on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewItem {
    #[schema(example = "rev_0192f0c1a3b87c3e9d1f2a4b5c6d7e8f")]
    pub id: String,
    pub a: RecordKey,
    pub b: RecordKey,
    /// The customers the two records belong to now (absent for a deleted record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_customer_id: Option<CustomerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_customer_id: Option<CustomerId>,
    pub probability: f64,
    /// `possible_match` (the score fell in the review band) or the name of the guard rail that
    /// held back a link.
    #[schema(example = "possible_match")]
    pub reason: String,
    pub evidence: LinkEvidence,
    pub status: ReviewStatus,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

/// One record of a customer's identity graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphNode {
    pub record: RecordKey,
    /// A short label for drawing: the record's name, or its source id.
    #[schema(example = "Robert Smith")]
    pub label: String,
}

/// One link of a customer's identity graph and why it exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphEdge {
    pub a: RecordKey,
    pub b: RecordKey,
    pub evidence: LinkEvidence,
    pub created_at: DateTime<Utc>,
}

/// A customer as a graph: records as nodes, links as edges with their evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerGraph {
    pub customer_id: CustomerId,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Manual links touching the customer's records (cannot-links point outside it).
    pub manual_links: Vec<ManualLink>,
}

/// How the engine judged a stored record against a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchVerdict {
    Match,
    Review,
    NonMatch,
}

/// One candidate for a probe record, explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MatchCandidate {
    pub record: RecordKey,
    pub customer_id: CustomerId,
    pub verdict: MatchVerdict,
    pub probability: f64,
    /// Match weight in bits, prior included.
    pub weight: f64,
    /// The guard rail that would hold back a link, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    pub evidence: LinkEvidence,
}

/// The answer to "who is this?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MatchResult {
    /// The customer the probe would join if it were ingested now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_customer_id: Option<CustomerId>,
    /// The best candidates, strongest first.
    pub candidates: Vec<MatchCandidate>,
    /// How many stored records shared a blocking key with the probe.
    pub compared: usize,
}

/// A customer in a report: its id and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerSummary {
    pub customer_id: CustomerId,
    pub records: i64,
    pub updated_at: DateTime<Utc>,
}

/// Two records of one customer that a guard rail says are different people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Incoherence {
    pub a: RecordKey,
    pub b: RecordKey,
    /// The guard rail, e.g. `different_first_name_and_birth_date`.
    #[schema(example = "different_first_name_and_birth_date")]
    pub guard: String,
}

/// A customer that holds two people by the guard rails: usually a must-link made by hand that
/// the evidence contradicts, or links that chained past a guard. Its graph shows how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncoherentCustomer {
    pub customer_id: CustomerId,
    pub records: i64,
    /// The first conflicting pair found.
    pub conflict: Incoherence,
    pub updated_at: DateTime<Utc>,
}
