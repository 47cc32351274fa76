//! The comparable form of a record, computed once per record: every field normalized, with the
//! phonetic and nickname codes that comparison and blocking use.

use c360_domain::Profile;
use chrono::{Datelike, NaiveDate};

use crate::normalize::{self, address, name};

/// A normalized name part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFeature {
    /// Folded, honorifics and suffixes removed: `mary jane`.
    pub text: String,
    /// The nickname-group canonical of the first word (`bob` -> `robert`).
    pub canonical: String,
    /// Double Metaphone of the whole name.
    pub phonetic: String,
    /// The byte length of the first word of `text`: finding the first word again for every
    /// pair was a third of the CPU that scoring spent on first names (`perf`).
    first_word_len: usize,
    /// The nickname groups of the first word (empty when the table does not know it), looked
    /// up once here: pair scoring asks whether two first names share a group, and whether the
    /// table knows both, for most pairs whose first names differ.
    nickname_groups: Box<[u32]>,
}

impl NameFeature {
    pub(crate) fn new(raw: &str, canonicalize: bool) -> Option<Self> {
        let text = name::clean(raw);
        if text.is_empty() {
            return None;
        }
        let first_word = text.split(' ').next().unwrap_or(&text);
        let nicknames = name::Nicknames::shipped();
        let canonical = if canonicalize {
            nicknames.canonical(first_word).to_owned()
        } else {
            first_word.to_owned()
        };
        let phonetic = name::phonetic(&text);
        Some(Self {
            first_word_len: first_word.len(),
            nickname_groups: nicknames.groups_of(first_word).into(),
            text,
            canonical,
            phonetic,
        })
    }

    pub fn initial(&self) -> char {
        self.text.chars().next().unwrap_or('_')
    }

    /// The first word of the name: `mary` of `mary jane`.
    pub fn first_word(&self) -> &str {
        &self.text[..self.first_word_len]
    }

    /// Whether the name has more than one word: `mary jane`, `garcia lopez`.
    pub fn has_several_words(&self) -> bool {
        self.first_word_len < self.text.len()
    }

    /// Whether the nickname table knows the first word.
    pub fn first_word_is_known(&self) -> bool {
        !self.nickname_groups.is_empty()
    }

    /// Whether the first words can be one person's given name: equal, or in one nickname
    /// group (as [`name::Nicknames::related`] answers for them).
    pub fn first_words_related(&self, other: &NameFeature) -> bool {
        self.first_word() == other.first_word()
            || name::Nicknames::groups_meet(&self.nickname_groups, &other.nickname_groups)
    }
}

/// A normalized postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressFeature {
    pub house_number: Option<String>,
    pub street: Option<String>,
    /// The unit or second line: `apt 4b`, `villa 2`.
    pub unit: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
}

/// Everything the matcher compares, normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `source/source_id`: names the record, and orders ties so that results never depend on
    /// the order records arrive in.
    pub key: String,
    pub source: String,
    pub first: Option<NameFeature>,
    pub middle: Option<NameFeature>,
    pub last: Option<NameFeature>,
    pub dob: Option<NaiveDate>,
    /// Canonical emails (provider rules applied).
    pub emails: Vec<String>,
    /// E.164 phones.
    pub phones: Vec<String>,
    pub addresses: Vec<AddressFeature>,
    pub loyalty_id: Option<String>,
    pub device_id: Option<String>,
    pub cookie_id: Option<String>,
}

impl Features {
    pub fn of(profile: &Profile) -> Self {
        let addresses = profile
            .addresses
            .iter()
            .map(|a| {
                let line1 = a
                    .line1
                    .as_deref()
                    .map(address::street_address)
                    .unwrap_or_default();
                let unit = line1
                    .unit
                    .clone()
                    .or_else(|| a.line2.as_deref().and_then(address::unit_line));
                AddressFeature {
                    house_number: line1.house_number,
                    street: line1.street,
                    unit,
                    city: a.city.as_deref().map(name::fold).filter(|c| !c.is_empty()),
                    region: a.state.as_deref().and_then(address::region),
                    postal_code: a.postal_code.as_deref().and_then(address::postal_code),
                }
            })
            .collect();
        Self {
            key: profile.key().to_string(),
            source: profile.source.to_string(),
            first: profile
                .first_name
                .as_ref()
                .and_then(|n| NameFeature::new(n.as_str(), true)),
            middle: profile
                .middle_name
                .as_ref()
                .and_then(|n| NameFeature::new(n.as_str(), true)),
            last: profile
                .last_name
                .as_ref()
                .and_then(|n| NameFeature::new(n.as_str(), false)),
            dob: profile.date_of_birth.map(|d| d.date()),
            emails: profile
                .emails
                .iter()
                .map(|e| normalize::canonical_email(e.as_str()))
                .collect(),
            phones: profile.phones.iter().map(|p| p.to_string()).collect(),
            addresses,
            loyalty_id: profile.loyalty_id.as_ref().map(|v| v.to_string()),
            device_id: profile.device_id.as_ref().map(|v| v.to_string()),
            cookie_id: profile.cookie_id.as_ref().map(|v| v.to_string()),
        }
    }

    /// The first address, the one blocking keys use.
    pub fn main_address(&self) -> Option<&AddressFeature> {
        self.addresses.first()
    }

    /// Asks the CPU to start loading this record's features into its cache. Pair scoring
    /// visits records in no useful order, and waiting for each one's memory was most of what
    /// comparing a pair cost (`perf annotate`): a scoring loop calls this a few pairs ahead,
    /// then [`Features::prefetch_values`] once the features have arrived.
    #[inline]
    pub fn prefetch(&self) {
        let start = (self as *const Self).cast::<u8>();
        let mut offset = 0;
        while offset < std::mem::size_of::<Self>() {
            prefetch(start.wrapping_add(offset));
            offset += 64;
        }
    }

    /// Asks the CPU to start loading the text that comparing this record reads: names, first
    /// email, first phone, first address. Reads the features themselves, so call it once
    /// [`Features::prefetch`] had time to bring them in.
    #[inline]
    pub fn prefetch_values(&self) {
        for name in [&self.first, &self.last].into_iter().flatten() {
            prefetch(name.text.as_ptr());
            prefetch(name.phonetic.as_ptr());
            prefetch(name.nickname_groups.as_ptr().cast());
        }
        for list in [&self.emails, &self.phones] {
            if let Some(first) = list.first() {
                prefetch(list.as_ptr().cast());
                prefetch(first.as_ptr());
            }
        }
        if let Some(address) = self.addresses.first() {
            prefetch(self.addresses.as_ptr().cast());
            let parts = [&address.street, &address.house_number, &address.postal_code];
            for text in parts.into_iter().flatten() {
                prefetch(text.as_ptr());
            }
        }
    }

    pub fn dob_key(&self) -> Option<String> {
        self.dob
            .map(|d| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day()))
    }
}

/// A hint that the cache line holding `at` will be read soon.
#[inline]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no effect a program can
    // observe, whatever the address (`at` need not even be valid).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Features of a record given as JSON, for tests.
#[cfg(test)]
pub(crate) fn from_json(json: serde_json::Value) -> Features {
    let input: c360_domain::RecordInput = serde_json::from_value(json).expect("a record");
    Features::of(&Profile::parse(&input).expect("a valid record"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::RecordInput;

    #[test]
    fn features_normalize_every_field() {
        let profile = Profile::parse(
            &serde_json::from_value::<RecordInput>(serde_json::json!({
                "source": "crm", "source_id": "1", "first_name": "Dr. Bob", "last_name": "O'Neil Jr",
                "email": "B.O.B+x@gmail.com", "phone": "(555) 123-4567", "date_of_birth": "1984-07-12",
                "address_line1": "12 North Main Street Apt 3", "city": "Springfield",
                "state": "Illinois", "postal_code": "62704-1111"
            }))
            .unwrap(),
        )
        .unwrap();
        let f = Features::of(&profile);
        let first = f.first.as_ref().unwrap();
        assert_eq!(
            (first.text.as_str(), first.canonical.as_str()),
            ("bob", "robert")
        );
        assert_eq!(f.last.as_ref().unwrap().text, "oneil");
        assert_eq!(f.emails, ["bob@gmail.com"]);
        assert_eq!(f.phones, ["+15551234567"]);
        assert_eq!(f.dob_key().unwrap(), "19840712");
        let a = f.main_address().unwrap();
        assert_eq!(a.house_number.as_deref(), Some("12"));
        assert_eq!(a.street.as_deref(), Some("n main st"));
        assert_eq!(a.unit.as_deref(), Some("apt 3"));
        assert_eq!(a.region.as_deref(), Some("il"));
        assert_eq!(a.postal_code.as_deref(), Some("62704"));
    }

    #[test]
    fn first_words_answer_as_the_nickname_table_does() {
        let feature = |raw: &str| NameFeature::new(raw, true).unwrap();
        let mary_jane = feature("Mary Jane");
        assert_eq!(mary_jane.first_word(), "mary");
        assert!(mary_jane.has_several_words() && !feature("Mary").has_several_words());
        let table = name::Nicknames::shipped();
        for (a, b) in [
            ("Bob", "Robert"),
            ("Mary Jane", "Mary"),
            ("Mary", "Mark"),
            ("Chris", "Christine"),
            ("Zyxq", "Zyxq Ann"),
            ("Zyxq", "Robert"),
        ] {
            let (x, y) = (feature(a), feature(b));
            assert_eq!(
                x.first_words_related(&y),
                table.related(x.first_word(), y.first_word()),
                "{a} / {b}"
            );
            assert_eq!(
                x.first_word_is_known(),
                table.is_known(x.first_word()),
                "{a}"
            );
        }
        assert!(feature("Bob").first_words_related(&feature("Robert")));
        assert!(!feature("Mary").first_words_related(&feature("Mark")));
        assert!(!feature("Zyxq").first_word_is_known() && feature("Mary").first_word_is_known());
    }
}
