//! Blocking: the keys a record is filed under. Two records are compared only when they share at
//! least one key, so each key is built to be shared by the duplicates of a person (typos in one
//! field leave another key intact) and by few others.

use crate::features::Features;

/// Whether a key is an exact identifier (email, phone, loyalty, device, cookie) rather than a
/// fuzzy combination of names, dates and addresses.
pub fn is_identifier_key(key: &str) -> bool {
    ["em:", "ph:", "ly:", "dv:", "ck:"]
        .iter()
        .any(|prefix| key.starts_with(prefix))
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
    keys.extend(f.emails.iter().map(|e| format!("em:{e}")));
    keys.extend(f.phones.iter().map(|p| format!("ph:{p}")));
    let ids = [
        ("ly", &f.loyalty_id),
        ("dv", &f.device_id),
        ("ck", &f.cookie_id),
    ];
    keys.extend(
        ids.into_iter()
            .filter_map(|(prefix, id)| id.as_ref().map(|v| format!("{prefix}:{v}"))),
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
}
