//! Batch resolution of a whole set of records in memory: block, compare and score the
//! candidate pairs on all cores, then link accepted pairs strongest first into customers,
//! with the guard rails checked across whole customers, not just the linking pair.
//!
//! The result depends only on the set of records, never on their order: pairs are linked in
//! the order of (rule first, weight descending, record indices), and records are indexed in
//! the caller's order only to name them.

use std::collections::{HashMap, HashSet};

use crate::compare::Field;
use crate::features::Features;
use crate::graph::GuardedClusters;
use crate::model::Population;
use crate::{blocking, Engine, Verdict};

/// Value frequencies of first and last names over a set of records.
#[derive(Debug, Default, Clone)]
pub struct FrequencyTable {
    total: f64,
    counts: HashMap<(Field, String), u32>,
}

impl FrequencyTable {
    pub fn from_features(features: &[Features]) -> Self {
        let mut table = Self {
            total: features.len() as f64,
            counts: HashMap::new(),
        };
        for f in features {
            table.add(f);
        }
        table
    }

    fn add(&mut self, f: &Features) {
        if let Some(n) = &f.first {
            *self
                .counts
                .entry((Field::FirstName, n.text.clone()))
                .or_default() += 1;
        }
        if let Some(n) = &f.last {
            *self
                .counts
                .entry((Field::LastName, n.text.clone()))
                .or_default() += 1;
        }
    }
}

impl Population for FrequencyTable {
    fn size(&self) -> Option<f64> {
        Some(self.total)
    }

    fn frequency(&self, field: Field, value: &str) -> Option<f64> {
        if self.total < 1000.0 {
            // Too few records for frequencies to mean anything.
            return None;
        }
        self.counts
            .get(&(field, value.to_owned()))
            .map(|&c| f64::from(c) / self.total)
    }
}

/// Figures of one batch run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub records: usize,
    pub distinct_keys: usize,
    /// Keys shared by more records than `max_block_size`: skipped, not compared all-to-all.
    pub oversized_keys: usize,
    pub candidate_pairs: usize,
    pub matched_pairs: usize,
    pub review_pairs: usize,
    /// Links refused because a guard rail fired across the two customers.
    pub vetoed_links: usize,
    pub customers: usize,
    /// Customers larger than `max_customer_records`.
    pub oversized_customers: usize,
    /// Customers holding two records a guard rail says are different people (see
    /// [`Engine::incoherence`]); with the engine alone none arise, a must-link can make one.
    pub incoherent_customers: usize,
    /// Manual must-links applied, and those refused because a cannot-link keeps their
    /// customers apart.
    pub must_links: usize,
    pub must_links_refused: usize,
}

/// Decisions people made, by record index: `must` pairs are joined before the engine runs
/// (guard rails do not apply, as with `POST /v1/links` in the service); no customer may hold
/// both records of a `cannot` pair, which wins over a must-link.
#[derive(Debug, Clone, Default)]
pub struct ManualOverrides {
    pub must: Vec<(u32, u32)>,
    pub cannot: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
pub struct BatchResult {
    /// For each record, its customer: the smallest record index in the customer.
    pub customer: Vec<u32>,
    /// Pairs in the review band (and pairs a guard rail held back), with their probability.
    pub reviews: Vec<(u32, u32, f64)>,
    /// Per incoherent customer, the first two of its records a guard rail says are two
    /// people, and the guard's name.
    pub incoherent: Vec<(u32, u32, String)>,
    pub stats: BatchStats,
}

/// The top bit of a filed key says whether it is an exact identifier (capped by
/// `max_block`) rather than a fuzzy key (capped by `max_fuzzy_block`).
const IDENTIFIER: u64 = 1 << 63;

/// A blocking key as pairing files it: a 63-bit hash of the key, and in the top bit whether
/// it is an exact identifier. Eight bytes instead of the key's text, for indexes held in memory
/// and for the stored index, which files each record under these numbers (as `i64`, the same
/// bits); two keys sharing a hash only add candidate pairs, which scoring then decides.
///
/// Stored, so its value must never change: the hash is spelled out here ([`stable_hash`])
/// rather than taken from `std`, whose `DefaultHasher` may change between Rust releases.
pub fn filed_key(key: &str) -> u64 {
    let kind = if blocking::is_identifier_key(key) {
        IDENTIFIER
    } else {
        0
    };
    (stable_hash(key.as_bytes()) & !IDENTIFIER) | kind
}

/// 64-bit FNV-1a of `bytes`, its bits then mixed by MurmurHash3's finalizer: FNV-1a alone
/// spreads the short, similar keys of the index (`dob:1987-03-02`, `dob:1987-03-12`) poorly
/// over the high bits. Fixed by this code, not by a library or compiler version.
fn stable_hash(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = bytes.iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Each of the keys as [`filed_key`] files it.
pub fn filed_keys(keys: &[String]) -> Vec<u64> {
    keys.iter().map(|k| filed_key(k)).collect()
}

/// Whether a key filed by [`filed_key`] is an exact identifier.
pub fn is_filed_identifier(filed: u64) -> bool {
    filed & IDENTIFIER != 0
}

/// The block-size cap of a key filed by [`filed_key`].
pub fn block_cap(filed: u64, max_block: usize, max_fuzzy_block: usize) -> usize {
    if is_filed_identifier(filed) {
        max_block
    } else {
        max_fuzzy_block
    }
}

/// All pairs of records that share at least one blocking key, each once, as `(i, j)` with
/// `i < j`. Identifier keys shared by more than `max_block` records, and fuzzy keys (names,
/// dates, addresses) shared by more than `max_fuzzy_block`, are skipped and counted.
pub fn candidate_pairs(
    features: &[Features],
    max_block: usize,
    max_fuzzy_block: usize,
) -> (Vec<(u32, u32)>, usize, usize) {
    let keys = parallel_map(features, |f| filed_keys(&blocking::keys(f)));
    let keys: Vec<&[u64]> = keys.iter().map(Vec::as_slice).collect();
    candidate_pairs_of_first(&keys, keys.len(), max_block, max_fuzzy_block)
}

/// [`candidate_pairs`] of records given by their filed blocking keys ([`filed_keys`]), with
/// at least one of the first `first` records: a bulk chunk's new records come first (their
/// keys filed once, when the chunk was prepared), then the stored records they share keys
/// with, and pairs of two stored records (decided when they were stored, and often the most
/// numerous) are never made.
pub fn candidate_pairs_of_first(
    keys: &[&[u64]],
    first: usize,
    max_block: usize,
    max_fuzzy_block: usize,
) -> (Vec<(u32, u32)>, usize, usize) {
    let mut filed: Vec<(u64, u32)> = Vec::with_capacity(keys.len() * 8);
    for (i, keys) in keys.iter().enumerate() {
        filed.extend(keys.iter().map(|&k| (k, i as u32)));
    }
    filed.sort_unstable();
    filed.dedup();

    let mut pairs: Vec<u64> = Vec::new();
    let (mut distinct, mut oversized) = (0, 0);
    for block in filed.chunk_by(|a, b| a.0 == b.0) {
        distinct += 1;
        if block.len() > block_cap(block[0].0, max_block, max_fuzzy_block) {
            oversized += 1;
            continue;
        }
        // In index order within the block: once `i` is past the first records, so is every
        // record after it.
        for (x, &(_, i)) in block.iter().enumerate() {
            if i as usize >= first {
                break;
            }
            for &(_, j) in &block[x + 1..] {
                pairs.push((u64::from(i) << 32) | u64::from(j));
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    let pairs = pairs
        .into_iter()
        .map(|p| ((p >> 32) as u32, p as u32))
        .collect();
    (pairs, distinct, oversized)
}

/// How many pairs ahead of the one being scored its records' features are fetched, and half
/// that for their values (see [`Features::prefetch`]).
const PREFETCH_AHEAD: usize = 16;

/// Prefetches the features of the pairs [`PREFETCH_AHEAD`] after `pairs[at]`, and the values
/// of those half as far ahead: called before each pair of a scoring loop.
#[inline]
pub fn prefetch_pairs<'a>(pairs: &[(u32, u32)], at: usize, features: impl Fn(u32) -> &'a Features) {
    if let Some(&(i, j)) = pairs.get(at + PREFETCH_AHEAD) {
        features(i).prefetch();
        features(j).prefetch();
    }
    if let Some(&(i, j)) = pairs.get(at + PREFETCH_AHEAD / 2) {
        features(i).prefetch_values();
        features(j).prefetch_values();
    }
}

/// Runs `a` on a thread of its own while `b` runs on this one, and returns both results.
pub fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let a = scope.spawn(a);
        let b = b();
        (a.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), b)
    })
}

std::thread_local! {
    /// Set while [`on_this_thread`] runs: work meant to stay off the other cores.
    static ON_THIS_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every [`parallel_map`] in it on the calling thread alone: for work done
/// beside a thread that must keep its core (a database's writer), which would otherwise
/// share both cores with it.
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    /// Clears the flag however `f` ends.
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_THIS_THREAD.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(ON_THIS_THREAD.with(|flag| flag.replace(true)));
    f()
}

/// Runs `f` over `items` on every core, keeping the order of results (on the calling thread
/// alone inside [`on_this_thread`]).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = if ON_THIS_THREAD.with(std::cell::Cell::get) {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                scope.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Resolves a set of records into customers.
pub fn resolve(engine: &Engine, features: &[Features]) -> BatchResult {
    resolve_with(engine, features, &ManualOverrides::default())
}

/// Resolves a set of records into customers, honoring decisions people made.
pub fn resolve_with(
    engine: &Engine,
    features: &[Features],
    overrides: &ManualOverrides,
) -> BatchResult {
    let config = engine.config();
    let (pairs, distinct_keys, oversized_keys) =
        candidate_pairs(features, config.max_block_size, config.max_fuzzy_block_size);
    let tf = FrequencyTable::from_features(features);

    // Only what linking needs is kept of each decision: a million records make tens of
    // millions of candidate pairs, and a full decision per pair would not fit in memory.
    enum Outcome {
        Link { priority: f64, names: bool },
        Review { probability: f64 },
    }
    let decide = |&(i, j): &(u32, u32)| {
        let d = engine.decide(&features[i as usize], &features[j as usize], &tf);
        let outcome = match d.verdict {
            Verdict::NonMatch => return None,
            Verdict::Match => Outcome::Link {
                priority: d.link_priority(),
                names: d.comparison.level(Field::FirstName) != crate::compare::MISSING,
            },
            Verdict::Review => Outcome::Review {
                probability: d.score.probability,
            },
        };
        Some((i, j, outcome))
    };
    // Chunks of pairs spread over the cores; each returns only the pairs that matter.
    let chunks: Vec<&[(u32, u32)]> = pairs.chunks(1 << 16).collect();
    let kept: Vec<Vec<(u32, u32, Outcome)>> = parallel_map(&chunks, |chunk| {
        chunk
            .iter()
            .enumerate()
            .filter_map(|(at, pair)| {
                prefetch_pairs(chunk, at, |i| &features[i as usize]);
                decide(pair)
            })
            .collect()
    });

    let mut links: Vec<(f64, u32, u32, bool)> = Vec::new();
    let mut reviews = Vec::new();
    for (i, j, outcome) in kept.into_iter().flatten() {
        match outcome {
            Outcome::Link { priority, names } => links.push((priority, i, j, names)),
            Outcome::Review { probability } => reviews.push((i, j, probability)),
        }
    }
    // Strongest first; ties by the records' keys, never by their positions in the input.
    let names = |i: u32, j: u32| {
        let (a, b) = (&features[i as usize].key, &features[j as usize].key);
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    };
    links.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| names(a.1, a.2).cmp(&names(b.1, b.2)))
    });

    let never: HashSet<(u32, u32)> = overrides.cannot_pairs_both_ways().collect();
    let forbidden = |a: usize, b: usize| never.contains(&(a as u32, b as u32));
    let mut clusters = GuardedClusters::new(features.len());
    let (mut must_links, mut must_links_refused) = (0, 0);
    let mut must = overrides.must.clone();
    // In the order of the records' keys, so that the input order cannot matter.
    must.sort_by(|a, b| names(a.0, a.1).cmp(&names(b.0, b.1)));
    for &(i, j) in &must {
        match clusters.union_unless(i as usize, j as usize, forbidden) {
            Ok(()) => must_links += 1,
            Err(_) => must_links_refused += 1,
        }
    }
    let mut vetoed = 0;
    for &(_, i, j, names) in &links {
        let merged = clusters.union_unless(i as usize, j as usize, |a, b| {
            forbidden(a, b) || engine.conflict(&features[a], &features[b], names).is_some()
        });
        if merged.is_err() {
            vetoed += 1;
            reviews.push((i, j, 1.0));
        }
    }
    let customer = clusters.labels();
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    for (record, &c) in customer.iter().enumerate() {
        members.entry(c).or_default().push(record as u32);
    }
    let sizes: HashMap<u32, usize> = members.iter().map(|(&c, m)| (c, m.len())).collect();
    // With the engine alone no customer holds two people (every merge was checked across
    // both sides); a must-link, or a customer past the guard-check limit, can make one.
    let mut groups: Vec<&Vec<u32>> = members.values().filter(|m| m.len() > 1).collect();
    groups.sort_unstable_by_key(|m| m[0]);
    let incoherent: Vec<(u32, u32, String)> = parallel_map(&groups, |records| {
        let of: Vec<&Features> = records.iter().map(|&r| &features[r as usize]).collect();
        engine
            .incoherence(&of)
            .map(|x| (records[x.first], records[x.second], x.guard))
    })
    .into_iter()
    .flatten()
    .collect();
    BatchResult {
        stats: BatchStats {
            records: features.len(),
            distinct_keys,
            oversized_keys,
            candidate_pairs: pairs.len(),
            matched_pairs: links.len(),
            review_pairs: reviews.len(),
            vetoed_links: vetoed,
            customers: sizes.len(),
            oversized_customers: sizes
                .values()
                .filter(|&&s| s > config.max_customer_records)
                .count(),
            incoherent_customers: incoherent.len(),
            must_links,
            must_links_refused,
        },
        customer,
        reviews,
        incoherent,
    }
}

impl ManualOverrides {
    /// Both orders of every cannot-link pair.
    fn cannot_pairs_both_ways(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.cannot.iter().flat_map(|&(a, b)| [(a, b), (b, a)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::{Profile, RecordInput};

    /// The stored index holds these numbers: they must come out the same on every build.
    /// (Expected values computed apart from this code, from FNV-1a's and the finalizer's
    /// published constants.)
    #[test]
    fn filed_keys_are_the_same_on_every_build() {
        assert_eq!(stable_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(stable_hash(b"dob:1987-03-02"), 0x40c1_bdd0_672f_5161);
        assert_eq!(filed_key("dob:1987-03-02"), 0x40c1_bdd0_672f_5161);
        let email = blocking::identifier_key(c360_domain::IdentifierKind::Email, "ann@example.com");
        let filed = filed_key(&email);
        assert_eq!(filed & IDENTIFIER, IDENTIFIER, "an identifier key");
        assert_eq!(
            filed & !IDENTIFIER,
            stable_hash(email.as_bytes()) & !IDENTIFIER
        );
        assert_ne!(filed_key("dob:1987-03-02"), filed_key("dob:1987-03-12"));
    }

    fn features(rows: &[serde_json::Value]) -> Vec<Features> {
        rows.iter()
            .map(|r| {
                Features::of(
                    &Profile::parse(&serde_json::from_value::<RecordInput>(r.clone()).unwrap())
                        .unwrap(),
                )
            })
            .collect()
    }

    fn people() -> Vec<serde_json::Value> {
        use serde_json::json;
        vec![
            json!({"source": "crm", "source_id": "1", "first_name": "Robert", "last_name": "Smith", "date_of_birth": "1980-01-02", "address_line1": "1 Elm St", "postal_code": "10001"}),
            json!({"source": "web", "source_id": "2", "first_name": "Bob", "last_name": "Smith", "date_of_birth": "1980-01-02", "email": "bob@example.com"}),
            json!({"source": "pos", "source_id": "3", "first_name": "Bobby", "last_name": "Smith", "email": "bob@example.com", "phone": "2125550100"}),
            json!({"source": "crm", "source_id": "4", "first_name": "Jane", "last_name": "Smith", "date_of_birth": "1982-05-06", "address_line1": "1 Elm St", "postal_code": "10001", "phone": "2125550100"}),
            json!({"source": "crm", "source_id": "5", "first_name": "Alice", "last_name": "Jones", "date_of_birth": "1990-09-09", "address_line1": "9 Oak Ave", "postal_code": "94105"}),
        ]
    }

    #[test]
    fn pairs_of_the_first_records_are_all_pairs_that_touch_them() {
        let features = features(&people());
        let (all, distinct, oversized) = candidate_pairs(&features, 200, 50);
        assert!(all.len() >= 4, "{all:?}");
        let keys: Vec<Vec<u64>> = features
            .iter()
            .map(|f| filed_keys(&blocking::keys(f)))
            .collect();
        let keys: Vec<&[u64]> = keys.iter().map(Vec::as_slice).collect();
        for first in 0..=features.len() {
            let touching: Vec<(u32, u32)> = all
                .iter()
                .copied()
                .filter(|&(i, _)| (i as usize) < first)
                .collect();
            let of_first = candidate_pairs_of_first(&keys, first, 200, 50);
            assert_eq!(of_first, (touching, distinct, oversized), "first {first}");
        }
    }

    #[test]
    fn resolves_people_and_keeps_household_members_apart() {
        let result = resolve(&Engine::shipped(), &features(&people()));
        let c = &result.customer;
        assert_eq!(c[0], c[1], "same DOB and nickname");
        assert_eq!(c[1], c[2], "same email, compatible name");
        assert_ne!(
            c[3], c[0],
            "Jane shares address and phone, but is another person"
        );
        assert_ne!(c[4], c[0]);
        assert_eq!(result.stats.customers, 3);
    }

    #[test]
    fn result_does_not_depend_on_input_order() {
        let rows = people();
        let forward = resolve(&Engine::shipped(), &features(&rows));
        let mut reversed_rows = rows.clone();
        reversed_rows.reverse();
        let backward = resolve(&Engine::shipped(), &features(&reversed_rows));
        let n = rows.len();
        for i in 0..n {
            for j in 0..n {
                let same_forward = forward.customer[i] == forward.customer[j];
                let same_backward = backward.customer[n - 1 - i] == backward.customer[n - 1 - j];
                assert_eq!(same_forward, same_backward, "records {i} and {j}");
            }
        }
    }

    #[test]
    fn manual_links_override_the_engine() {
        let engine = Engine::shipped();
        let records = features(&people());
        let plain = resolve(&engine, &records);
        assert_eq!(plain.stats.incoherent_customers, 0);

        // A person says Alice (4) is Robert (0), and that Bob (1) is not Bobby (2).
        let overrides = ManualOverrides {
            must: vec![(4, 0)],
            cannot: vec![(1, 2)],
        };
        let result = resolve_with(&engine, &records, &overrides);
        let c = &result.customer;
        assert_eq!(c[4], c[0], "must-link joins what the engine keeps apart");
        assert_ne!(c[1], c[2], "cannot-link splits what the engine joins");
        assert!(c[0] == c[1] || c[0] == c[2], "the rest still links");
        assert_eq!(result.stats.must_links, 1);
        assert_eq!(result.stats.incoherent_customers, 1);
        let (a, b, guard) = &result.incoherent[0];
        assert_eq!(c[*a as usize], c[0]);
        assert_eq!(c[*b as usize], c[0]);
        assert_eq!(guard, "different_first_name_and_birth_date");

        // A cannot-link wins over a must-link between the same customers.
        let conflicting = ManualOverrides {
            must: vec![(4, 0)],
            cannot: vec![(0, 4)],
        };
        let result = resolve_with(&engine, &records, &conflicting);
        assert_ne!(result.customer[4], result.customer[0]);
        assert_eq!(result.stats.must_links_refused, 1);
        assert_eq!(result.stats.incoherent_customers, 0);
    }

    #[test]
    fn parallel_map_stays_on_the_calling_thread_inside_on_this_thread() {
        let items: Vec<u32> = (0..64).collect();
        let caller = std::thread::current().id();
        let threads = on_this_thread(|| parallel_map(&items, |_| std::thread::current().id()));
        assert!(threads.iter().all(|&id| id == caller));
        let doubled = on_this_thread(|| parallel_map(&items, |i| i * 2));
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        // The flag ends with the call: outside it, the work spreads over the cores again.
        let outside = parallel_map(&items, |_| std::thread::current().id());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(outside.iter().any(|&id| id != caller), cores > 1);
    }
}
