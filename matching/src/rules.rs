//! Deterministic rules and guard rails, as data: each is a set of conditions on comparison
//! levels ("email exact and first name exact, nickname, close or missing"). Rules link
//! before any scoring; guard rails veto a link, even one a rule made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, Field, FIELD_COUNT};

/// A named condition on the levels of a compared pair. Fields not named may be at any level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub when: BTreeMap<Field, Vec<String>>,
    /// Guards only: whether the guard is also checked between every record of two customers
    /// about to merge (default), or only on the linking pair itself.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub across_customers: bool,
}

fn yes() -> bool {
    true
}

fn default_fuzzy_block() -> usize {
    50
}

/// The resolution configuration: rules, guard rails, limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolutionConfig {
    pub rules: Vec<Condition>,
    pub guards: Vec<Condition>,
    /// An identifier key (email, phone, loyalty, device, cookie) shared by more records than
    /// this is not used to find candidates (a placeholder phone, a shared mailbox).
    pub max_block_size: usize,
    /// The same for fuzzy keys built from names, dates and addresses, which grow with the data.
    #[serde(default = "default_fuzzy_block")]
    pub max_fuzzy_block_size: usize,
    /// A customer growing past this many records is reported as suspicious.
    pub max_customer_records: usize,
    /// How the golden record is built.
    #[serde(default)]
    pub survivorship: crate::survivorship::SurvivorshipConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not a resolution config: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{condition}: field {field} has no level {level:?}")]
    UnknownLevel {
        condition: String,
        field: &'static str,
        level: String,
    },
    #[error("{0}: a condition needs at least one field")]
    Empty(String),
}

/// A condition compiled to one bit mask of allowed levels per field.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub name: String,
    pub across_customers: bool,
    allowed: [u8; FIELD_COUNT],
}

impl CompiledCondition {
    fn compile(condition: &Condition) -> Result<Self, ConfigError> {
        if condition.when.is_empty() {
            return Err(ConfigError::Empty(condition.name.clone()));
        }
        let mut allowed = [u8::MAX; FIELD_COUNT];
        for (field, levels) in &condition.when {
            let mut mask = 0u8;
            for level in levels {
                let index = field
                    .level_index(level)
                    .ok_or_else(|| ConfigError::UnknownLevel {
                        condition: condition.name.clone(),
                        field: field.name(),
                        level: level.clone(),
                    })?;
                mask |= 1 << index;
            }
            allowed[field.index()] = mask;
        }
        Ok(Self {
            name: condition.name.clone(),
            across_customers: condition.across_customers,
            allowed,
        })
    }

    pub fn holds(&self, comparison: &Comparison) -> bool {
        comparison
            .levels
            .iter()
            .zip(self.allowed)
            .all(|(&level, mask)| mask & (1 << level) != 0)
    }
}

/// Rules and guards ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    pub config: ResolutionConfig,
    pub rules: Vec<CompiledCondition>,
    pub guards: Vec<CompiledCondition>,
}

impl ResolutionConfig {
    /// The configuration shipped with c360.
    pub fn shipped() -> ResolutionConfig {
        Self::from_json(include_str!("../config/resolution.json"))
            .unwrap_or_else(|e| panic!("the shipped resolution config is invalid: {e}"))
    }

    pub fn from_json(text: &str) -> Result<ResolutionConfig, ConfigError> {
        let config: ResolutionConfig = serde_json::from_str(text)?;
        config.clone().compile()?;
        Ok(config)
    }

    pub fn compile(self) -> Result<CompiledConfig, ConfigError> {
        let rules = self
            .rules
            .iter()
            .map(CompiledCondition::compile)
            .collect::<Result<_, _>>()?;
        let guards = self
            .guards
            .iter()
            .map(CompiledCondition::compile)
            .collect::<Result<_, _>>()?;
        Ok(CompiledConfig {
            config: self,
            rules,
            guards,
        })
    }
}

impl CompiledConfig {
    /// The first rule that links this pair.
    pub fn rule(&self, comparison: &Comparison) -> Option<&CompiledCondition> {
        self.rules.iter().find(|r| r.holds(comparison))
    }

    /// The first guard rail that forbids linking this pair.
    pub fn guard(&self, comparison: &Comparison) -> Option<&CompiledCondition> {
        self.guards.iter().find(|g| g.holds(comparison))
    }

    /// The first guard rail that forbids these two records being in one customer.
    pub fn customer_guard(&self, comparison: &Comparison) -> Option<&CompiledCondition> {
        self.guards
            .iter()
            .find(|g| g.across_customers && g.holds(comparison))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{EXACT, MISSING};

    fn comparison(levels: &[(Field, &str)]) -> Comparison {
        let mut c = Comparison {
            levels: [MISSING; FIELD_COUNT],
            names_swapped: false,
        };
        for (field, level) in levels {
            c.levels[field.index()] = field.level_index(level).unwrap();
        }
        c
    }

    #[test]
    fn shipped_rules_and_guards() {
        let config = ResolutionConfig::shipped().compile().unwrap();
        let shared_email = comparison(&[(Field::Email, "exact"), (Field::FirstName, "nickname")]);
        assert_eq!(
            config.rule(&shared_email).unwrap().name,
            "same_email_compatible_first_name"
        );
        let family_email = comparison(&[(Field::Email, "exact"), (Field::FirstName, "different")]);
        assert!(config.rule(&family_email).is_none());
        let anonymous = comparison(&[(Field::DeviceId, "exact")]);
        assert_eq!(config.rule(&anonymous).unwrap().name, "same_device_id");
        // Mary and Mark on one family mailbox are two people: a merely similar first name
        // (fuzzy) is not compatible.
        let similar_names = comparison(&[(Field::Email, "exact"), (Field::FirstName, "fuzzy")]);
        assert!(config.rule(&similar_names).is_none());
        let receipt_by_phone = comparison(&[(Field::Phone, "exact")]);
        assert_eq!(
            config.rule(&receipt_by_phone).unwrap().name,
            "same_phone_anonymous"
        );
        // An anonymous record on a household landline with its own email or device is
        // another member's: no rule, the score decides.
        for own in [Field::Email, Field::DeviceId] {
            let other_members = comparison(&[(Field::Phone, "exact"), (own, "different")]);
            assert!(config.rule(&other_members).is_none(), "{own:?}");
        }
        // The same email or device as well still satisfies the rule itself (earlier rules
        // catch those pairs first, so `config.rule` would not show it).
        let anonymous_phone = config
            .rules
            .iter()
            .find(|r| r.name == "same_phone_anonymous")
            .unwrap();
        for also in [Field::Email, Field::DeviceId] {
            let same_too = comparison(&[(Field::Phone, "exact"), (also, "exact")]);
            assert!(anonymous_phone.holds(&same_too), "{also:?}");
        }
        let named_on_landline = comparison(&[
            (Field::Phone, "exact"),
            (Field::FirstName, "exact"),
            (Field::LastName, "different"),
        ]);
        assert!(config.rule(&named_on_landline).is_none());

        let household = comparison(&[
            (Field::FirstName, "different"),
            (Field::DateOfBirth, "different"),
            (Field::Email, "exact"),
        ]);
        assert_eq!(
            config.guard(&household).unwrap().name,
            "different_first_name_and_birth_date"
        );
        let twins = comparison(&[
            (Field::FirstName, "different"),
            (Field::DateOfBirth, "exact"),
            (Field::LastName, "exact"),
            (Field::Email, "different"),
        ]);
        assert_eq!(config.guard(&twins).unwrap().name, "twins_with_own_email");
        let renamed = comparison(&[
            (Field::FirstName, "different"),
            (Field::DateOfBirth, "exact"),
            (Field::LastName, "exact"),
        ]);
        assert!(
            config.guard(&renamed).is_none(),
            "no conflicting identifier, no veto"
        );
        let same = comparison(&[(Field::FirstName, "exact"), (Field::DateOfBirth, "exact")]);
        assert!(config.guard(&same).is_none());
        assert_eq!(same.level(Field::FirstName), EXACT);
    }

    #[test]
    fn unknown_levels_are_refused() {
        let text = r#"{"rules": [{"name": "x", "when": {"email": ["same"]}}], "guards": [], "max_block_size": 10, "max_customer_records": 10}"#;
        assert!(matches!(
            ResolutionConfig::from_json(text),
            Err(ConfigError::UnknownLevel { .. })
        ));
    }
}
