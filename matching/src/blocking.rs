//! Blocking: the keys a record is filed under. Two records are compared only when they share at
//! least one key, so each key is built to be shared by the duplicates of a person (typos in one
//! field leave another key intact) and by few others.

use c360_domain::IdentifierKind;

use crate::features::Features;

/// The prefix of each kind of identifier's blocking key.
const IDENTIFIER_PREFIXES: [(IdentifierKind, &str); 5] = [
    (IdentifierKind::Email, "em:"),
    (IdentifierKind::Phone, "ph:"),
    (IdentifierKind::LoyaltyId, "ly:"),
    (IdentifierKind::DeviceId, "dv:"),
    (IdentifierKind::CookieId, "ck:"),
];

fn identifier_prefix(kind: IdentifierKind) -> &'static str {
    IDENTIFIER_PREFIXES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("", |(_, prefix)| prefix)
}

/// The blocking key of a normalized identifier (as [`crate::identifier_keys`] normalizes it):
/// every record carrying it is filed under this key, so look-ups by identifier read the
/// blocking index.
pub fn identifier_key(kind: IdentifierKind, value: &str) -> String {
    format!("{}{value}", identifier_prefix(kind))
}

/// The identifier a blocking key stands for, when it is one.
pub fn identifier_of_key(key: &str) -> Option<(IdentifierKind, &str)> {
    IDENTIFIER_PREFIXES
        .iter()
        .find_map(|(kind, prefix)| key.strip_prefix(prefix).map(|value| (*kind, value)))
}

/// Whether a key is an exact identifier (email, phone, loyalty, device, cookie) rather than a
/// fuzzy combination of names, dates and addresses.
pub fn is_identifier_key(key: &str) -> bool {
    identifier_of_key(key).is_some()
}

/// The keys a writer serializes on: the exact identifiers and the date-of-birth + name keys.
/// Two concurrent records of one person almost always share one of them, and they are
/// specific; locking the broad fuzzy keys too ("J. Smith in 100xx") would queue every writer
/// behind the common names. Two records of one person that share neither an identifier nor a
/// birth date and arrive at the same instant may end as two customers until the next record
/// or a recompute joins them.
pub fn lock_keys(keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| is_identifier_key(k) || k.starts_with("dn:"))
        .cloned()
        .collect()
}

fn zip3(zip: &str) -> &str {
    zip.get(..3).unwrap_or(zip)
}

/// The blocking keys of a record, deduplicated. Prefixes name the rule:
/// - `em`, `ph`, `ly`, `dv`, `ck`: an exact identifier (email, phone, loyalty, device, cookie);
/// - `nz`: phonetic surname + first initial + ZIP3;
/// - `dn`: date of birth + the phonetic code of either name (the same prefix for both, so that
///   swapped first and last names still meet);
/// - `dz`: date of birth + postal code (catches a changed surname);
/// - `ad`: house number + first street word + postal code; `sz`: street + postal code;
/// - `pz`: phonetic code of either name + postal code; `fz`: canonical first name + postal code;
/// - `nn`: canonical first name + phonetic surname, `np`: both names phonetic, sorted (movers:
///   nothing else in common);
/// - `dh`: date of birth + house number, `lh`: phonetic surname + house number, `cs`: street +
///   city (a typo in the postal code).
pub fn keys(f: &Features) -> Vec<String> {
    let mut keys = Vec::new();
    keys.extend(
        f.emails
            .iter()
            .map(|e| identifier_key(IdentifierKind::Email, e)),
    );
    keys.extend(
        f.phones
            .iter()
            .map(|p| identifier_key(IdentifierKind::Phone, p)),
    );
    let ids = [
        (IdentifierKind::LoyaltyId, &f.loyalty_id),
        (IdentifierKind::DeviceId, &f.device_id),
        (IdentifierKind::CookieId, &f.cookie_id),
    ];
    keys.extend(
        ids.into_iter()
            .filter_map(|(kind, id)| id.as_ref().map(|v| identifier_key(kind, v))),
    );

    let last = f.last.as_ref().filter(|n| !n.phonetic.is_empty());
    let first = f.first.as_ref();
    let dob = f.dob_key();
    let address = f.main_address();
    let zip = address.and_then(|a| a.postal_code.as_deref());

    if let (Some(last), Some(first), Some(zip)) = (last, first, zip) {
        keys.push(format!(
            "nz:{}|{}|{}",
            last.phonetic,
            first.initial(),
            zip3(zip)
        ));
    }
    if let Some(dob) = &dob {
        if let Some(last) = last {
            keys.push(format!("dn:{dob}|{}", last.phonetic));
        }
        if let Some(first) = first.filter(|n| !n.phonetic.is_empty()) {
            keys.push(format!("dn:{dob}|{}", first.phonetic));
        }
        if let Some(zip) = zip {
            keys.push(format!("dz:{dob}|{zip}"));
        }
    }
    if let Some(a) = address {
        if let (Some(street), Some(zip)) = (&a.street, zip) {
            if let Some(number) = &a.house_number {
                let word = street
                    .split(' ')
                    .find(|w| w.len() > 2)
                    .unwrap_or(street.as_str());
                keys.push(format!("ad:{number}|{word}|{zip}"));
            }
            keys.push(format!("sz:{street}|{zip}"));
        }
    }
    if let Some(zip) = zip {
        if let Some(last) = last {
            keys.push(format!("pz:{}|{zip}", last.phonetic));
        }
        if let Some(first) = first {
            keys.push(format!("fz:{}|{zip}", first.canonical));
            if !first.phonetic.is_empty() {
                keys.push(format!("pz:{}|{zip}", first.phonetic));
            }
        }
    }
    if let (Some(first), Some(last)) = (first, last) {
        keys.push(format!("nn:{}|{}", first.canonical, last.phonetic));
        if !first.phonetic.is_empty() {
            // In sorted order, so that swapped first and last names share the key.
            let (x, y) = if first.phonetic <= last.phonetic {
                (&first.phonetic, &last.phonetic)
            } else {
                (&last.phonetic, &first.phonetic)
            };
            keys.push(format!("np:{x}|{y}"));
        }
    }
    if let Some(a) = address {
        if let Some(number) = &a.house_number {
            if let Some(dob) = &dob {
                keys.push(format!("dh:{dob}|{number}"));
            }
            if let Some(last) = last {
                keys.push(format!("lh:{}|{number}", last.phonetic));
            }
        }
        if let (Some(street), Some(city)) = (&a.street, &a.city) {
            keys.push(format!("cs:{street}|{city}"));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::from_json as features;

    #[test]
    fn duplicates_with_typos_share_a_key() {
        let a = features(
            serde_json::json!({"source": "a", "source_id": "1", "first_name": "Michaela", "last_name": "Neumann",
            "date_of_birth": "1915-11-11", "address_line1": "8 Stanley Street", "postal_code": "4223"}),
        );
        let b = features(
            serde_json::json!({"source": "b", "source_id": "2", "first_name": "Michafla", "last_name": "Jakimow",
            "date_of_birth": "1915-11-11", "address_line1": "8 stanleykstreet", "postal_code": "4223"}),
        );
        let (ka, kb) = (keys(&a), keys(&b));
        assert!(ka.iter().any(|k| kb.contains(k)), "{ka:?} / {kb:?}");
    }

    #[test]
    fn identifiers_are_keys() {
        let f = features(
            serde_json::json!({"source": "a", "source_id": "1", "email": "x@y.co", "device_id": "d1"}),
        );
        assert_eq!(keys(&f), vec!["dv:d1".to_owned(), "em:x@y.co".to_owned()]);
    }

    /// Look-ups by identifier read the blocking index: every identifier of a record, as
    /// [`crate::identifier_keys`] normalizes a look-up, must be one of its keys.
    #[test]
    fn every_identifier_is_filed_under_its_key() {
        let json = serde_json::json!({"source": "a", "source_id": "1",
            "email": "Bob.Smith+shop@GMail.com", "phone": "(415) 555-0134",
            "loyalty_id": " L-77 ", "device_id": "dev-1", "cookie_id": "ck-9"});
        let input: c360_domain::RecordInput =
            serde_json::from_value(json.clone()).expect("a record");
        let profile = c360_domain::Profile::parse(&input).expect("a valid record");
        let filed = keys(&features(json));
        let found = crate::identifier_keys(&profile);
        assert_eq!(found.len(), 5);
        for (kind, value) in found {
            let key = identifier_key(kind, &value);
            assert!(filed.contains(&key), "{key} not in {filed:?}");
            assert_eq!(identifier_of_key(&key), Some((kind, value.as_str())));
        }
        assert_eq!(identifier_of_key("nz:SM0|j|941"), None);
    }
}
