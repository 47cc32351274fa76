//! Validated value newtypes. Each `parse` takes the raw text a caller sent and the field name
//! to blame, and returns the canonical value or a [`FieldError`] whose reason never echoes the
//! raw value (it may be PII).

use std::fmt;

use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::string_newtype_conversions;

const MAX_NAME_LEN: usize = 100;
const MAX_EMAIL_LEN: usize = 254;
const MAX_PHONE_LEN: usize = 40;
const MAX_LINE_LEN: usize = 200;
const MAX_ID_LEN: usize = 200;

fn trimmed_text<'a>(raw: &'a str, field: &str, max: usize) -> Result<&'a str, FieldError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value)
}

/// Internal runs of white space collapse to one space: `"Mary   Ann"` is `"Mary Ann"`.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An email address, syntax-checked and lower-cased. Provider rules (gmail dots, `+tags`) are
/// a matching concern and live in `c360-matching`, not here: the stored value stays what the
/// person typed, modulo case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "bob.smith@example.com")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::parse_field(raw, "email")
    }

    pub fn parse_field(raw: &str, field: &str) -> Result<Self, FieldError> {
        let value = trimmed_text(raw, field, MAX_EMAIL_LEN)?;
        let invalid =
            |why: &str| FieldError::new(field, format!("not a valid email address: {why}"));
        if value.chars().any(char::is_whitespace) {
            return Err(invalid("contains white space"));
        }
        let (local, domain) = value
            .rsplit_once('@')
            .ok_or_else(|| invalid("missing '@'"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before '@' must have 1 to 64 characters"));
        }
        if local.contains('@')
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(invalid("malformed part before '@'"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("the domain needs a dot, e.g. example.com"));
        }
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if !labels.iter().all(label_ok) {
            return Err(invalid("malformed domain"));
        }
        Ok(Self(value.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(l, _)| l)
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}
string_newtype_conversions!(Email);

/// A phone number in E.164 form (`+15551234567`). Numbers without a country code are read in
/// the record's country (US when it has none), so `(555) 123-4567` becomes `+15551234567`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "+15551234567")]
pub struct Phone(String);

impl Phone {
    /// Parses a number already in E.164 form (how phones are stored).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::parse_in(raw, "phone", None)
    }

    /// Parses a number as a person wrote it, in the default region `region` (ISO 3166 alpha-2).
    pub fn parse_in(raw: &str, field: &str, region: Option<&str>) -> Result<Self, FieldError> {
        let value = trimmed_text(raw, field, MAX_PHONE_LEN)?;
        let digits = value.chars().filter(char::is_ascii_digit).count();
        if !(7..=15).contains(&digits) {
            return Err(FieldError::new(
                field,
                "not a valid phone number: needs 7 to 15 digits",
            ));
        }
        if value
            .chars()
            .any(|c| !(c.is_ascii_digit() || " +-().\u{a0}/x#ext".contains(c)))
        {
            return Err(FieldError::new(
                field,
                "not a valid phone number: unexpected characters",
            ));
        }
        let region = region
            .and_then(|r| r.parse::<phonenumber::country::Id>().ok())
            .unwrap_or(phonenumber::country::Id::US);
        let number = phonenumber::parse(Some(region), value)
            .map_err(|e| FieldError::new(field, format!("not a valid phone number: {e}")))?;
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Self(e164))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Phone {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        // Stored values are already E.164; re-parsing them is idempotent.
        Self::parse(&value)
    }
}
impl From<Phone> for String {
    fn from(value: Phone) -> String {
        value.0
    }
}
impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One part of a person's name (given, middle or family), trimmed with inner spaces collapsed.
/// Case and accents are kept as written; folding them is a matching concern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "Robert")]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::parse_field(raw, "name")
    }

    pub fn parse_field(raw: &str, field: &str) -> Result<Self, FieldError> {
        let value = trimmed_text(raw, field, MAX_NAME_LEN)?;
        if !value.chars().any(char::is_alphabetic) {
            return Err(FieldError::new(field, "must contain at least one letter"));
        }
        if value.contains('@') {
            return Err(FieldError::new(
                field,
                "looks like an email address, not a name",
            ));
        }
        Ok(Self(collapse_spaces(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_conversions!(PersonName);

/// An opaque identifier from another system: a loyalty card number, a device id, a cookie id.
/// Kept exactly as sent (trimmed): such ids are case-sensitive in the systems that issue them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "LOY-99812")]
pub struct OpaqueId(String);

impl OpaqueId {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::parse_field(raw, "id")
    }

    pub fn parse_field(raw: &str, field: &str) -> Result<Self, FieldError> {
        let value = trimmed_text(raw, field, MAX_ID_LEN)?;
        if value.chars().any(char::is_whitespace) {
            return Err(FieldError::new(field, "must not contain white space"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_conversions!(OpaqueId);

/// A date of birth: a real calendar date, not in the future, not before 1880.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Date, example = "1984-07-12")]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    /// Accepted forms: `YYYY-MM-DD` (ISO 8601), `YYYYMMDD`, `YYYY/MM/DD`, `MM/DD/YYYY` (US
    /// order: a slash date with the year last is month first), `DD.MM.YYYY`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::parse_field(raw, "date_of_birth")
    }

    pub fn parse_field(raw: &str, field: &str) -> Result<Self, FieldError> {
        let value = trimmed_text(raw, field, 32)?;
        const FORMATS: [&str; 5] = ["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y"];
        let shape_ok = value
            .chars()
            .all(|c| c.is_ascii_digit() || "-/.".contains(c));
        let date = shape_ok
            .then(|| {
                FORMATS
                    .iter()
                    .find_map(|f| NaiveDate::parse_from_str(value, f).ok())
            })
            .flatten()
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "not a valid date: use YYYY-MM-DD (also accepted: YYYYMMDD, MM/DD/YYYY, DD.MM.YYYY); impossible dates such as 1990-02-30 are rejected",
                )
            })?;
        if date.year() < 1880 {
            return Err(FieldError::new(
                field,
                "a date of birth before 1880 is not plausible",
            ));
        }
        if date > Utc::now().date_naive() {
            return Err(FieldError::new(
                field,
                "a date of birth cannot be in the future",
            ));
        }
        Ok(Self(date))
    }

    pub fn date(&self) -> NaiveDate {
        self.0
    }
}

impl TryFrom<String> for BirthDate {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<BirthDate> for String {
    fn from(value: BirthDate) -> String {
        value.0.format("%Y-%m-%d").to_string()
    }
}
impl fmt::Display for BirthDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A country as written on the record. `iso2` resolves the usual spellings of a country to its
/// ISO 3166 alpha-2 code, which decides how phone numbers without a country code are read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "US")]
pub struct Country(String);

impl Country {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = trimmed_text(raw, "country", 56)?;
        if !value
            .chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '.')
        {
            return Err(FieldError::new(
                "country",
                "use an ISO 3166 code such as US, or a country name",
            ));
        }
        Ok(Self(collapse_spaces(value).to_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn iso2(&self) -> Option<&str> {
        match self.0.as_str() {
            "USA" | "U.S." | "U.S.A." | "UNITED STATES" | "UNITED STATES OF AMERICA" => Some("US"),
            "AUS" | "AUSTRALIA" => Some("AU"),
            "CAN" | "CANADA" => Some("CA"),
            "GBR" | "UNITED KINGDOM" | "UK" => Some("GB"),
            code if code.len() == 2 => Some(code),
            _ => None,
        }
    }
}
string_newtype_conversions!(Country);

/// A postal address as written; at least a street line, a city or a postal code. Standardizing
/// it (USPS abbreviations, ZIP5) is a matching concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct PostalAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "123 N Main Street")]
    pub line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apt 4B")]
    pub line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Springfield")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "IL")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "62704")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Country>,
}

impl PostalAddress {
    /// Builds an address from its optional parts; `None` when every part is absent. `prefix` is
    /// the path used in error messages (`""` for the flat CSV columns, `addresses[1].` for lists).
    pub fn parse(
        parts: [Option<&str>; 5],
        country: Option<Country>,
        field_names: [&str; 5],
    ) -> Result<Option<Self>, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut texts: [Option<String>; 5] = Default::default();
        for (i, part) in parts.iter().enumerate() {
            let Some(raw) = part.filter(|p| !p.trim().is_empty()) else {
                continue;
            };
            let max = if i == 4 { 20 } else { MAX_LINE_LEN };
            match trimmed_text(raw, field_names[i], max) {
                Ok(v) => texts[i] = Some(collapse_spaces(v)),
                Err(e) => errors.push(e),
            }
        }
        if let Some(zip) = &texts[4] {
            if !zip
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
            {
                errors.push(FieldError::new(
                    field_names[4],
                    "a postal code has only letters, digits, spaces and '-'",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let [line1, line2, city, state, postal_code] = texts;
        if line1.is_none()
            && line2.is_none()
            && city.is_none()
            && state.is_none()
            && postal_code.is_none()
        {
            return Ok(None);
        }
        Ok(Some(Self {
            line1,
            line2,
            city,
            state,
            postal_code,
            country,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Bob@Example.COM ").unwrap().as_str(),
            "bob@example.com"
        );
        for bad in [
            "bob",
            "bob@",
            "@example.com",
            "bob@example",
            "bo b@example.com",
            "bob@exa_mple.com",
            "a..b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
        let err = Email::parse("bob.example.com").unwrap_err();
        assert_eq!(err.field, "email");
        assert!(!err.reason.contains("bob"), "reasons never echo the value");
    }

    #[test]
    fn phone_formats_become_e164() {
        for raw in [
            "(555) 123-4567",
            "555.123.4567",
            "+1 555 123 4567",
            "1-555-123-4567",
            "5551234567",
        ] {
            assert_eq!(
                Phone::parse_in(raw, "phone", None).unwrap().as_str(),
                "+15551234567",
                "{raw}"
            );
        }
        assert_eq!(
            Phone::parse_in("(02) 9876 5432", "phone", Some("AU"))
                .unwrap()
                .as_str(),
            "+61298765432"
        );
        assert!(Phone::parse("12345").is_err());
        assert!(Phone::parse("call me maybe").is_err());
        assert!(Phone::parse("555-CALL-NOW").is_err());
    }

    #[test]
    fn names_are_trimmed_and_need_a_letter() {
        assert_eq!(
            PersonName::parse("  Mary   Ann ").unwrap().as_str(),
            "Mary Ann"
        );
        assert!(PersonName::parse("1234").is_err());
        assert!(PersonName::parse("").is_err());
        assert!(PersonName::parse(&"a".repeat(101)).is_err());
    }

    #[test]
    fn birth_dates_accept_common_forms_and_reject_impossible_ones() {
        let expected = NaiveDate::from_ymd_opt(1984, 7, 12).unwrap();
        for raw in [
            "1984-07-12",
            "19840712",
            "07/12/1984",
            "1984/07/12",
            "12.07.1984",
        ] {
            assert_eq!(BirthDate::parse(raw).unwrap().date(), expected, "{raw}");
        }
        for bad in [
            "1990-02-30",
            "2019-13-01",
            "12-07-84",
            "yesterday",
            "1850-01-01",
            "2999-01-01",
        ] {
            assert!(BirthDate::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn country_resolves_common_names() {
        assert_eq!(Country::parse("usa").unwrap().iso2(), Some("US"));
        assert_eq!(Country::parse("AU").unwrap().iso2(), Some("AU"));
        assert!(Country::parse("U5").is_err());
    }

    #[test]
    fn address_needs_one_part() {
        let names = ["line1", "line2", "city", "state", "postal_code"];
        assert_eq!(
            PostalAddress::parse([None, Some(" "), None, None, None], None, names),
            Ok(None)
        );
        let a = PostalAddress::parse(
            [Some("1 Main  St"), None, None, None, Some("62704")],
            None,
            names,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.line1.as_deref(), Some("1 Main St"));
        assert!(
            PostalAddress::parse([None, None, None, None, Some("62704;")], None, names).is_err()
        );
    }
}
