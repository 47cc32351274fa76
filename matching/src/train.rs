//! Estimating a model from unlabelled data, as Splink does: `u` (level frequencies among
//! non-matches) from random record pairs, which are almost all non-matches; `m` (among matches)
//! by expectation-maximisation over the blocked candidate pairs, where matches are common.

use std::collections::{BTreeMap, HashMap};

use crate::batch::{candidate_pairs, parallel_map};
use crate::compare::{compare, Field, FIELD_COUNT, MISSING};
use crate::features::Features;
use crate::model::{LevelParams, Model};
use crate::rng::SplitMix;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Random pairs drawn to estimate `u`.
    pub u_sample_pairs: usize,
    pub max_iterations: usize,
    pub seed: u64,
    pub max_block_size: usize,
    pub max_fuzzy_block_size: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            u_sample_pairs: 2_000_000,
            max_iterations: 50,
            seed: 42,
            max_block_size: 200,
            max_fuzzy_block_size: 50,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub records: usize,
    pub random_pairs: usize,
    pub candidate_pairs: usize,
    pub iterations: usize,
    /// Share of candidate pairs estimated to be matches.
    pub candidate_match_share: f64,
}

type Pattern = [u8; FIELD_COUNT];

/// Level counts per field over a set of comparison patterns, weighted.
fn level_shares(patterns: &[(Pattern, f64)]) -> [[f64; 8]; FIELD_COUNT] {
    let mut counts = [[0.0; 8]; FIELD_COUNT];
    for (pattern, weight) in patterns {
        for (f, &level) in pattern.iter().enumerate() {
            if level != MISSING {
                counts[f][level as usize] += weight;
            }
        }
    }
    for field in &mut counts {
        let total: f64 = field.iter().sum();
        // Laplace smoothing keeps every level possible, so no weight is infinite.
        let levels = field.iter().skip(1).count() as f64;
        for c in field.iter_mut().skip(1) {
            *c = (*c + 0.5) / (total + 0.5 * levels);
        }
    }
    counts
}

/// Estimates a model from `features`, keeping `base`'s thresholds and settings.
pub fn train(base: &Model, features: &[Features], options: &TrainOptions) -> (Model, TrainReport) {
    let n = features.len();
    let mut rng = SplitMix::new(options.seed);
    let random: Vec<(usize, usize)> = if n < 2 {
        Vec::new()
    } else {
        (0..options.u_sample_pairs)
            .map(|_| {
                let i = rng.below(n);
                let mut j = rng.below(n - 1);
                if j >= i {
                    j += 1;
                }
                (i, j)
            })
            .collect()
    };
    let random_patterns: Vec<(Pattern, f64)> = parallel_map(&random, |&(i, j)| {
        (compare(&features[i], &features[j]).levels, 1.0)
    });
    let u = level_shares(&random_patterns);

    let (pairs, _, _) = candidate_pairs(
        features,
        options.max_block_size,
        options.max_fuzzy_block_size,
    );
    let mut grouped: HashMap<Pattern, f64> = HashMap::new();
    for levels in parallel_map(&pairs, |&(i, j)| {
        compare(&features[i as usize], &features[j as usize]).levels
    }) {
        *grouped.entry(levels).or_default() += 1.0;
    }
    let patterns: Vec<(Pattern, f64)> = grouped.into_iter().collect();

    // Start from the base model's m and the blocked pairs' own level shares as u.
    let mut m = [[0.0; 8]; FIELD_COUNT];
    for field in Field::ALL {
        for (level, p) in base.fields.get(&field).into_iter().flatten() {
            if let Some(i) = field.level_index(level) {
                m[field.index()][i as usize] = p.m;
            }
        }
    }
    let mut u_blocked = level_shares(&patterns);
    let mut lambda = 0.1;
    let mut iterations = 0;
    for _ in 0..options.max_iterations {
        iterations += 1;
        let mut matched = Vec::with_capacity(patterns.len());
        let mut unmatched = Vec::with_capacity(patterns.len());
        let mut expected_matches = 0.0;
        let mut total = 0.0;
        for (pattern, count) in &patterns {
            let (mut pm, mut pu) = (lambda, 1.0 - lambda);
            for (f, &level) in pattern.iter().enumerate() {
                if level != MISSING {
                    pm *= m[f][level as usize].max(1e-12);
                    pu *= u_blocked[f][level as usize].max(1e-12);
                }
            }
            let p = pm / (pm + pu);
            matched.push((*pattern, p * count));
            unmatched.push((*pattern, (1.0 - p) * count));
            expected_matches += p * count;
            total += count;
        }
        let new_m = level_shares(&matched);
        let change = new_m
            .iter()
            .flatten()
            .zip(m.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        m = new_m;
        u_blocked = level_shares(&unmatched);
        lambda = (expected_matches / total.max(1.0)).clamp(1e-9, 1.0 - 1e-9);
        if change < 1e-6 {
            break;
        }
    }

    let mut model = base.clone();
    let mut fields = BTreeMap::new();
    for field in Field::ALL {
        let mut levels = BTreeMap::new();
        for (i, name) in field.levels().iter().enumerate().skip(1) {
            levels.insert(
                (*name).to_owned(),
                LevelParams {
                    m: m[field.index()][i].clamp(1e-6, 1.0),
                    u: u[field.index()][i].clamp(1e-9, 1.0),
                },
            );
        }
        fields.insert(field, levels);
    }
    model.fields = fields;
    let all_pairs = (n as f64) * (n as f64 - 1.0) / 2.0;
    let expected_matches = lambda * pairs.len() as f64;
    model.prior = (expected_matches / all_pairs.max(1.0)).clamp(1e-12, 0.5);
    model.duplicates_per_record = Some(2.0 * expected_matches / (n.max(1) as f64));
    model.version = format!("trained-{n}-records");
    model.description = format!(
        "Trained by c360 train on {n} records: u from {} random pairs, m by EM over {} candidate pairs.",
        random.len(),
        pairs.len()
    );
    let report = TrainReport {
        records: n,
        random_pairs: random.len(),
        candidate_pairs: pairs.len(),
        iterations,
        candidate_match_share: lambda,
    };
    (model, report)
}
