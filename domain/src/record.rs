//! A profile record as it arrives ([`RecordInput`], the wire and CSV shape) and as it is kept
//! once parsed ([`Profile`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{FieldError, ValidationErrors};
use crate::ids::{IdentifierKind, RecordKey, SourceId, SourceName};
use crate::values::{BirthDate, Country, Email, OpaqueId, PersonName, Phone, PostalAddress};

/// At most this many emails, phones or addresses in one record.
pub const MAX_LIST_LEN: usize = 10;

/// One profile record as sent by a source system. The flat fields are the CSV columns of the
/// bulk format; JSON may add more emails, phones and addresses in the list fields. Empty strings
/// in optional fields mean "not given", as an empty CSV cell does.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "source": "crm",
    "source_id": "C-1001",
    "first_name": "Robert",
    "last_name": "Smith",
    "email": "Bob.Smith@Example.com",
    "phone": "(555) 123-4567",
    "date_of_birth": "1984-07-12",
    "address_line1": "123 N Main Street",
    "city": "Springfield",
    "state": "IL",
    "postal_code": "62704",
    "country": "US",
    "loyalty_id": "LOY-99812",
    "updated_at": "2026-11-01T10:00:00Z"
}))]
pub struct RecordInput {
    /// The source system (required): a short slug such as `crm`, `web`, `pos`.
    pub source: Option<String>,
    /// The record's id in its source system (required).
    pub source_id: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// More emails besides `email`.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Any common format; numbers without a country code are read in `country` (default US).
    pub phone: Option<String>,
    /// More phones besides `phone`.
    #[serde(default)]
    pub phones: Vec<String>,
    /// `YYYY-MM-DD` (also `YYYYMMDD`, `MM/DD/YYYY`, `DD.MM.YYYY`).
    pub date_of_birth: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    /// More addresses besides the flat address fields.
    #[serde(default)]
    pub addresses: Vec<AddressInput>,
    pub loyalty_id: Option<String>,
    pub device_id: Option<String>,
    pub cookie_id: Option<String>,
    /// When the source last changed this record (RFC 3339). A stored record is only replaced
    /// by a version that is not older.
    pub updated_at: Option<String>,
}

/// One extra address of a record.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

impl AddressInput {
    /// The address as a validated [`PostalAddress`]; `None` when every part is empty.
    pub fn parse(&self) -> Result<Option<PostalAddress>, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let country = given(&self.country).and_then(|raw| errors.collect(Country::parse(raw)));
        let parsed = PostalAddress::parse(
            [
                given(&self.line1),
                given(&self.line2),
                given(&self.city),
                given(&self.state),
                given(&self.postal_code),
            ],
            country,
            ["line1", "line2", "city", "state", "postal_code"],
        );
        match parsed {
            Ok(address) if errors.is_empty() => Ok(address),
            Ok(_) => Err(errors),
            Err(es) => {
                es.into_iter().for_each(|e| errors.push(e));
                Err(errors)
            }
        }
    }
}

/// A parsed record: every value validated and in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub source: SourceName,
    pub source_id: SourceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<Phone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<BirthDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<PostalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty_id: Option<OpaqueId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<OpaqueId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_id: Option<OpaqueId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Optional values that did not parse, kept as sent with the reason (lenient parsing
    /// only; the API's strict parsing rejects the record instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<InvalidValue>,
}

/// A value kept raw because it did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvalidValue {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// `Some(text)` for a given, non-blank optional field.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

impl Profile {
    pub fn key(&self) -> RecordKey {
        RecordKey {
            source: self.source.clone(),
            source_id: self.source_id.clone(),
        }
    }

    /// The record's identifiers with the value each is looked up by (email and phone already
    /// canonical at this layer: lower-cased email, E.164 phone).
    pub fn identifiers(&self) -> Vec<(IdentifierKind, &str)> {
        let mut out: Vec<(IdentifierKind, &str)> = Vec::new();
        out.extend(
            self.emails
                .iter()
                .map(|e| (IdentifierKind::Email, e.as_str())),
        );
        out.extend(
            self.phones
                .iter()
                .map(|p| (IdentifierKind::Phone, p.as_str())),
        );
        let opaque = [
            (IdentifierKind::LoyaltyId, &self.loyalty_id),
            (IdentifierKind::DeviceId, &self.device_id),
            (IdentifierKind::CookieId, &self.cookie_id),
        ];
        out.extend(
            opaque
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.as_str()))),
        );
        out
    }

    /// Parses a record leniently: only `source` and `source_id` must be valid; any other value
    /// that does not parse is left out of matching but kept raw in `invalid`, with its reason.
    pub fn parse_lenient(input: &RecordInput) -> Result<Self, ValidationErrors> {
        let errors = match Self::parse(input) {
            Ok(profile) => return Ok(profile),
            Err(errors) => errors,
        };
        let required = |e: &FieldError| e.field == "source" || e.field == "source_id";
        if errors.0.iter().any(required) {
            return Err(errors);
        }
        let mut cleaned = input.clone();
        let mut invalid = Vec::new();
        // Last error first, so that removing `emails[2]` does not shift `emails[1]`.
        for error in errors.0.iter().rev() {
            if let Some(value) = take_field(&mut cleaned, &error.field) {
                invalid.push(InvalidValue {
                    field: error.field.clone(),
                    value,
                    reason: error.reason.clone(),
                });
            }
        }
        invalid.reverse();
        let mut profile = Self::parse(&cleaned)?;
        profile.invalid = invalid;
        Ok(profile)
    }

    /// Parses a record, collecting every field error rather than stopping at the first.
    pub fn parse(input: &RecordInput) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();

        let source = match given(&input.source) {
            Some(raw) => errors.collect(SourceName::parse(raw)),
            None => {
                errors.push(FieldError::new("source", "is required"));
                None
            }
        };
        let source_id = match given(&input.source_id) {
            Some(raw) => errors.collect(SourceId::parse(raw)),
            None => {
                errors.push(FieldError::new("source_id", "is required"));
                None
            }
        };

        let mut name = |value: &Option<String>, field: &str| {
            given(value).and_then(|raw| errors.collect(PersonName::parse_field(raw, field)))
        };
        let first_name = name(&input.first_name, "first_name");
        let middle_name = name(&input.middle_name, "middle_name");
        let last_name = name(&input.last_name, "last_name");

        let country = given(&input.country).and_then(|raw| errors.collect(Country::parse(raw)));
        let region = country.as_ref().and_then(Country::iso2).map(str::to_owned);

        let mut emails: Vec<Email> = Vec::new();
        let email_inputs = input.email.iter().map(|e| ("email".to_owned(), e)).chain(
            input
                .emails
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("emails[{i}]"), e)),
        );
        for (field, raw) in email_inputs {
            if raw.trim().is_empty() {
                continue;
            }
            if let Some(email) = errors.collect(Email::parse_field(raw, &field)) {
                if !emails.contains(&email) {
                    emails.push(email);
                }
            }
        }

        let mut phones: Vec<Phone> = Vec::new();
        let phone_inputs = input.phone.iter().map(|p| ("phone".to_owned(), p)).chain(
            input
                .phones
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("phones[{i}]"), p)),
        );
        for (field, raw) in phone_inputs {
            if raw.trim().is_empty() {
                continue;
            }
            if let Some(phone) = errors.collect(Phone::parse_in(raw, &field, region.as_deref())) {
                if !phones.contains(&phone) {
                    phones.push(phone);
                }
            }
        }

        let date_of_birth = given(&input.date_of_birth)
            .and_then(|raw| errors.collect(BirthDate::parse_field(raw, "date_of_birth")));

        let mut addresses = Vec::new();
        let flat = PostalAddress::parse(
            [
                given(&input.address_line1),
                given(&input.address_line2),
                given(&input.city),
                given(&input.state),
                given(&input.postal_code),
            ],
            country.clone(),
            [
                "address_line1",
                "address_line2",
                "city",
                "state",
                "postal_code",
            ],
        );
        match flat {
            Ok(Some(address)) => addresses.push(address),
            Ok(None) => {}
            Err(es) => es.into_iter().for_each(|e| errors.push(e)),
        }
        for (i, a) in input.addresses.iter().enumerate() {
            let path = format!("addresses[{i}]");
            let country = given(&a.country)
                .and_then(|raw| errors.collect(Country::parse(raw).map_err(|e| e.under(&path))))
                .or_else(|| country.clone());
            let parsed = PostalAddress::parse(
                [
                    given(&a.line1),
                    given(&a.line2),
                    given(&a.city),
                    given(&a.state),
                    given(&a.postal_code),
                ],
                country,
                ["line1", "line2", "city", "state", "postal_code"],
            );
            match parsed {
                Ok(Some(address)) if !addresses.contains(&address) => addresses.push(address),
                Ok(_) => {}
                Err(es) => es.into_iter().for_each(|e| errors.push(e.under(&path))),
            }
        }

        for (field, len) in [
            ("emails", emails.len()),
            ("phones", phones.len()),
            ("addresses", addresses.len()),
        ] {
            if len > MAX_LIST_LEN {
                errors.push(FieldError::new(
                    field,
                    format!("at most {MAX_LIST_LEN} per record"),
                ));
            }
        }

        let mut opaque = |value: &Option<String>, field: &str| {
            given(value).and_then(|raw| errors.collect(OpaqueId::parse_field(raw, field)))
        };
        let loyalty_id = opaque(&input.loyalty_id, "loyalty_id");
        let device_id = opaque(&input.device_id, "device_id");
        let cookie_id = opaque(&input.cookie_id, "cookie_id");

        let updated_at = given(&input.updated_at).and_then(|raw| {
            errors.collect(
                DateTime::parse_from_rfc3339(raw.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        FieldError::new(
                            "updated_at",
                            "not an RFC 3339 timestamp such as 2026-11-01T10:00:00Z",
                        )
                    }),
            )
        });

        match (source, source_id) {
            (Some(source), Some(source_id)) if errors.is_empty() => Ok(Self {
                source,
                source_id,
                first_name,
                middle_name,
                last_name,
                emails,
                phones,
                date_of_birth,
                addresses,
                loyalty_id,
                device_id,
                cookie_id,
                updated_at,
                invalid: Vec::new(),
            }),
            _ => Err(errors),
        }
    }

    /// The same record without its timestamp: two versions with equal content are the same
    /// record, whatever `updated_at` says.
    pub fn same_content(&self, other: &Profile) -> bool {
        let strip = |p: &Profile| Profile {
            updated_at: None,
            ..p.clone()
        };
        strip(self) == strip(other)
    }
}

/// Removes the value a field error points at (`email`, `emails[1]`, `addresses[0].city`) from
/// the input and returns it.
fn take_field(input: &mut RecordInput, path: &str) -> Option<String> {
    let indexed = |name: &str| -> Option<usize> {
        path.strip_prefix(name)?
            .strip_prefix('[')?
            .split(']')
            .next()?
            .parse()
            .ok()
    };
    if let Some(i) = indexed("emails") {
        return (i < input.emails.len()).then(|| input.emails.remove(i));
    }
    if let Some(i) = indexed("phones") {
        return (i < input.phones.len()).then(|| input.phones.remove(i));
    }
    if let Some(i) = indexed("addresses") {
        if i < input.addresses.len() {
            let a = input.addresses.remove(i);
            return serde_json::to_string(&a).ok();
        }
        return None;
    }
    let slot = match path {
        "first_name" => &mut input.first_name,
        "middle_name" => &mut input.middle_name,
        "last_name" => &mut input.last_name,
        "email" => &mut input.email,
        "phone" => &mut input.phone,
        "date_of_birth" => &mut input.date_of_birth,
        "address_line1" => &mut input.address_line1,
        "address_line2" => &mut input.address_line2,
        "city" => &mut input.city,
        "state" => &mut input.state,
        "postal_code" => &mut input.postal_code,
        "country" => &mut input.country,
        "loyalty_id" => &mut input.loyalty_id,
        "device_id" => &mut input.device_id,
        "cookie_id" => &mut input.cookie_id,
        "updated_at" => &mut input.updated_at,
        // A list too long: keep the first MAX_LIST_LEN.
        "emails" | "phones" | "addresses" => {
            input.emails.truncate(MAX_LIST_LEN.saturating_sub(1));
            input.phones.truncate(MAX_LIST_LEN.saturating_sub(1));
            input.addresses.truncate(MAX_LIST_LEN.saturating_sub(1));
            return Some(format!("more than {MAX_LIST_LEN} values"));
        }
        _ => return None,
    };
    slot.take()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> RecordInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn parses_a_full_record() {
        let p = Profile::parse(&input(serde_json::json!({
            "source": "CRM", "source_id": "C-1", "first_name": " Bob ", "last_name": "Smith",
            "email": "Bob@Example.COM", "emails": ["bob@example.com", "b2@example.org"],
            "phone": "(555) 123-4567", "date_of_birth": "07/12/1984",
            "address_line1": "1 Main St", "postal_code": "62704", "country": "US",
            "loyalty_id": "L-1", "updated_at": "2026-11-01T10:00:00+02:00"
        })))
        .unwrap();
        assert_eq!(p.source.as_str(), "crm");
        assert_eq!(p.first_name.unwrap().as_str(), "Bob");
        assert_eq!(p.emails.len(), 2, "duplicate emails collapse");
        assert_eq!(p.phones[0].as_str(), "+15551234567");
        assert_eq!(p.date_of_birth.unwrap().to_string(), "1984-07-12");
        assert_eq!(p.addresses.len(), 1);
        assert_eq!(
            p.updated_at.unwrap().to_rfc3339(),
            "2026-11-01T08:00:00+00:00"
        );
    }

    #[test]
    fn collects_every_error_with_its_field() {
        let errors = Profile::parse(&input(serde_json::json!({
            "source": "", "email": "nope", "phones": ["1"], "date_of_birth": "1990-02-30",
            "addresses": [{"postal_code": "1;2"}], "updated_at": "yesterday"
        })))
        .unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "source",
                "source_id",
                "email",
                "phones[0]",
                "date_of_birth",
                "addresses[0].postal_code",
                "updated_at"
            ]
        );
    }

    #[test]
    fn lenient_parsing_keeps_bad_values_raw() {
        let p = Profile::parse_lenient(&input(serde_json::json!({
            "source": "crm", "source_id": "1", "first_name": "Ann", "date_of_birth": "19551192",
            "emails": ["ok@example.com", "broken@"], "addresses": [{"postal_code": "1;2"}]
        })))
        .unwrap();
        assert_eq!(p.first_name.unwrap().as_str(), "Ann");
        assert!(p.date_of_birth.is_none());
        assert_eq!(p.emails.len(), 1);
        let fields: Vec<&str> = p.invalid.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            ["emails[1]", "date_of_birth", "addresses[0].postal_code"]
        );
        assert_eq!(p.invalid[1].value, "19551192");
        assert!(Profile::parse_lenient(&input(serde_json::json!({"source_id": "1"}))).is_err());
    }

    #[test]
    fn stored_profile_round_trips_through_json() {
        let p = Profile::parse(&input(serde_json::json!({
            "source": "web", "source_id": "w1", "phone": "+44 20 7946 0958", "device_id": "dev-1"
        })))
        .unwrap();
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!(
            p.identifiers(),
            vec![
                (IdentifierKind::Phone, "+442079460958"),
                (IdentifierKind::DeviceId, "dev-1")
            ]
        );
    }
}
