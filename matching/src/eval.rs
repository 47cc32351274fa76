//! Pairwise evaluation against ground truth: precision and recall over the pairs of records
//! placed in the same customer, as record-linkage papers and Splink report them.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairwiseMetrics {
    pub predicted_pairs: u64,
    pub true_pairs: u64,
    pub true_positives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub predicted_clusters: usize,
    pub true_clusters: usize,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn cluster_sizes<K: Hash + Eq>(labels: impl Iterator<Item = K>) -> HashMap<K, u64> {
    let mut sizes = HashMap::new();
    for label in labels {
        *sizes.entry(label).or_default() += 1;
    }
    sizes
}

/// Compares a predicted clustering with the true one; `predicted[i]` and `truth[i]` label the
/// same record.
pub fn pairwise<P: Hash + Eq + Clone, T: Hash + Eq + Clone>(
    predicted: &[P],
    truth: &[T],
) -> PairwiseMetrics {
    assert_eq!(
        predicted.len(),
        truth.len(),
        "one label per record on each side"
    );
    let predicted_sizes = cluster_sizes(predicted.iter().cloned());
    let true_sizes = cluster_sizes(truth.iter().cloned());
    let both = cluster_sizes(predicted.iter().cloned().zip(truth.iter().cloned()));
    let predicted_pairs: u64 = predicted_sizes.values().map(|&n| pairs(n)).sum();
    let true_pairs: u64 = true_sizes.values().map(|&n| pairs(n)).sum();
    let true_positives: u64 = both.values().map(|&n| pairs(n)).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let precision = ratio(true_positives, predicted_pairs);
    let recall = ratio(true_positives, true_pairs);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    PairwiseMetrics {
        predicted_pairs,
        true_pairs,
        true_positives,
        precision,
        recall,
        f1,
        predicted_clusters: predicted_sizes.len(),
        true_clusters: true_sizes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pairs() {
        // truth: {0,1,2} {3}; predicted: {0,1} {2,3}
        let m = pairwise(&[0, 0, 2, 2], &["a", "a", "a", "b"]);
        assert_eq!(
            (m.predicted_pairs, m.true_pairs, m.true_positives),
            (2, 3, 1)
        );
        assert!((m.precision - 0.5).abs() < 1e-12);
        assert!((m.recall - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!((m.predicted_clusters, m.true_clusters), (2, 2));
        let perfect = pairwise(&[1, 1, 2], &[5, 5, 6]);
        assert_eq!(perfect.f1, 1.0);
    }
}
