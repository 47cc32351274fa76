//! The resolution algorithm of c360, with no I/O and no async: a reader can understand how
//! records become customers from this crate alone.
//!
//! The service calls three things, in order, for each incoming record:
//! 1. [`blocking_keys`]: the keys under which the record is filed and under which candidates
//!    are looked up (records sharing at least one key are candidates);
//! 2. [`Matcher::decide`]: which candidates are the same person, with the evidence;
//! 3. [`survivorship::golden_record`]: the golden record of each customer that changed.
//!
//! [`graph`] turns links into customers (connected components) when a customer must be
//! recomputed, e.g. after a record is deleted.

pub mod compare;
pub mod features;
pub mod graph;
pub mod normalize;
pub mod survivorship;

use c360_domain::{IdentifierKind, LinkEvidence, Profile, RecordKey};

/// A stored record offered to the matcher as a possible match.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: RecordKey,
    pub profile: Profile,
}

/// The matcher's verdict that the probe and `other` are the same person.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkDecision {
    pub other: RecordKey,
    pub evidence: LinkEvidence,
}

/// A blocking key: `kind:value`, the value already normalized.
pub type BlockingKey = String;

/// The normalized identifiers of a record, as they are indexed for look-ups and linking:
/// canonical email (provider rules applied), E.164 phone, opaque ids as sent.
pub fn identifier_keys(profile: &Profile) -> Vec<(IdentifierKind, String)> {
    let mut keys: Vec<(IdentifierKind, String)> = profile
        .identifiers()
        .into_iter()
        .map(|(kind, value)| (kind, normalize::identifier(kind, value)))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The kinds of identifier that, shared, mean the same person (for now: the deterministic
/// linking of the service foundation, until probabilistic matching lands).
const LINKING_KINDS: [IdentifierKind; 3] = [
    IdentifierKind::Email,
    IdentifierKind::Phone,
    IdentifierKind::LoyaltyId,
];

/// The keys a record is filed under; candidates for a record are the stored records that share
/// at least one of them.
pub fn blocking_keys(profile: &Profile) -> Vec<BlockingKey> {
    identifier_keys(profile)
        .into_iter()
        .filter(|(kind, _)| LINKING_KINDS.contains(kind))
        .map(|(kind, value)| format!("{}:{value}", kind.as_str()))
        .collect()
}

/// Decides which candidates are the same person as a probe record.
#[derive(Debug, Clone, Default)]
pub struct Matcher {}

impl Matcher {
    pub fn new() -> Self {
        Self {}
    }

    /// Links the probe to every candidate that shares a normalized email, phone or loyalty id.
    /// The evidence names the rule and the identifier kinds shared.
    pub fn decide(&self, probe: &Profile, candidates: &[Candidate]) -> Vec<LinkDecision> {
        let probe_keys = identifier_keys(probe);
        let probe_key = probe.key();
        candidates
            .iter()
            .filter(|c| c.key != probe_key)
            .filter_map(|candidate| {
                let theirs = identifier_keys(&candidate.profile);
                let shared: Vec<IdentifierKind> = LINKING_KINDS
                    .into_iter()
                    .filter(|kind| {
                        probe_keys
                            .iter()
                            .filter(|(k, _)| k == kind)
                            .any(|pk| theirs.contains(pk))
                    })
                    .collect();
                let rule = match shared.first()? {
                    IdentifierKind::Email => "same_email",
                    IdentifierKind::Phone => "same_phone",
                    _ => "same_loyalty_id",
                };
                Some(LinkDecision {
                    other: candidate.key.clone(),
                    evidence: LinkEvidence::Rule {
                        rule: rule.to_owned(),
                        identifiers: shared,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::RecordInput;

    fn profile(json: serde_json::Value) -> Profile {
        Profile::parse(&serde_json::from_value::<RecordInput>(json).unwrap()).unwrap()
    }

    #[test]
    fn links_on_a_shared_normalized_identifier() {
        let probe = profile(
            serde_json::json!({"source": "web", "source_id": "1", "email": "Bob.Smith+shop@GMAIL.com"}),
        );
        let same = profile(
            serde_json::json!({"source": "crm", "source_id": "2", "email": "bobsmith@gmail.com"}),
        );
        let other = profile(
            serde_json::json!({"source": "crm", "source_id": "3", "email": "alice@gmail.com", "phone": "555 123 4567"}),
        );
        let by_phone = profile(
            serde_json::json!({"source": "pos", "source_id": "4", "phone": "+1 (555) 123-4567"}),
        );
        let candidates: Vec<Candidate> = [same, other.clone(), by_phone]
            .into_iter()
            .map(|p| Candidate {
                key: p.key(),
                profile: p,
            })
            .collect();
        let links = Matcher::new().decide(&probe, &candidates);
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].other.source_id.as_str(), "2");
        assert_eq!(
            links[0].evidence,
            LinkEvidence::Rule {
                rule: "same_email".into(),
                identifiers: vec![IdentifierKind::Email]
            }
        );
        let links = Matcher::new().decide(&other, &candidates);
        assert_eq!(links.len(), 1, "phone links 3 and 4, not 3 to itself");
        assert_eq!(links[0].other.source_id.as_str(), "4");
    }

    #[test]
    fn device_ids_are_indexed_but_do_not_block_yet() {
        let p = profile(
            serde_json::json!({"source": "app", "source_id": "1", "device_id": "d-1", "email": "A@B.co"}),
        );
        assert_eq!(blocking_keys(&p), vec!["email:a@b.co".to_owned()]);
        assert_eq!(identifier_keys(&p).len(), 2);
    }
}
