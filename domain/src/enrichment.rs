//! Geo and demographic enrichment of a customer: where the golden address lies, which census
//! block group contains it, and that block group's American Community Survey figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How exactly a geocoded point locates the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GeoPrecision {
    /// The point of the building (an address point, or a geocoder's street-address match).
    Rooftop,
    /// The centroid of the postal code (or of a larger area): good for a region, not for a
    /// block group.
    Postal,
    /// The address could not be located.
    None,
}

impl GeoPrecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rooftop => "rooftop",
            Self::Postal => "postal",
            Self::None => "none",
        }
    }
}

/// The result of geocoding one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Geocode {
    /// WGS84 latitude; absent when the precision is `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 38.8959557)]
    pub lat: Option<f64>,
    /// WGS84 longitude; absent when the precision is `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = -76.9959816)]
    pub lon: Option<f64>,
    pub precision: GeoPrecision,
    /// Which geocoder answered: `offline` or `aws_location`.
    #[schema(example = "offline")]
    pub geocoder: String,
    /// What the geocoder matched, e.g. the address point or the ZIP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "701 E ST NE, WASHINGTON DC 20002")]
    pub matched: Option<String>,
    /// Why the precision is not `rooftop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "house number not found on this street; ZIP centroid used")]
    pub reason: Option<String>,
}

impl Geocode {
    /// A geocode that found nothing, with the reason.
    pub fn none(geocoder: &str, reason: impl Into<String>) -> Self {
        Self {
            lat: None,
            lon: None,
            precision: GeoPrecision::None,
            geocoder: geocoder.to_owned(),
            matched: None,
            reason: Some(reason.into()),
        }
    }
}

/// A census block group and the parts of its GEOID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockGroup {
    /// 12 digits: state (2) + county (3) + tract (6) + block group (1).
    #[schema(example = "110010083021")]
    pub geoid: String,
    /// State FIPS code.
    #[schema(example = "11")]
    pub state: String,
    /// County GEOID (state + county FIPS).
    #[schema(example = "11001")]
    pub county: String,
    /// Tract GEOID (state + county + tract).
    #[schema(example = "11001008302")]
    pub tract: String,
    /// Block group number within the tract.
    #[schema(example = "1")]
    pub block_group: String,
    /// The Census name, e.g. `Block Group 1; Census Tract 83.02; District of Columbia; ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl BlockGroup {
    /// Splits a 12-digit block group GEOID into its parts; `None` unless it is 12 ASCII digits.
    pub fn from_geoid(geoid: &str, name: Option<String>) -> Option<Self> {
        if geoid.len() != 12 || !geoid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            geoid: geoid.to_owned(),
            state: geoid[..2].to_owned(),
            county: geoid[..5].to_owned(),
            tract: geoid[..11].to_owned(),
            block_group: geoid[11..].to_owned(),
            name,
        })
    }
}

/// One ACS figure of a block group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DemographicValue {
    /// The published estimate; `null` where the Census Bureau published none (a gap, not zero).
    pub estimate: Option<f64>,
    /// The 90% margin of error, where the data has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<f64>,
    /// Set when the estimate is a top-code: the true value is at least this, e.g. `$250,000+`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "$250,000+")]
    pub top_coded: Option<String>,
}

/// The ACS figures of one block group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Demographics {
    /// The ACS 5-year period, e.g. `2019-2023`.
    #[schema(example = "2019-2023")]
    pub acs_period: String,
    /// Figure name (e.g. `median_household_income`) to value.
    pub values: BTreeMap<String, DemographicValue>,
}

/// Where enrichment of a customer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentStatus {
    /// The customer has no golden address to enrich.
    #[default]
    NoAddress,
    /// The golden address changed and enrichment has not finished yet (or the geocoder is
    /// unavailable and it will be retried).
    Pending,
    /// Enrichment ran for the current golden address.
    Enriched,
}

/// Geo and demographic enrichment of the customer's golden address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Enrichment {
    pub status: EnrichmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geocode: Option<Geocode>,
    /// The block group containing the point. Present only for a `rooftop` point: a postal
    /// centroid says nothing reliable about the block group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_group: Option<BlockGroup>,
    /// The ACS figures of `block_group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographics: Option<Demographics>,
    /// Why a block group or demographics are missing, or why enrichment is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "postal-precision point: the block group is uncertain and omitted")]
    pub note: Option<String>,
    /// When enrichment last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enriched_at: Option<DateTime<Utc>>,
}

/// Everything known about one census block group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockGroupReport {
    pub block_group: BlockGroup,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographics: Option<Demographics>,
    /// Land area in square metres (TIGER `ALAND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub land_m2: Option<f64>,
    /// Water area in square metres (TIGER `AWATER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub water_m2: Option<f64>,
    /// How many current customers live in it (rooftop points only).
    pub customers: u64,
}

/// One bin of a histogram: `from <= value < to`; an open end is `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistogramBin {
    pub from: Option<f64>,
    pub to: Option<f64>,
    pub customers: u64,
}

/// How customers are distributed over one demographic figure of their block group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DemographicHistogram {
    #[schema(example = "median_household_income")]
    pub field: String,
    /// Current customers in all.
    pub customers: u64,
    /// Counts per bin. A value below the first edge falls in a bin with `from: null`, a value
    /// at or above the last edge in the bin with `to: null`.
    pub bins: Vec<HistogramBin>,
    /// Customers without a block group (no address, postal precision only, outside the
    /// loaded area, or enrichment pending).
    pub without_block_group: u64,
    /// Customers whose block group has no published value for this figure.
    pub without_value: u64,
    /// Customers whose block group's value is a top-code (counted in the top bin it falls in).
    pub top_coded: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geoid_splits_into_its_parts() {
        let bg = BlockGroup::from_geoid("110010083021", None).unwrap();
        assert_eq!(bg.state, "11");
        assert_eq!(bg.county, "11001");
        assert_eq!(bg.tract, "11001008302");
        assert_eq!(bg.block_group, "1");
        assert!(BlockGroup::from_geoid("11001008302", None).is_none());
        assert!(BlockGroup::from_geoid("11001008302x", None).is_none());
    }

    #[test]
    fn a_fresh_enrichment_has_no_address() {
        let json = serde_json::to_value(Enrichment::default()).unwrap();
        assert_eq!(json, serde_json::json!({"status": "no_address"}));
    }
}
