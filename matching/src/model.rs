//! Fellegi-Sunter match model: for each field and comparison level, the probability `m` of that
//! level among true matches and `u` among non-matches. A pair's match weight is
//! `log2(prior / (1 - prior)) + sum(log2(m / u))` over its fields' levels (missing weighs 0),
//! with a term-frequency adjustment on exact name agreement (a shared rare surname says more
//! than a shared "Smith"); the weight turns into a probability `2^w / (1 + 2^w)`.
//!
//! Models are versioned JSON files (`c360 train` writes them); the default one ships with c360.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, Field, EXACT, FIELD_COUNT, MISSING};
use crate::features::Features;

pub const MODEL_FORMAT: &str = "c360-model/1";

/// The probabilities of one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelParams {
    pub m: f64,
    pub u: f64,
}

/// Term-frequency adjustment settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermFrequencySettings {
    /// Fields whose exact agreement is weighed by how common the shared value is.
    pub fields: Vec<Field>,
    /// Bounds of the adjustment, in bits, so that one value never decides alone.
    pub min_adjustment: f64,
    pub max_adjustment: f64,
}

/// A model as stored in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Probability that two records drawn at random are the same person, used when the number
    /// of records is unknown.
    pub prior: f64,
    /// How many other records of the same person a record has, on average: with `n` records
    /// the prior is `duplicates_per_record / (n - 1)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates_per_record: Option<f64>,
    /// Pairs at or above this probability are linked.
    pub match_probability: f64,
    /// Pairs at or above this probability, but below `match_probability`, go to review.
    pub review_probability: f64,
    pub term_frequency: TermFrequencySettings,
    /// field -> level -> m, u. Levels not listed weigh nothing.
    pub fields: BTreeMap<Field, BTreeMap<String, LevelParams>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a model file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported model format {0:?} (expected {MODEL_FORMAT})")]
    Format(String),
    #[error("field {field}: unknown level {level:?}")]
    UnknownLevel { field: &'static str, level: String },
    #[error("field {field}, level {level}: m and u must be in (0, 1]")]
    Probability { field: &'static str, level: String },
    #[error("{0} must be in (0, 1)")]
    Threshold(&'static str),
}

/// What is known of the records being resolved: how many there are (the prior of a match
/// shrinks as they grow: a random pair of a million records matches less often than one of a
/// thousand) and how common each name is (for the term-frequency adjustment).
pub trait Population {
    /// How many records there are, if known.
    fn size(&self) -> Option<f64> {
        None
    }
    /// The share of records whose `field` has `value`, if known.
    fn frequency(&self, field: Field, value: &str) -> Option<f64>;
}

/// Nothing known: the model's own prior, no term-frequency adjustment.
pub struct UnknownPopulation;

impl Population for UnknownPopulation {
    fn frequency(&self, _: Field, _: &str) -> Option<f64> {
        None
    }
}

/// What a score is made of, field by field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Total match weight in bits, prior included.
    pub weight: f64,
    pub probability: f64,
    /// Each field's contribution in bits (term-frequency adjustment included).
    pub contributions: [f64; FIELD_COUNT],
}

/// A model ready to score: weights precomputed per field and level.
#[derive(Debug, Clone)]
pub struct CompiledModel {
    pub model: Model,
    prior_weight: f64,
    weights: [[f64; 8]; FIELD_COUNT],
    exact_u: [f64; FIELD_COUNT],
    tf_field: [bool; FIELD_COUNT],
}

impl Model {
    /// The model shipped with c360, tuned for US customer data.
    pub fn shipped() -> Model {
        Self::from_json(include_str!("../models/default.json"))
            .unwrap_or_else(|e| panic!("the shipped model is invalid: {e}"))
    }

    pub fn from_json(text: &str) -> Result<Model, ModelError> {
        let model: Model = serde_json::from_str(text)?;
        model.validate()?;
        Ok(model)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), ModelError> {
        if self.format != MODEL_FORMAT {
            return Err(ModelError::Format(self.format.clone()));
        }
        let unit = |p: f64| p > 0.0 && p < 1.0;
        if !unit(self.prior) {
            return Err(ModelError::Threshold("prior"));
        }
        if !unit(self.match_probability) {
            return Err(ModelError::Threshold("match_probability"));
        }
        if !unit(self.review_probability) || self.review_probability > self.match_probability {
            return Err(ModelError::Threshold("review_probability"));
        }
        for (field, levels) in &self.fields {
            for (level, p) in levels {
                if field.level_index(level).is_none_or(|i| i == MISSING) {
                    return Err(ModelError::UnknownLevel {
                        field: field.name(),
                        level: level.clone(),
                    });
                }
                if !(p.m > 0.0 && p.m <= 1.0 && p.u > 0.0 && p.u <= 1.0) {
                    return Err(ModelError::Probability {
                        field: field.name(),
                        level: level.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn compile(self) -> CompiledModel {
        let mut weights = [[0.0; 8]; FIELD_COUNT];
        let mut exact_u = [1.0; FIELD_COUNT];
        let mut tf_field = [false; FIELD_COUNT];
        for (field, levels) in &self.fields {
            for (level, p) in levels {
                if let Some(i) = field.level_index(level) {
                    weights[field.index()][i as usize] = (p.m / p.u).log2();
                    if i == EXACT {
                        exact_u[field.index()] = p.u;
                    }
                }
            }
        }
        // Models trained before `same_postal_code` existed counted it as `same_area`.
        let address = self.fields.get(&Field::Address);
        let level = |name| Field::Address.level_index(name).map(usize::from);
        if let (Some(postal), Some(area)) = (level("same_postal_code"), level("same_area")) {
            if address.is_some_and(|levels| !levels.contains_key("same_postal_code")) {
                let row = &mut weights[Field::Address.index()];
                row[postal] = row[area];
            }
        }
        for field in &self.term_frequency.fields {
            tf_field[field.index()] = true;
        }
        CompiledModel {
            prior_weight: (self.prior / (1.0 - self.prior)).log2(),
            model: self,
            weights,
            exact_u,
            tf_field,
        }
    }
}

/// The value two records agree on exactly, for the term-frequency look-up.
fn agreed_value(field: Field, a: &Features) -> Option<&str> {
    match field {
        Field::FirstName => a.first.as_ref().map(|n| n.text.as_str()),
        Field::LastName => a.last.as_ref().map(|n| n.text.as_str()),
        _ => None,
    }
}

pub fn probability(weight: f64) -> f64 {
    let odds = weight.exp2();
    if odds.is_infinite() {
        1.0
    } else {
        odds / (1.0 + odds)
    }
}

impl CompiledModel {
    pub fn prior_weight(&self) -> f64 {
        self.prior_weight
    }

    pub fn level_weight(&self, field: Field, level: u8) -> f64 {
        self.weights[field.index()][level as usize]
    }

    /// Scores a compared pair; `a` supplies the agreed values for term frequencies.
    /// The prior weight for a population: from its size when both it and the model's
    /// duplicate rate are known, else the model's fixed prior.
    pub fn prior_weight_for(&self, population: &dyn Population) -> f64 {
        match (population.size(), self.model.duplicates_per_record) {
            (Some(n), Some(rate)) if n > 1.0 && rate > 0.0 => {
                let prior = (rate / (n - 1.0)).clamp(1e-12, 0.5);
                (prior / (1.0 - prior)).log2()
            }
            _ => self.prior_weight,
        }
    }

    pub fn score(&self, comparison: &Comparison, a: &Features, tf: &dyn Population) -> Score {
        let mut contributions = [0.0; FIELD_COUNT];
        let mut weight = self.prior_weight_for(tf);
        for field in Field::ALL {
            let level = comparison.level(field);
            if level == MISSING {
                continue;
            }
            let mut w = self.weights[field.index()][level as usize];
            if level == EXACT && self.tf_field[field.index()] && !comparison.names_swapped {
                if let Some(freq) = agreed_value(field, a).and_then(|v| tf.frequency(field, v)) {
                    let settings = &self.model.term_frequency;
                    let adjustment = (self.exact_u[field.index()] / freq.max(1e-9)).log2();
                    w += adjustment.clamp(settings.min_adjustment, settings.max_adjustment);
                }
            }
            contributions[field.index()] = w;
            weight += w;
        }
        Score {
            weight,
            probability: probability(weight),
            contributions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_model_loads_and_round_trips() {
        let model = Model::shipped();
        assert_eq!(Model::from_json(&model.to_json()).unwrap(), model);
        assert!(model.match_probability > model.review_probability);
    }

    #[test]
    fn invalid_models_are_refused() {
        let mut model = Model::shipped();
        model.format = "other".into();
        assert!(matches!(
            Model::from_json(&model.to_json()),
            Err(ModelError::Format(_))
        ));
        let mut model = Model::shipped();
        model
            .fields
            .get_mut(&Field::FirstName)
            .unwrap()
            .insert("nonsense".into(), LevelParams { m: 0.5, u: 0.5 });
        assert!(matches!(
            Model::from_json(&model.to_json()),
            Err(ModelError::UnknownLevel { .. })
        ));
    }

    #[test]
    fn a_model_without_the_postal_code_level_weighs_it_as_the_same_area() {
        let level = |name| Field::Address.level_index(name).unwrap();
        let shipped = Model::shipped();
        let compiled = shipped.clone().compile();
        // The shipped model tells a shared ZIP from a shared city.
        assert!(
            compiled.level_weight(Field::Address, level("same_postal_code"))
                > compiled.level_weight(Field::Address, level("same_area")) + 3.0
        );
        let mut older = shipped;
        older
            .fields
            .get_mut(&Field::Address)
            .unwrap()
            .remove("same_postal_code");
        let older = Model::from_json(&older.to_json()).unwrap().compile();
        assert_eq!(
            older.level_weight(Field::Address, level("same_postal_code")),
            older.level_weight(Field::Address, level("same_area"))
        );
        assert_ne!(older.level_weight(Field::Address, level("same_area")), 0.0);
    }

    #[test]
    fn weights_add_up_and_rare_names_weigh_more() {
        let model = Model::shipped().compile();
        let exact_u = model.model.fields[&Field::LastName]["exact"].u;
        // "smith" is four times as common as the average agreeing surname, "quixote" rare.
        struct Freq(f64);
        impl Population for Freq {
            fn frequency(&self, _: Field, value: &str) -> Option<f64> {
                Some(if value == "smith" {
                    self.0 * 4.0
                } else {
                    self.0 / 100.0
                })
            }
        }
        let mut comparison = Comparison {
            levels: [MISSING; FIELD_COUNT],
            names_swapped: false,
        };
        comparison.levels[Field::LastName.index()] = EXACT;
        let features = |last: &str| Features {
            last: crate::features::NameFeature::new(last, false),
            ..Features::default()
        };
        let plain = model.score(&comparison, &features("smith"), &UnknownPopulation);
        let common = model.score(&comparison, &features("smith"), &Freq(exact_u));
        let rare = model.score(&comparison, &features("quixote"), &Freq(exact_u));
        assert!(common.weight < plain.weight && plain.weight < rare.weight);
        let expected = model.prior_weight() + model.level_weight(Field::LastName, EXACT);
        assert!((plain.weight - expected).abs() < 1e-9);
        assert!((0.0..=1.0).contains(&plain.probability));
    }
}
