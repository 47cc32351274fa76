//! Properties of batch resolution that must hold for any input: the partition into customers
//! does not depend on the order of the records, and resolving a set twice gives the same
//! answer.

use std::collections::BTreeSet;

use c360_domain::{Profile, RecordInput};
use c360_matching::{batch, Engine, Features};
use proptest::prelude::*;

const FIRST: [&str; 6] = ["Robert", "Bob", "Maria", "Mary", "Li", "Katherine"];
const LAST: [&str; 4] = ["Smith", "Smyth", "Garcia", "Chen"];
const DOB: [&str; 4] = ["1980-01-02", "1980-02-01", "1975-06-30", "2001-11-11"];
const EMAIL: [&str; 4] = [
    "a@example.com",
    "b@example.com",
    "family@example.com",
    "c@example.org",
];
const ZIP: [&str; 3] = ["10001", "10002", "94105"];

/// A record drawn from small pools, so that records collide on names, dates, emails and ZIPs
/// and every kind of link and guard rail gets exercised.
fn record() -> impl Strategy<Value = RecordInput> {
    (
        proptest::option::of(0..FIRST.len()),
        proptest::option::of(0..LAST.len()),
        proptest::option::of(0..DOB.len()),
        proptest::option::of(0..EMAIL.len()),
        proptest::option::of(0..ZIP.len()),
    )
        .prop_map(|(f, l, d, e, z)| RecordInput {
            first_name: f.map(|i| FIRST[i].to_owned()),
            last_name: l.map(|i| LAST[i].to_owned()),
            date_of_birth: d.map(|i| DOB[i].to_owned()),
            email: e.map(|i| EMAIL[i].to_owned()),
            address_line1: z.map(|_| "12 Main Street".to_owned()),
            postal_code: z.map(|i| ZIP[i].to_owned()),
            ..RecordInput::default()
        })
}

/// The customers as sets of record ids, independent of labels and order.
fn partition(ids: &[usize], customer: &[u32]) -> BTreeSet<BTreeSet<usize>> {
    let mut groups: std::collections::BTreeMap<u32, BTreeSet<usize>> = Default::default();
    for (position, &label) in customer.iter().enumerate() {
        groups.entry(label).or_default().insert(ids[position]);
    }
    groups.into_values().collect()
}

fn features(records: &[RecordInput], order: &[usize]) -> Vec<Features> {
    order
        .iter()
        .map(|&i| {
            let mut input = records[i].clone();
            input.source = Some("src".to_owned());
            input.source_id = Some(format!("r{i}"));
            Features::of(&Profile::parse(&input).expect("valid record"))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn partition_does_not_depend_on_input_order(
        records in proptest::collection::vec(record(), 2..40),
        seed in any::<u64>(),
    ) {
        let engine = Engine::shipped();
        let forward: Vec<usize> = (0..records.len()).collect();
        let mut shuffled = forward.clone();
        // A deterministic shuffle from the seed.
        let mut rng = c360_matching::rng::SplitMix::new(seed);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i + 1));
        }
        let a = batch::resolve(&engine, &features(&records, &forward));
        let b = batch::resolve(&engine, &features(&records, &shuffled));
        prop_assert_eq!(partition(&forward, &a.customer), partition(&shuffled, &b.customer));
    }

    #[test]
    fn resolving_twice_gives_the_same_answer(records in proptest::collection::vec(record(), 2..30)) {
        let engine = Engine::shipped();
        let order: Vec<usize> = (0..records.len()).collect();
        let f = features(&records, &order);
        let first = batch::resolve(&engine, &f);
        let second = batch::resolve(&engine, &f);
        prop_assert_eq!(first.customer, second.customer);
    }
}
