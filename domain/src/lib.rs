//! Pure types of c360: what a profile record is once parsed, the identifiers it carries, the
//! customer (single customer view) built from records, and the evidence behind a link.
//!
//! Parse, don't validate: every value that enters the system goes through a constructor that
//! either returns a well-formed newtype or a [`FieldError`] naming the field and the reason.
//! Nothing here does I/O.

pub mod curation;
pub mod customer;
pub mod enrichment;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod outcome;
pub mod record;
pub mod values;

pub use curation::{
    CustomerGraph, CustomerSummary, GraphEdge, GraphNode, Incoherence, IncoherentCustomer,
    ManualLink, ManualLinkKind, MatchCandidate, MatchResult, MatchVerdict, ReviewItem,
    ReviewStatus,
};
pub use customer::{
    CustomerView, Enrichment, ExportedCustomer, FieldEvidence, GoldenAddress, GoldenRecord,
    GoldenValue, IdentifierEntry, LinkEvidence, MemberRecord, RecordView,
};
pub use enrichment::{
    BlockGroup, BlockGroupReport, DemographicHistogram, DemographicValue, Demographics,
    EnrichmentStatus, GeoPrecision, Geocode, HistogramBin,
};
pub use error::{FieldError, ValidationErrors};
pub use ids::{CustomerId, IdentifierKind, RecordKey, SourceId, SourceName};
pub use jobs::{JobRowError, JobState, JobView};
pub use outcome::{IngestOutcome, IngestResult};
pub use record::{AddressInput, InvalidValue, Profile, RecordInput};
pub use values::{BirthDate, Country, Email, OpaqueId, PersonName, Phone, PostalAddress};
