//! The resolution algorithm of c360, with no I/O and no async: a reader can understand how
//! records become customers from this crate alone.
//!
//! For each record: [`features::Features`] normalizes every field once; [`blocking::keys`]
//! files it under a few keys, and records sharing a key are its candidates; for each candidate
//! [`compare::compare`] grades every field (exact, close, phonetic, different, missing);
//! [`Engine::decide`] applies the deterministic rules, the Fellegi-Sunter [`model`] score and
//! the guard rails; accepted pairs become edges of the identity graph, whose connected
//! components ([`graph`], [`batch`]) are the customers; [`survivorship`] builds each
//! customer's golden record.

pub mod batch;
pub mod blocking;
pub mod compare;
pub mod eval;
pub mod features;
pub mod graph;
pub mod model;
pub mod normalize;
pub mod rng;
pub mod rules;
pub mod survivorship;
pub mod train;

use c360_domain::{FieldEvidence, IdentifierKind, LinkEvidence, Profile};

use crate::compare::{Comparison, Field, MISSING};
pub use crate::features::Features;
use crate::model::{CompiledModel, Model, Population, Score};
use crate::rules::{CompiledConfig, ConfigError, ResolutionConfig};

/// The normalized identifiers of a record, as they are indexed for look-ups: canonical email
/// (provider rules applied), E.164 phone, opaque ids as sent.
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

/// What the engine decided about a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Link them.
    Match,
    /// Likely the same person, not sure enough: a person should look.
    Review,
    NonMatch,
}

/// A decision on one pair with everything that went into it.
#[derive(Debug, Clone)]
pub struct PairDecision {
    pub comparison: Comparison,
    pub score: Score,
    /// The deterministic rule that fired, if any.
    pub rule: Option<String>,
    /// The guard rail that vetoed the link, if any.
    pub guard: Option<String>,
    pub verdict: Verdict,
}

/// What a link that a rule makes adds to its weight in [`PairDecision::link_priority`]: more
/// than any score, so that rule links come first.
const RULE_LINK_PRIORITY: f64 = 1e6;

impl PairDecision {
    /// The order in which accepted links join customers, strongest first: links a rule made,
    /// then scored links, each by the weight of their evidence. Among rule links the weight
    /// still counts: a record without a name that shares a household landline with two
    /// members (rule `same_phone_anonymous`, a weak link) must not join one of them before
    /// the loyalty card it shares with the other (`same_loyalty_id`, a strong one) has
    /// decided which member it is; a guard rail then keeps the weaker link out.
    pub fn link_priority(&self) -> f64 {
        if self.rule.is_some() {
            RULE_LINK_PRIORITY + self.score.weight
        } else {
            self.score.weight
        }
    }
}

/// How many members of a customer [`Engine::incoherence`] checks against each other.
pub const INCOHERENCE_CHECK_LIMIT: usize = 64;

/// Two members of one customer that a guard rail says are different people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoherence {
    /// Positions of the two members in the slice checked.
    pub first: usize,
    pub second: usize,
    /// The guard rail's name.
    pub guard: String,
}

/// The matching engine: a model, rules and guard rails.
#[derive(Debug, Clone)]
pub struct Engine {
    model: CompiledModel,
    config: CompiledConfig,
}

impl Engine {
    pub fn new(model: Model, config: ResolutionConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            model: model.compile(),
            config: config.compile()?,
        })
    }

    /// The shipped model and configuration.
    pub fn shipped() -> Self {
        Self::new(Model::shipped(), ResolutionConfig::shipped())
            .unwrap_or_else(|e| panic!("shipped configuration: {e}"))
    }

    pub fn model(&self) -> &Model {
        &self.model.model
    }

    pub fn config(&self) -> &ResolutionConfig {
        &self.config.config
    }

    /// Compares two records and decides: rules first, then the score; a guard rail vetoes
    /// either.
    pub fn decide(&self, a: &Features, b: &Features, tf: &dyn Population) -> PairDecision {
        let comparison = compare::compare(a, b);
        self.decide_compared(comparison, a, tf)
    }

    pub fn decide_compared(
        &self,
        comparison: Comparison,
        a: &Features,
        tf: &dyn Population,
    ) -> PairDecision {
        let score = self.model.score(&comparison, a, tf);
        let rule = self.config.rule(&comparison).map(|r| r.name.clone());
        let guard = self.config.guard(&comparison).map(|g| g.name.clone());
        let model = &self.model.model;
        let verdict = if guard.is_some() {
            if score.probability >= model.review_probability || rule.is_some() {
                Verdict::Review
            } else {
                Verdict::NonMatch
            }
        } else if rule.is_some() || score.probability >= model.match_probability {
            Verdict::Match
        } else if score.probability >= model.review_probability {
            Verdict::Review
        } else {
            Verdict::NonMatch
        };
        PairDecision {
            comparison,
            score,
            rule,
            guard,
            verdict,
        }
    }

    /// Whether a guard rail forbids these two records being in one customer (checked across
    /// the records of two customers about to merge). `link_compared_names` tells whether the
    /// link that would merge them compared first names: a link that did vouches for the names
    /// on its own, so only the guards marked `across_customers` apply; a link without names (an
    /// email or a phone alone, as a family's shared ones) cannot outweigh a name conflict
    /// anywhere in the two customers, so every guard applies.
    pub fn conflict(
        &self,
        a: &Features,
        b: &Features,
        link_compared_names: bool,
    ) -> Option<String> {
        let comparison = compare::compare(a, b);
        let guard = if link_compared_names {
            self.config.customer_guard(&comparison)
        } else {
            self.config.guard(&comparison)
        };
        guard.map(|g| g.name.clone())
    }

    /// The first pair of members of one customer that a guard rail says are two people, if
    /// any: a customer can hold such a pair when a person linked it by hand (`must_link`), or
    /// when records arrived in an order that chained past a guard. Only guards checked across
    /// customers apply, as on a merge; the first [`INCOHERENCE_CHECK_LIMIT`] members are
    /// checked, so the cost stays bounded for a customer grown far too large (which the
    /// large-customer report shows anyway).
    pub fn incoherence(&self, members: &[&Features]) -> Option<Incoherence> {
        let checked = &members[..members.len().min(INCOHERENCE_CHECK_LIMIT)];
        checked.iter().enumerate().find_map(|(i, a)| {
            checked[i + 1..].iter().enumerate().find_map(|(k, b)| {
                self.conflict(a, b, true).map(|guard| Incoherence {
                    first: i,
                    second: i + 1 + k,
                    guard,
                })
            })
        })
    }

    /// The evidence of a decision, as stored on an edge and shown to people.
    pub fn evidence(&self, decision: &PairDecision) -> LinkEvidence {
        let fields: Vec<FieldEvidence> = Field::ALL
            .into_iter()
            .filter(|f| decision.comparison.level(*f) != MISSING)
            .map(|f| FieldEvidence {
                field: f.name().to_owned(),
                level: f.level_name(decision.comparison.level(f)).to_owned(),
                weight: (decision.score.contributions[f.index()] * 100.0).round() / 100.0,
            })
            .collect();
        let probability = (decision.score.probability * 1e6).round() / 1e6;
        match &decision.rule {
            Some(rule) => LinkEvidence::Rule {
                rule: rule.clone(),
                probability,
                fields,
            },
            None => LinkEvidence::Score {
                probability,
                weight: (decision.score.weight * 100.0).round() / 100.0,
                names_swapped: decision.comparison.names_swapped,
                fields,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::from_json as features;

    #[test]
    fn engine_links_the_same_person_and_explains_why() {
        let engine = Engine::shipped();
        let a = features(
            serde_json::json!({"source": "crm", "source_id": "1", "first_name": "Robert", "last_name": "Smith",
            "date_of_birth": "1984-07-12", "address_line1": "12 Main St", "postal_code": "62704"}),
        );
        let b = features(
            serde_json::json!({"source": "web", "source_id": "2", "first_name": "Bob", "last_name": "Smith",
            "date_of_birth": "1984-07-12", "address_line1": "12 Main Street", "postal_code": "62704"}),
        );
        let decision = engine.decide(&a, &b, &model::UnknownPopulation);
        assert_eq!(decision.verdict, Verdict::Match, "{decision:?}");
        let LinkEvidence::Score {
            fields,
            probability,
            ..
        } = engine.evidence(&decision)
        else {
            panic!("scored, not a rule");
        };
        assert!(probability > 0.99);
        assert!(fields
            .iter()
            .any(|f| f.field == "first_name" && f.level == "nickname" && f.weight > 0.0));
    }

    #[test]
    fn household_members_sharing_an_email_are_not_linked() {
        let engine = Engine::shipped();
        let parent = features(
            serde_json::json!({"source": "crm", "source_id": "1", "first_name": "Maria", "last_name": "Lopez",
            "email": "lopez.family@example.com", "date_of_birth": "1970-03-02", "address_line1": "5 Oak Ave", "postal_code": "10001"}),
        );
        let child = features(
            serde_json::json!({"source": "web", "source_id": "2", "first_name": "Sofia", "last_name": "Lopez",
            "email": "lopez.family@example.com", "date_of_birth": "2001-09-14", "address_line1": "5 Oak Ave", "postal_code": "10001"}),
        );
        let decision = engine.decide(&parent, &child, &model::UnknownPopulation);
        assert_ne!(decision.verdict, Verdict::Match, "{decision:?}");
        assert_eq!(
            decision.guard.as_deref(),
            Some("different_first_name_and_birth_date")
        );
    }

    #[test]
    fn a_customer_holding_two_people_is_incoherent() {
        let engine = Engine::shipped();
        let record = |id: &str, first: &str, dob: &str| {
            features(
                serde_json::json!({"source": "crm", "source_id": id, "first_name": first,
                "last_name": "Lopez", "date_of_birth": dob, "postal_code": "10001"}),
            )
        };
        let maria = record("1", "Maria", "1970-03-02");
        let mary = record("2", "Mary", "1970-03-02");
        let sofia = record("3", "Sofia", "2001-09-14");
        assert_eq!(engine.incoherence(&[&maria, &mary]), None);
        assert_eq!(
            engine.incoherence(&[&maria, &mary, &sofia]),
            Some(Incoherence {
                first: 0,
                second: 2,
                guard: "different_first_name_and_birth_date".to_owned()
            })
        );
        assert_eq!(engine.incoherence(&[]), None);
    }
}
