use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

const MAX_SOURCE_LEN: usize = 64;
const MAX_SOURCE_ID_LEN: usize = 200;

/// The system a record comes from (`crm`, `web`, `pos`...): a short slug, so that it can sit in
/// a URL path segment without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "crm")]
pub struct SourceName(String);

impl SourceName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(FieldError::new("source", "must not be empty"));
        }
        if value.len() > MAX_SOURCE_LEN {
            return Err(FieldError::new(
                "source",
                format!("longer than {MAX_SOURCE_LEN} characters"),
            ));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(FieldError::new(
                "source",
                "only letters, digits, '_', '-' and '.' are allowed",
            ));
        }
        Ok(Self(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a record inside its source system. Any printable text without control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "C-1001")]
pub struct SourceId(String);

impl SourceId {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(FieldError::new("source_id", "must not be empty"));
        }
        if value.chars().count() > MAX_SOURCE_ID_LEN {
            return Err(FieldError::new(
                "source_id",
                format!("longer than {MAX_SOURCE_ID_LEN} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(FieldError::new(
                "source_id",
                "must not contain control characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_conversions {
    ($ty:ident) => {
        impl TryFrom<String> for $ty {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use string_newtype_conversions;

string_newtype_conversions!(SourceName);
string_newtype_conversions!(SourceId);

/// A record is identified by where it comes from and its id there. Ingestion is idempotent on
/// this key: the same key again is an update, never a second record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub struct RecordKey {
    pub source: SourceName,
    pub source_id: SourceId,
}

impl RecordKey {
    /// Parses both parts, reporting every error.
    pub fn parse(source: &str, source_id: &str) -> Result<Self, crate::ValidationErrors> {
        let mut errors = crate::ValidationErrors::default();
        let source = errors.collect(SourceName::parse(source));
        let source_id = errors.collect(SourceId::parse(source_id));
        match (source, source_id) {
            (Some(source), Some(source_id)) => Ok(Self { source, source_id }),
            _ => Err(errors),
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.source, self.source_id)
    }
}

/// The id of a customer (a person): `cus_` and a time-ordered UUIDv7, so that the oldest
/// customer sorts first. That order decides which id survives a merge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "cus_0192f0c1a3b87c3e9d1f2a4b5c6d7e8f")]
pub struct CustomerId(String);

impl CustomerId {
    pub const PREFIX: &'static str = "cus_";

    /// Wraps an id produced by this system (from a UUIDv7 in simple form).
    pub fn from_uuid_simple(simple: &str) -> Self {
        Self(format!("{}{simple}", Self::PREFIX))
    }

    /// Parses an id given by a caller: the prefix and 32 lowercase hex digits.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let hex = raw
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| FieldError::new("customer_id", "must start with 'cus_'"))?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FieldError::new(
                "customer_id",
                "must be 'cus_' followed by 32 hexadecimal digits",
            ));
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identifiers a customer can be looked up by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Email,
    Phone,
    LoyaltyId,
    DeviceId,
    CookieId,
}

impl IdentifierKind {
    pub const ALL: [IdentifierKind; 5] = [
        Self::Email,
        Self::Phone,
        Self::LoyaltyId,
        Self::DeviceId,
        Self::CookieId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::LoyaltyId => "loyalty_id",
            Self::DeviceId => "device_id",
            Self::CookieId => "cookie_id",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_a_lowercase_slug() {
        assert_eq!(SourceName::parse(" CRM ").unwrap().as_str(), "crm");
        assert!(SourceName::parse("").is_err());
        assert!(SourceName::parse("web shop").is_err());
        assert!(SourceName::parse("a/b").is_err());
        assert!(SourceName::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn source_id_rejects_control_characters_and_blank() {
        assert_eq!(SourceId::parse(" A-1 ").unwrap().as_str(), "A-1");
        assert!(SourceId::parse("   ").is_err());
        assert!(SourceId::parse("a\nb").is_err());
    }

    #[test]
    fn customer_id_round_trips() {
        let id = CustomerId::from_uuid_simple("0192f0c1a3b87c3e9d1f2a4b5c6d7e8f");
        assert_eq!(CustomerId::parse(id.as_str()).unwrap(), id);
        assert!(CustomerId::parse("cus_123").is_err());
        assert!(CustomerId::parse("0192f0c1a3b87c3e9d1f2a4b5c6d7e8f").is_err());
    }
}
