//! The golden record: for each field, one surviving value chosen by a configurable rule, each
//! naming the record it came from.
//!
//! Rules: `most_recent` (the value of the most recently updated record that has one),
//! `most_frequent` (the value most records agree on, compared in normalized form),
//! `source_priority` (the first source in a ranked list that has a value), `most_complete`
//! (the longest value: "Katherine" over "Kate", the address with the most parts). Ties always
//! go to the most recent record, then to the record key, so the result never depends on the
//! order records are listed in. A record's recency is its own `updated_at` when the source sent
//! one, else when c360 last stored a change to it.

use std::collections::BTreeMap;

use c360_domain::{GoldenAddress, GoldenRecord, GoldenValue, MemberRecord, PostalAddress, Profile};
use serde::{Deserialize, Serialize};

use crate::normalize::{self, name};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    MostRecent,
    MostFrequent,
    SourcePriority,
    MostComplete,
}

/// Which rule each golden field follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorshipConfig {
    /// The rule of fields not listed in `fields`.
    pub default: Rule,
    /// Field name (`first_name`, `middle_name`, `last_name`, `email`, `phone`,
    /// `date_of_birth`, `address`, `loyalty_id`) -> rule.
    #[serde(default)]
    pub fields: BTreeMap<String, Rule>,
    /// Sources from most to least trusted, for `source_priority`; unlisted sources rank last.
    #[serde(default)]
    pub source_priority: Vec<String>,
}

impl Default for SurvivorshipConfig {
    fn default() -> Self {
        Self {
            default: Rule::MostRecent,
            fields: BTreeMap::new(),
            source_priority: Vec::new(),
        }
    }
}

impl SurvivorshipConfig {
    fn rule(&self, field: &str) -> Rule {
        self.fields.get(field).copied().unwrap_or(self.default)
    }
}

/// One candidate value: its text, the form it is compared in, and its record.
struct Candidate<'a, T> {
    value: T,
    normalized: String,
    completeness: usize,
    member: &'a MemberRecord,
}

fn recency(m: &MemberRecord) -> chrono::DateTime<chrono::Utc> {
    m.record.updated_at.unwrap_or(m.last_changed_at)
}

/// Picks the surviving candidate under `rule`. `ordered` members come most recent first.
fn pick<'a, T: Clone>(
    rule: Rule,
    config: &SurvivorshipConfig,
    candidates: Vec<Candidate<'a, T>>,
) -> Option<(T, &'a MemberRecord)> {
    let first = candidates.first()?;
    let chosen = match rule {
        Rule::MostRecent => first,
        Rule::MostFrequent => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for c in &candidates {
                *counts.entry(c.normalized.as_str()).or_default() += 1;
            }
            // max_by_key keeps the last of equals: iterate in reverse so the most recent wins.
            candidates
                .iter()
                .rev()
                .max_by_key(|c| counts[c.normalized.as_str()])
                .unwrap_or(first)
        }
        Rule::SourcePriority => {
            let rank = |c: &Candidate<T>| {
                config
                    .source_priority
                    .iter()
                    .position(|s| s == c.member.record.source.as_str())
                    .unwrap_or(usize::MAX)
            };
            candidates
                .iter()
                .rev()
                .min_by_key(|c| rank(c))
                .unwrap_or(first)
        }
        Rule::MostComplete => candidates
            .iter()
            .rev()
            .max_by_key(|c| c.completeness)
            .unwrap_or(first),
    };
    Some((chosen.value.clone(), chosen.member))
}

fn text_field(
    config: &SurvivorshipConfig,
    field: &str,
    ordered: &[&MemberRecord],
    get: impl Fn(&Profile) -> Option<String>,
    normalize: impl Fn(&str) -> String,
) -> Option<GoldenValue> {
    let candidates: Vec<Candidate<String>> = ordered
        .iter()
        .filter_map(|m| {
            get(&m.record).map(|value| Candidate {
                normalized: normalize(&value),
                completeness: value.chars().count(),
                value,
                member: m,
            })
        })
        .collect();
    pick(config.rule(field), config, candidates).map(|(value, m)| GoldenValue {
        value,
        from: m.record.key(),
    })
}

fn address_key(a: &PostalAddress) -> String {
    let street = a
        .line1
        .as_deref()
        .map(normalize::address::street_address)
        .unwrap_or_default();
    format!(
        "{}|{}|{}",
        street.house_number.unwrap_or_default(),
        street.street.unwrap_or_default(),
        a.postal_code
            .as_deref()
            .and_then(normalize::address::postal_code)
            .unwrap_or_default()
    )
}

fn address_completeness(a: &PostalAddress) -> usize {
    [&a.line1, &a.line2, &a.city, &a.state, &a.postal_code]
        .iter()
        .filter(|p| p.is_some())
        .count()
        + usize::from(a.country.is_some())
}

pub fn golden_record(members: &[MemberRecord], config: &SurvivorshipConfig) -> GoldenRecord {
    let mut ordered: Vec<&MemberRecord> = members.iter().collect();
    ordered.sort_by(|a, b| {
        recency(b)
            .cmp(&recency(a))
            .then_with(|| a.record.key().cmp(&b.record.key()))
    });
    let folded = |s: &str| name::fold(s);
    let exact = |s: &str| s.to_owned();

    let addresses: Vec<Candidate<PostalAddress>> = ordered
        .iter()
        .filter_map(|m| {
            m.record.addresses.first().map(|a| Candidate {
                normalized: address_key(a),
                completeness: address_completeness(a),
                value: a.clone(),
                member: m,
            })
        })
        .collect();

    GoldenRecord {
        first_name: text_field(
            config,
            "first_name",
            &ordered,
            |p| p.first_name.as_ref().map(|v| v.to_string()),
            folded,
        ),
        middle_name: text_field(
            config,
            "middle_name",
            &ordered,
            |p| p.middle_name.as_ref().map(|v| v.to_string()),
            folded,
        ),
        last_name: text_field(
            config,
            "last_name",
            &ordered,
            |p| p.last_name.as_ref().map(|v| v.to_string()),
            folded,
        ),
        email: text_field(
            config,
            "email",
            &ordered,
            |p| p.emails.first().map(|v| v.to_string()),
            normalize::canonical_email,
        ),
        phone: text_field(
            config,
            "phone",
            &ordered,
            |p| p.phones.first().map(|v| v.to_string()),
            exact,
        ),
        date_of_birth: text_field(
            config,
            "date_of_birth",
            &ordered,
            |p| p.date_of_birth.map(|v| v.to_string()),
            exact,
        ),
        loyalty_id: text_field(
            config,
            "loyalty_id",
            &ordered,
            |p| p.loyalty_id.as_ref().map(|v| v.to_string()),
            exact,
        ),
        address: pick(config.rule("address"), config, addresses).map(|(value, m)| GoldenAddress {
            value,
            from: m.record.key(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::RecordInput;
    use chrono::{TimeZone, Utc};

    fn member(json: serde_json::Value, changed_secs: i64) -> MemberRecord {
        let record = Profile::parse(&serde_json::from_value::<RecordInput>(json).unwrap()).unwrap();
        let at = Utc.timestamp_opt(changed_secs, 0).unwrap();
        MemberRecord {
            record,
            first_seen_at: at,
            last_changed_at: at,
        }
    }

    fn members() -> Vec<MemberRecord> {
        vec![
            member(
                serde_json::json!({"source": "crm", "source_id": "1", "first_name": "Katherine", "last_name": "Smith",
                "email": "old@example.com", "address_line1": "1 Elm St", "city": "Springfield", "postal_code": "62704"}),
                100,
            ),
            member(
                serde_json::json!({"source": "web", "source_id": "2", "first_name": "Kate", "email": "new@example.com",
                "address_line1": "9 Oak Ave"}),
                300,
            ),
            member(
                serde_json::json!({"source": "pos", "source_id": "3", "first_name": "KATHERINE", "last_name": "Smith-Jones"}),
                200,
            ),
        ]
    }

    #[test]
    fn most_recent_non_empty_value_wins_by_default() {
        let config = SurvivorshipConfig::default();
        let mut all = members();
        let forward = golden_record(&all, &config);
        all.reverse();
        assert_eq!(
            golden_record(&all, &config),
            forward,
            "order of members does not matter"
        );
        assert_eq!(forward.first_name.as_ref().unwrap().value, "Kate");
        assert_eq!(forward.last_name.as_ref().unwrap().value, "Smith-Jones");
        assert_eq!(forward.email.as_ref().unwrap().value, "new@example.com");
        assert_eq!(forward.email.unwrap().from.source.as_str(), "web");
    }

    #[test]
    fn each_rule_can_be_chosen_per_field() {
        let config = SurvivorshipConfig {
            default: Rule::MostRecent,
            fields: BTreeMap::from([
                ("first_name".to_owned(), Rule::MostFrequent),
                ("last_name".to_owned(), Rule::MostComplete),
                ("email".to_owned(), Rule::SourcePriority),
                ("address".to_owned(), Rule::MostComplete),
            ]),
            source_priority: vec!["crm".to_owned(), "pos".to_owned()],
        };
        let g = golden_record(&members(), &config);
        // "Katherine" twice (case folded), "Kate" once; the most recent spelling of the two wins.
        assert_eq!(g.first_name.as_ref().unwrap().value, "KATHERINE");
        assert_eq!(g.last_name.as_ref().unwrap().value, "Smith-Jones");
        assert_eq!(
            g.email.as_ref().unwrap().value,
            "old@example.com",
            "crm outranks web"
        );
        assert_eq!(
            g.address.as_ref().unwrap().value.city.as_deref(),
            Some("Springfield"),
            "the fullest address"
        );
    }
}
