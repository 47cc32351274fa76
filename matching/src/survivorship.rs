//! The golden record: for each field, the value of the most recently updated record that has
//! one. A record's recency is its own `updated_at` when the source sent one, else when c360
//! last stored a change to it; ties go to the record key, so the result never depends on the
//! order records are listed in.

use c360_domain::{GoldenAddress, GoldenRecord, GoldenValue, MemberRecord, Profile};

pub fn golden_record(members: &[MemberRecord]) -> GoldenRecord {
    let mut ordered: Vec<&MemberRecord> = members.iter().collect();
    ordered.sort_by(|a, b| {
        let recency = |m: &MemberRecord| m.record.updated_at.unwrap_or(m.last_changed_at);
        recency(b)
            .cmp(&recency(a))
            .then_with(|| a.record.key().cmp(&b.record.key()))
    });

    let pick = |get: &dyn Fn(&Profile) -> Option<String>| {
        ordered.iter().find_map(|m| {
            get(&m.record).map(|value| GoldenValue {
                value,
                from: m.record.key(),
            })
        })
    };

    GoldenRecord {
        first_name: pick(&|p| p.first_name.as_ref().map(|v| v.to_string())),
        middle_name: pick(&|p| p.middle_name.as_ref().map(|v| v.to_string())),
        last_name: pick(&|p| p.last_name.as_ref().map(|v| v.to_string())),
        email: pick(&|p| p.emails.first().map(|v| v.to_string())),
        phone: pick(&|p| p.phones.first().map(|v| v.to_string())),
        date_of_birth: pick(&|p| p.date_of_birth.map(|v| v.to_string())),
        loyalty_id: pick(&|p| p.loyalty_id.as_ref().map(|v| v.to_string())),
        address: ordered.iter().find_map(|m| {
            m.record.addresses.first().map(|a| GoldenAddress {
                value: a.clone(),
                from: m.record.key(),
            })
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

    #[test]
    fn most_recent_non_empty_value_wins_per_field() {
        let old = member(
            serde_json::json!({"source": "crm", "source_id": "1", "first_name": "Robert", "last_name": "Smith", "email": "old@example.com"}),
            100,
        );
        let new = member(
            serde_json::json!({"source": "web", "source_id": "2", "first_name": "Bob", "email": "new@example.com"}),
            200,
        );
        for members in [vec![old.clone(), new.clone()], vec![new, old]] {
            let g = golden_record(&members);
            assert_eq!(g.first_name.as_ref().unwrap().value, "Bob");
            assert_eq!(g.last_name.as_ref().unwrap().value, "Smith");
            assert_eq!(g.last_name.as_ref().unwrap().from.source.as_str(), "crm");
            assert_eq!(g.email.unwrap().value, "new@example.com");
            assert!(g.address.is_none());
        }
    }
}
