//! The records of a store held in memory by the bulk job that filled it, so that its later
//! chunks find their candidates and the members of the customers they join without reading
//! them back from the database.
//!
//! A chunk of a large upload into a store that has grown to hundreds of thousands of records
//! used to spend a third of its time reading stored records (about 2.5 per new row) and
//! normalizing them again. A job that starts on an empty store knows every record in it: the
//! ones it wrote itself. It keeps their features, filed blocking keys and customers here, and
//! uses them for as long as nothing else has written to the store's graph since its previous
//! chunk: every other write counts itself in the store's graph-write counter
//! ([`crate::store::Database::begin_write`]), and a chunk compares that counter, under the
//! bulk writer lock, with the value after its previous chunk. On any difference (a record
//! ingested or deleted through the API, a manual link, another job) the image is dropped and
//! the job reads candidates from the store again, as before.
//!
//! A chunk takes itself into the image as soon as it is resolved, before it is written, so
//! that the next chunk is resolved while it is written. The image then says so
//! ([`ResidentRecords::take_pending`]): the next chunk writes only once that chunk is stored,
//! and only if the store's graph-write count is then the one the image expects.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use c360_domain::{CustomerId, Profile, RecordKey};
use c360_matching::compare::Field;
use c360_matching::{batch, Features};
use tokio::sync::oneshot;

use crate::resolver::{name_values, StoredNames};

/// One record as the image holds it: what a chunk compares it with and builds golden records
/// from.
#[derive(Debug)]
pub(crate) struct Resident {
    pub(crate) profile: Profile,
    pub(crate) features: Features,
    /// Its blocking keys as [`batch::filed_key`] files them.
    pub(crate) filed: Vec<u64>,
}

/// A stored record at hand in a chunk, with its customer as the store has it now.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) resident: Arc<Resident>,
    pub(crate) customer_id: CustomerId,
    pub(crate) first_seen_at: i64,
    pub(crate) last_changed_at: i64,
}

/// What a chunk changed in the store, for the image: its new records' customers (in chunk
/// order) and the customers it merged, and the store's graph-write count after it.
#[derive(Debug)]
pub(crate) struct ChunkChanges {
    pub(crate) generation: u64,
    /// When the chunk was written: its records' first sight.
    pub(crate) now: i64,
    pub(crate) customers: Vec<CustomerId>,
    /// Each survivor with the customers it absorbed.
    pub(crate) merged: Vec<(CustomerId, Vec<CustomerId>)>,
}

/// Every record of a store, held by the bulk job that wrote them. See the module docs.
#[derive(Debug)]
pub struct ResidentRecords {
    /// The store's graph-write count when the image last matched it.
    generation: u64,
    records: Vec<Arc<Resident>>,
    /// When each record was written (first seen and last changed, for records this job wrote).
    written_at: Vec<i64>,
    customer_of: Vec<u32>,
    customers: Vec<CustomerId>,
    customer_index: HashMap<CustomerId, u32>,
    /// Each customer's records, by customer index; empty once it is absorbed.
    members: Vec<Vec<u32>>,
    /// Records by filed blocking key.
    blocks: HashMap<u64, Vec<u32>>,
    /// Each record's `(source, source_id)` hashed ([`key_hash`]) with its slot, sorted: which
    /// rows of a chunk are stored already, without a query over all its keys (seconds per
    /// chunk) and without a second copy of every key (16 bytes per record).
    by_key: Vec<(u64, u32)>,
    /// How many records hold each name, as the store's name counts would say.
    names: HashMap<(Field, String), u32>,
    /// Most records held: past it the image is dropped, and memory stays bounded.
    limit: usize,
    /// Word that the last chunk taken in is stored, while it is being written.
    pending: Option<oneshot::Receiver<()>>,
    /// Set once a chunk found that the store changed beside the image: whoever holds it then
    /// drops it.
    spoiled: Arc<AtomicBool>,
}

impl ResidentRecords {
    /// The image of an empty store whose graph-write count is `generation`.
    pub(crate) fn of_empty_store(generation: u64, limit: usize) -> Self {
        Self {
            generation,
            records: Vec::new(),
            written_at: Vec::new(),
            customer_of: Vec::new(),
            customers: Vec::new(),
            customer_index: HashMap::new(),
            members: Vec::new(),
            blocks: HashMap::new(),
            by_key: Vec::new(),
            names: HashMap::new(),
            limit,
            pending: None,
            spoiled: Arc::default(),
        }
    }

    /// Whether a chunk found that the store changed beside the image, which then no longer
    /// tells what the store holds.
    pub fn is_spoiled(&self) -> bool {
        self.spoiled.load(Ordering::SeqCst)
    }

    /// What a chunk resolved against the image sets when it finds the store changed beside it.
    pub(crate) fn spoiled_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.spoiled)
    }

    /// Word that the last chunk taken in is stored (an error if its write failed), if it
    /// was taken in before it was written; a chunk resolved against the image waits for it
    /// before it writes.
    pub(crate) fn take_pending(&mut self) -> Option<oneshot::Receiver<()>> {
        self.pending.take()
    }

    /// The stored counts of the names of `features`, and the record total, as the store
    /// holds them once the chunks taken in are stored: the image of a store that was empty
    /// holds every record counted.
    pub(crate) fn names_of(&self, features: &[&Features]) -> StoredNames {
        let mut counts = HashMap::new();
        for (field, value) in features.iter().flat_map(|f| name_values(f)) {
            let key = (field, value.to_owned());
            if counts.contains_key(&key) {
                continue;
            }
            if let Some(&count) = self.names.get(&key) {
                counts.insert(key, f64::from(count));
            }
        }
        StoredNames {
            total: self.records.len() as f64,
            counts,
        }
    }

    /// The store's graph-write count when the image last matched it.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records sharing a blocking key with any of `filed` (per new record), except in blocks
    /// larger than their cap, as [`crate::bulk_load`] reads them from the store; in slot order.
    pub(crate) fn candidates<'a>(
        &self,
        filed: impl IntoIterator<Item = &'a [u64]>,
        caps: (usize, usize),
    ) -> Vec<u32> {
        let mut slots: Vec<u32> = Vec::new();
        for &key in filed.into_iter().flatten() {
            if let Some(block) = self.blocks.get(&key) {
                if block.len() <= batch::block_cap(key, caps.0, caps.1) {
                    slots.extend_from_slice(block);
                }
            }
        }
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// The record `key` as the image holds it (and so as it is stored), if it does.
    pub(crate) fn held_profile(&self, key: &RecordKey) -> Option<&Profile> {
        let hash = key_hash(key.source.as_str(), key.source_id.as_str());
        let from = self.by_key.partition_point(|&(h, _)| h < hash);
        self.by_key[from..]
            .iter()
            .take_while(|&&(h, _)| h == hash)
            .map(|&(_, slot)| &self.records[slot as usize].profile)
            .find(|held| {
                held.source.as_str() == key.source.as_str()
                    && held.source_id.as_str() == key.source_id.as_str()
            })
    }

    /// The record in `slot`, with its customer.
    pub(crate) fn held(&self, slot: u32) -> Held {
        let s = slot as usize;
        Held {
            resident: Arc::clone(&self.records[s]),
            customer_id: self.customers[self.customer_of[s] as usize].clone(),
            first_seen_at: self.written_at[s],
            last_changed_at: self.written_at[s],
        }
    }

    /// The records of a customer, in slot order; none for a customer the image does not know.
    pub(crate) fn members_of(&self, customer: &CustomerId) -> &[u32] {
        self.customer_index
            .get(customer)
            .map_or(&[], |&c| self.members[c as usize].as_slice())
    }

    /// Whether `records` more stay within the image's limit.
    pub(crate) fn has_room_for(&self, records: usize) -> bool {
        self.records.len() + records <= self.limit
    }

    /// Takes in a chunk: its new records, in chunk order, and what it changed. With
    /// `pending`, the chunk is not stored yet, and the receiver hears when it is. Returns
    /// `None` when the image would grow past its limit.
    pub(crate) fn admit(
        mut self,
        new: &[Arc<Resident>],
        changes: ChunkChanges,
        pending: Option<oneshot::Receiver<()>>,
    ) -> Option<Self> {
        if !self.has_room_for(new.len()) {
            return None;
        }
        self.pending = pending;
        for (survivor, absorbed) in changes.merged {
            let to = self.customer(survivor);
            for id in absorbed {
                let Some(&from) = self.customer_index.get(&id) else {
                    continue;
                };
                let moved = std::mem::take(&mut self.members[from as usize]);
                for &slot in &moved {
                    self.customer_of[slot as usize] = to;
                }
                self.members[to as usize].extend(moved);
            }
            self.members[to as usize].sort_unstable();
        }
        for (resident, customer) in new.iter().zip(changes.customers) {
            let slot = self.records.len() as u32;
            let c = self.customer(customer);
            for &key in &resident.filed {
                self.blocks.entry(key).or_default().push(slot);
            }
            let profile = &resident.profile;
            let hash = key_hash(profile.source.as_str(), profile.source_id.as_str());
            self.by_key.push((hash, slot));
            for (field, value) in name_values(&resident.features) {
                *self.names.entry((field, value.to_owned())).or_default() += 1;
            }
            self.records.push(Arc::clone(resident));
            self.written_at.push(changes.now);
            self.customer_of.push(c);
            self.members[c as usize].push(slot);
        }
        self.by_key.sort_unstable();
        self.generation = changes.generation;
        Some(self)
    }

    /// The index of customer `id`, added if new.
    fn customer(&mut self, id: CustomerId) -> u32 {
        if let Some(&c) = self.customer_index.get(&id) {
            return c;
        }
        let c = self.customers.len() as u32;
        self.customers.push(id.clone());
        self.customer_index.insert(id, c);
        self.members.push(Vec::new());
        c
    }
}

/// A record's `(source, source_id)` as [`ResidentRecords`] looks it up: from the profile's
/// fields, so that holding a million records builds no key of each.
fn key_hash(source: &str, source_id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    source_id.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_matching::blocking;

    fn resident(source_id: &str, first: &str, last: &str, email: &str) -> Arc<Resident> {
        let input = serde_json::json!({
            "source": "crm", "source_id": source_id, "first_name": first, "last_name": last,
            "email": email,
        });
        let profile = Profile::parse(&serde_json::from_value(input).unwrap()).unwrap();
        let features = Features::of(&profile);
        let filed = batch::filed_keys(&blocking::keys(&features));
        Arc::new(Resident {
            profile,
            features,
            filed,
        })
    }

    fn customer(n: u8) -> CustomerId {
        CustomerId::parse(&format!("cus_{n:032x}")).unwrap()
    }

    #[test]
    fn a_chunk_finds_the_records_sharing_its_keys_and_merges_move_members() {
        let image = ResidentRecords::of_empty_store(7, 10);
        let (a, b) = (
            resident("1", "Ann", "Lee", "ann@example.com"),
            resident("2", "Bo", "Ng", "bo@example.com"),
        );
        let probe = [b.filed.as_slice()];
        let image = image
            .admit(
                &[a, Arc::clone(&b)],
                ChunkChanges {
                    now: 5,
                    generation: 8,
                    customers: vec![customer(1), customer(2)],
                    merged: vec![],
                },
                None,
            )
            .unwrap();
        assert_eq!(image.generation(), 8);
        assert_eq!(image.candidates(probe, (200, 50)), vec![1]);
        let held = image.held(1);
        assert_eq!(held.customer_id, customer(2));
        assert_eq!((held.first_seen_at, held.last_changed_at), (5, 5));
        let held = |source: &str, id: &str| {
            image
                .held_profile(&RecordKey::parse(source, id).unwrap())
                .map(|p| p.source_id.as_str().to_owned())
        };
        assert_eq!(held("crm", "1").as_deref(), Some("1"));
        assert_eq!(held("crm", "2").as_deref(), Some("2"));
        assert_eq!(held("crm", "3"), None);
        assert_eq!(held("pos", "1"), None);

        let c = resident("3", "Ann", "Lee", "ann@example.com");
        let (stored, pending) = oneshot::channel();
        let mut image = image
            .admit(
                &[c],
                ChunkChanges {
                    now: 6,
                    generation: 9,
                    customers: vec![customer(1)],
                    merged: vec![(customer(1), vec![customer(2)])],
                },
                Some(pending),
            )
            .unwrap();
        assert_eq!(image.members_of(&customer(1)), &[0, 1, 2]);
        assert!(image.members_of(&customer(2)).is_empty());
        assert_eq!(image.held(1).customer_id, customer(1));
        assert_eq!(image.held(2).first_seen_at, 6);
        let mut pending = image
            .take_pending()
            .expect("the last chunk is not stored yet");
        assert!(image.take_pending().is_none());
        assert!(pending.try_recv().is_err());
        stored.send(()).unwrap();
        assert!(pending.try_recv().is_ok());
    }

    #[test]
    fn name_counts_are_those_of_the_records_held() {
        let image = ResidentRecords::of_empty_store(0, 10);
        let held = [
            resident("1", "Ann", "Lee", "ann@example.com"),
            resident("2", "Ann", "Ng", "ann.ng@example.com"),
            resident("3", "Bo", "Lee", "bo@example.com"),
        ];
        let changes = ChunkChanges {
            now: 1,
            generation: 1,
            customers: vec![customer(1), customer(2), customer(3)],
            merged: vec![],
        };
        let image = image.admit(&held, changes, None).unwrap();
        let probe = resident("4", "Ann", "Kim", "kim@example.com");
        let names = image.names_of(&[&probe.features]);
        assert_eq!(names.total, 3.0);
        let count = |field, value: &str| names.counts.get(&(field, value.to_owned())).copied();
        assert_eq!(count(Field::FirstName, "ann"), Some(2.0));
        assert_eq!(
            count(Field::LastName, "kim"),
            None,
            "a name no record holds"
        );
        assert_eq!(
            count(Field::LastName, "lee"),
            None,
            "a name the probe does not hold"
        );
        assert!(!image.is_spoiled());
        image.spoiled_flag().store(true, Ordering::SeqCst);
        assert!(image.is_spoiled());
    }

    #[test]
    fn blocks_over_their_cap_give_no_candidates_and_the_limit_drops_the_image() {
        let image = ResidentRecords::of_empty_store(0, 3);
        let same: Vec<Arc<Resident>> = (0..3)
            .map(|i| resident(&i.to_string(), "Ann", "Lee", "family@example.com"))
            .collect();
        let probe = [same[0].filed.as_slice()];
        let image = image
            .admit(
                &same,
                ChunkChanges {
                    now: 1,
                    generation: 1,
                    customers: vec![customer(1), customer(2), customer(3)],
                    merged: vec![],
                },
                None,
            )
            .unwrap();
        assert_eq!(image.candidates(probe, (200, 50)), vec![0, 1, 2]);
        assert!(image.candidates(probe, (2, 2)).is_empty());
        let more = vec![resident("9", "Bo", "Ng", "bo@example.com")];
        let changes = ChunkChanges {
            now: 2,
            generation: 2,
            customers: vec![customer(4)],
            merged: vec![],
        };
        assert!(image.admit(&more, changes, None).is_none());
    }
}
