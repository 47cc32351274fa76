//! The offline commands: `resolve`, `train`, `eval` over record files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use c360_domain::Profile;
use c360_matching::batch::{self, BatchResult};
use c360_matching::eval::{pairwise, PairwiseMetrics};
use c360_matching::model::Model;
use c360_matching::rules::ResolutionConfig;
use c360_matching::train::{train, TrainOptions};
use c360_matching::{Engine, Features};
use c360_services::input;
use clap::Args;

/// Where the engine's model and configuration come from.
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// A model file written by `c360 train` (default: the shipped model).
    #[arg(long, env = "C360_MODEL")]
    pub model: Option<PathBuf>,
    /// A resolution config with rules and guard rails (default: the shipped one).
    #[arg(long, env = "C360_RESOLUTION_CONFIG")]
    pub config: Option<PathBuf>,
}

impl EngineArgs {
    pub fn model(&self) -> anyhow::Result<Model> {
        match &self.model {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Model::from_json(&text).with_context(|| format!("model {}", path.display()))
            }
            None => Ok(Model::shipped()),
        }
    }

    pub fn engine(&self) -> anyhow::Result<Engine> {
        let config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                ResolutionConfig::from_json(&text)
                    .with_context(|| format!("resolution config {}", path.display()))?
            }
            None => ResolutionConfig::shipped(),
        };
        Ok(Engine::new(self.model()?, config)?)
    }
}

/// The parsed records of a file, parsed leniently (a value that does not parse is kept raw and
/// left out of matching); rows without a valid `source`/`source_id` are reported on stderr and
/// skipped.
pub fn load_profiles(path: &Path) -> anyhow::Result<Vec<Profile>> {
    let rows = input::read_file(path)?;
    let mut profiles = Vec::with_capacity(rows.len());
    let mut rejected = 0;
    let mut flagged = 0;
    for row in rows {
        match row.map(|input| Profile::parse_lenient(&input)) {
            Ok(Ok(profile)) => {
                flagged += usize::from(!profile.invalid.is_empty());
                profiles.push(profile);
            }
            Ok(Err(errors)) => {
                rejected += 1;
                if rejected <= 10 {
                    eprintln!("rejected a record: {errors}");
                }
            }
            Err(e) => {
                rejected += 1;
                if rejected <= 10 {
                    eprintln!("rejected a row: {e}");
                }
            }
        }
    }
    eprintln!(
        "{} records read, {flagged} with values that did not parse (kept raw, not matched on), {rejected} rows rejected",
        profiles.len()
    );
    Ok(profiles)
}

pub fn features_of(profiles: &[Profile]) -> Vec<Features> {
    batch::parallel_map(profiles, Features::of)
}

/// A record's true person and, when the truth file has a fourth column, its hard-negative
/// group (the household: records of other persons in it must stay apart).
struct Truth {
    person: String,
    group: Option<String>,
}

/// `source,source_id -> person[,group]` from a truth file.
fn load_truth(path: &Path) -> anyhow::Result<HashMap<(String, String), Truth>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut truth = HashMap::new();
    for row in reader.records() {
        let row = row?;
        let (Some(source), Some(id), Some(person)) = (row.get(0), row.get(1), row.get(2)) else {
            bail!("{}: expected source,source_id,person_id", path.display());
        };
        let group = row.get(3).filter(|g| !g.is_empty()).map(str::to_owned);
        truth.insert(
            (source.to_ascii_lowercase(), id.to_owned()),
            Truth {
                person: person.to_owned(),
                group,
            },
        );
    }
    Ok(truth)
}

/// Of the record pairs that share a hard-negative group but are different persons, how many
/// were kept apart.
fn hard_negatives(predicted: &[u32], persons: &[String], groups: &[Option<String>]) -> (u64, u64) {
    let negatives = pairs_sharing(groups, |i, j| {
        groups[i].is_some() && persons[i] != persons[j]
    });
    let apart = negatives
        .iter()
        .filter(|&&(i, j)| predicted[i] != predicted[j])
        .count();
    (apart as u64, negatives.len() as u64)
}

/// The pairs of records (by index, smaller first, sorted) that share a label and satisfy
/// `keep`.
fn pairs_sharing<L: std::hash::Hash + Eq>(
    labels: &[L],
    keep: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut by_label: HashMap<&L, Vec<usize>> = HashMap::new();
    for (i, label) in labels.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let mut pairs = Vec::new();
    for members in by_label.values() {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                if keep(i, j) {
                    pairs.push((i.min(j), i.max(j)));
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs
}

/// Writes `c360 gen` output: the records, and the truth with hard-negative groups.
pub fn generate(records: usize, seed: u64, output: &Path, truth: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let generated = c360_services::synth::generate(records, seed);
    let mut writer =
        csv::Writer::from_path(output).with_context(|| format!("writing {}", output.display()))?;
    writer.write_record(input::CSV_COLUMNS)?;
    for r in &generated {
        let i = &r.input;
        let cells = [
            &i.source,
            &i.source_id,
            &i.first_name,
            &i.middle_name,
            &i.last_name,
            &i.email,
            &i.phone,
            &i.date_of_birth,
            &i.address_line1,
            &i.address_line2,
            &i.city,
            &i.state,
            &i.postal_code,
            &i.country,
            &i.loyalty_id,
            &i.device_id,
            &i.cookie_id,
            &i.updated_at,
        ];
        writer.write_record(cells.iter().map(|c| c.as_deref().unwrap_or("")))?;
    }
    writer.flush()?;
    let mut writer =
        csv::Writer::from_path(truth).with_context(|| format!("writing {}", truth.display()))?;
    writer.write_record(["source", "source_id", "person_id", "hard_negative_group"])?;
    for r in &generated {
        writer.write_record([
            r.input.source.as_deref().unwrap_or(""),
            r.input.source_id.as_deref().unwrap_or(""),
            &r.person_id,
            &r.hard_negative_group,
        ])?;
    }
    writer.flush()?;
    eprintln!(
        "{} records written to {} and their truth to {} in {:.1}s",
        generated.len(),
        output.display(),
        truth.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn print_batch_stats(result: &BatchResult, seconds: f64) {
    let s = &result.stats;
    eprintln!(
        "{} records in {:.2}s ({:.0} records/s): {} keys ({} oversized, skipped), {} candidate pairs ({:.1} per record), {} links, {} vetoed by guard rails, {} for review, {} customers ({} incoherent)",
        s.records,
        seconds,
        s.records as f64 / seconds.max(1e-9),
        s.distinct_keys,
        s.oversized_keys,
        s.candidate_pairs,
        s.candidate_pairs as f64 / (s.records.max(1)) as f64,
        s.matched_pairs,
        s.vetoed_links,
        s.review_pairs,
        s.customers,
        s.incoherent_customers
    );
}

/// Prints up to `limit` true pairs the resolution missed and wrong pairs it made, with how each
/// compared: the material for tuning blocking, levels and thresholds.
fn show_errors(
    engine: &Engine,
    profiles: &[Profile],
    features: &[Features],
    predicted: &[u32],
    truth: &[String],
    limit: usize,
) {
    use c360_matching::compare::{Field, MISSING};
    use c360_matching::model::UnknownPopulation;
    let describe = |i: usize, j: usize| {
        let d = engine.decide(&features[i], &features[j], &UnknownPopulation);
        let levels: Vec<String> = Field::ALL
            .into_iter()
            .filter(|f| d.comparison.level(*f) != MISSING)
            .map(|f| format!("{}={}", f.name(), f.level_name(d.comparison.level(f))))
            .collect();
        let (ki, kj) = (
            c360_matching::blocking::keys(&features[i]),
            c360_matching::blocking::keys(&features[j]),
        );
        let shared = ki.iter().any(|k| kj.contains(k));
        format!(
            "{} ~ {}: p={:.4} w={:.1} rule={:?} guard={:?} blocked_together={shared} [{}]",
            profiles[i].key(),
            profiles[j].key(),
            d.score.probability,
            d.score.weight,
            d.rule,
            d.guard,
            levels.join(" ")
        )
    };
    let missed = pairs_sharing(truth, |i, j| predicted[i] != predicted[j]);
    eprintln!("-- {} missed true pairs; the first {limit}:", missed.len());
    for &(i, j) in missed.iter().take(limit) {
        eprintln!("{}", describe(i, j));
    }
    let wrong = pairs_sharing(predicted, |i, j| truth[i] != truth[j]);
    eprintln!("-- {} wrong pairs; the first {limit}:", wrong.len());
    for &(i, j) in wrong.iter().take(limit) {
        eprintln!("{}", describe(i, j));
    }
}

/// Resolves a file and scores the result against ground truth.
pub fn eval(
    input: &Path,
    truth: &Path,
    engine_args: &EngineArgs,
    show: usize,
) -> anyhow::Result<PairwiseMetrics> {
    let engine = engine_args.engine()?;
    let profiles = load_profiles(input)?;
    let truth = load_truth(truth)?;
    let started = Instant::now();
    let features = features_of(&profiles);
    let result = batch::resolve(&engine, &features);
    print_batch_stats(&result, started.elapsed().as_secs_f64());
    let mut labels = Vec::with_capacity(profiles.len());
    let mut groups = Vec::with_capacity(profiles.len());
    for p in &profiles {
        let key = (p.source.to_string(), p.source_id.to_string());
        let known = truth
            .get(&key)
            .with_context(|| format!("no truth for record {}/{}", key.0, key.1))?;
        labels.push(known.person.clone());
        groups.push(known.group.clone());
    }
    let metrics = pairwise(&result.customer, &labels);
    if groups.iter().any(Option::is_some) {
        let (apart, total) = hard_negatives(&result.customer, &labels, &groups);
        println!(
            "hard negatives (different persons of one household): {apart} of {total} pairs kept apart ({:.4})",
            apart as f64 / total.max(1) as f64
        );
    }
    if show > 0 {
        show_errors(
            &engine,
            &profiles,
            &features,
            &result.customer,
            &labels,
            show,
        );
    }
    println!(
        "precision {:.4}  recall {:.4}  F1 {:.4}  (pairs: predicted {}, true {}, correct {}; clusters: predicted {}, true {})",
        metrics.precision,
        metrics.recall,
        metrics.f1,
        metrics.predicted_pairs,
        metrics.true_pairs,
        metrics.true_positives,
        metrics.predicted_clusters,
        metrics.true_clusters
    );
    Ok(metrics)
}

/// Estimates a model from a file and writes it.
pub fn train_model(input: &Path, output: &Path, engine: &EngineArgs) -> anyhow::Result<()> {
    let base = engine.model()?;
    let profiles = load_profiles(input)?;
    let started = Instant::now();
    let features = features_of(&profiles);
    let config = ResolutionConfig::shipped();
    let options = TrainOptions {
        max_block_size: config.max_block_size,
        max_fuzzy_block_size: config.max_fuzzy_block_size,
        ..TrainOptions::default()
    };
    let (model, report) = train(&base, &features, &options);
    std::fs::write(output, model.to_json() + "\n")
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "trained on {} records in {:.1}s: u from {} random pairs, m by EM over {} candidate pairs ({} iterations, {:.1}% estimated matches), prior {:.3e}; written to {}",
        report.records,
        started.elapsed().as_secs_f64(),
        report.random_pairs,
        report.candidate_pairs,
        report.iterations,
        report.candidate_match_share * 100.0,
        model.prior,
        output.display()
    );
    Ok(())
}

/// Progress of a long command: a bar with rate and ETA on a terminal, a plain line every few
/// seconds otherwise (logs, CI).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    started: Instant,
    last_line: Instant,
    done: u64,
}

impl Progress {
    pub fn new(label: &'static str, total: Option<u64>) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}"
            } else {
                "{msg} {spinner} {pos} {per_sec}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        Self {
            bar,
            label,
            started: Instant::now(),
            last_line: Instant::now(),
            done: 0,
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_line.elapsed().as_secs() >= 5 => {
                self.last_line = Instant::now();
                let seconds = self.started.elapsed().as_secs_f64();
                eprintln!(
                    "{}: {} ({:.0}/s)",
                    self.label,
                    self.done,
                    self.done as f64 / seconds.max(1e-9)
                );
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "{}: {} in {seconds:.1}s ({:.0}/s)",
            self.label,
            self.done,
            self.done as f64 / seconds.max(1e-9)
        );
    }
}

/// A customer id for a batch result, derived from the customer's smallest record key, so that
/// the same input always yields the same ids.
pub fn batch_customer_id(anchor: &str) -> c360_domain::CustomerId {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut hasher);
        anchor.hash(&mut hasher);
        hasher.finish()
    };
    c360_domain::CustomerId::from_uuid_simple(&format!("{:016x}{:016x}", half(1), half(2)))
}

/// Records read from a file and ready to resolve.
pub struct LoadedRecords {
    pub keys: Vec<(String, String)>,
    pub features: Vec<Features>,
    pub rejected: u64,
}

/// Streams a record file into features, parsing and normalizing on all cores, chunk by chunk,
/// so that only the features stay in memory.
pub fn load_features(path: &Path) -> anyhow::Result<LoadedRecords> {
    const CHUNK: usize = 50_000;
    let mut progress = Progress::new("read", None);
    let mut loaded = LoadedRecords {
        keys: Vec::new(),
        features: Vec::new(),
        rejected: 0,
    };
    let mut chunk: Vec<c360_domain::RecordInput> = Vec::with_capacity(CHUNK);
    let flush = |chunk: &mut Vec<c360_domain::RecordInput>, loaded: &mut LoadedRecords| {
        let parsed = batch::parallel_map(chunk, |input| {
            Profile::parse_lenient(input).map(|p| {
                (
                    (p.source.to_string(), p.source_id.to_string()),
                    Features::of(&p),
                )
            })
        });
        for result in parsed {
            match result {
                Ok((key, features)) => {
                    loaded.keys.push(key);
                    loaded.features.push(features);
                }
                Err(errors) => {
                    loaded.rejected += 1;
                    if loaded.rejected <= 10 {
                        eprintln!("rejected a record: {errors}");
                    }
                }
            }
        }
        chunk.clear();
    };
    input::stream_file(path, |row| {
        progress.advance(1);
        match row {
            Ok(input) => {
                chunk.push(input);
                if chunk.len() == CHUNK {
                    flush(&mut chunk, &mut loaded);
                }
            }
            Err(e) => {
                loaded.rejected += 1;
                if loaded.rejected <= 10 {
                    eprintln!("rejected a row: {e}");
                }
            }
        }
    })?;
    flush(&mut chunk, &mut loaded);
    progress.finish();
    if loaded.rejected > 0 {
        eprintln!("{} rows rejected (first ten above)", loaded.rejected);
    }
    Ok(loaded)
}

/// `c360 resolve --store`: resolves a file into the store in chunks (as a bulk upload does),
/// then writes every record's stored customer id.
pub async fn resolve_into_store(
    input: &Path,
    output: &Path,
    engine: &EngineArgs,
    db: c360_services::Database,
    views: &crate::config::CustomerViewArgs,
) -> anyhow::Result<()> {
    use c360_services::jobs::ChunkRows;
    let started = Instant::now();
    let resolver = c360_services::Resolver::new(db, engine.engine()?);
    // Each chunk is published to a DynamoDB customer view before the next one is read.
    let resolver = crate::server::attach_view_store(resolver, views).await?;
    let (sender, mut rows) = tokio::sync::mpsc::channel(4096);
    let path = input.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        input::stream_file(&path, |row| {
            let _ = sender.blocking_send(row);
        })
    });
    let mut progress = Progress::new("store", None);
    let (mut keys, mut rejected) = (Vec::new(), 0u64);
    let mut chunk: Vec<Profile> = Vec::new();
    // Chunks grow with the store, as a bulk upload's do.
    let stored_before = resolver.stored_records().await?;
    loop {
        let row = rows.recv().await;
        let ended = row.is_none();
        match row {
            Some(Ok(record)) => match Profile::parse(&record) {
                Ok(profile) => chunk.push(profile),
                Err(errors) => {
                    rejected += 1;
                    if rejected <= 10 {
                        eprintln!("rejected a record: {errors}");
                    }
                }
            },
            Some(Err(e)) => {
                rejected += 1;
                if rejected <= 10 {
                    eprintln!("rejected a row: {e}");
                }
            }
            None => {}
        }
        let chunk_rows = ChunkRows::default().with_stored(stored_before + keys.len() as u64);
        if chunk.len() >= chunk_rows || (ended && !chunk.is_empty()) {
            resolver.ingest_batch(&chunk).await?;
            keys.extend(chunk.iter().map(Profile::key));
            progress.advance(chunk.len() as u64);
            chunk.clear();
        }
        if ended {
            break;
        }
    }
    reader.await??;
    progress.finish();

    let mut writer = csv::WriterBuilder::new()
        .buffer_capacity(1 << 20)
        .from_path(output)
        .with_context(|| format!("writing {}", output.display()))?;
    writer.write_record(["source", "source_id", "customer_id"])?;
    let stored: HashMap<String, String> = {
        let mut map = HashMap::with_capacity(keys.len());
        let mut after: Option<(String, String)> = None;
        loop {
            let page = resolver.assignments_after(after.as_ref(), 10_000).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.source.clone(), last.source_id.clone()));
            for a in page {
                map.insert(format!("{}/{}", a.source, a.source_id), a.customer_id);
            }
        }
        map
    };
    for key in &keys {
        if let Some(customer) = stored.get(&format!("{}/{}", key.source, key.source_id)) {
            writer.write_record([key.source.as_str(), key.source_id.as_str(), customer])?;
        }
    }
    writer.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "stored {} records ({rejected} rejected) in {seconds:.1}s ({:.0} records/s); wrote {}",
        keys.len(),
        keys.len() as f64 / seconds.max(1e-9),
        output.display()
    );
    Ok(())
}

/// One line of a manual-links file.
#[derive(Debug, serde::Deserialize)]
struct ManualLinkRow {
    kind: String,
    a_source: String,
    a_source_id: String,
    b_source: String,
    b_source_id: String,
}

/// Reads manual links (the `GET /v1/exports/manual-links` CSV) as record-index pairs. A link
/// naming a record the input does not hold is skipped and counted: the input may be a part
/// of what the service stores.
pub fn load_manual_links(
    path: &Path,
    keys: &[(String, String)],
) -> anyhow::Result<batch::ManualOverrides> {
    let index: HashMap<(&str, &str), u32> = keys
        .iter()
        .enumerate()
        .map(|(i, (s, id))| ((s.as_str(), id.as_str()), i as u32))
        .collect();
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut overrides = batch::ManualOverrides::default();
    let mut elsewhere = 0;
    for (n, row) in reader.deserialize::<ManualLinkRow>().enumerate() {
        // Line numbers count the header as line 1.
        let line = n + 2;
        let row = row.with_context(|| format!("{}, line {line}", path.display()))?;
        let pair = index
            .get(&(row.a_source.as_str(), row.a_source_id.as_str()))
            .zip(index.get(&(row.b_source.as_str(), row.b_source_id.as_str())));
        let target = match c360_domain::ManualLinkKind::from_name(&row.kind) {
            Some(c360_domain::ManualLinkKind::MustLink) => &mut overrides.must,
            Some(c360_domain::ManualLinkKind::CannotLink) => &mut overrides.cannot,
            None => anyhow::bail!(
                "{}, line {line}: column `kind`: `{}` is neither must_link nor cannot_link",
                path.display(),
                row.kind
            ),
        };
        match pair {
            Some((&a, &b)) => target.push((a, b)),
            None => elsewhere += 1,
        }
    }
    eprintln!(
        "manual links: {} must_link, {} cannot_link; {elsewhere} name records not in the input (skipped)",
        overrides.must.len(),
        overrides.cannot.len()
    );
    Ok(overrides)
}

/// Reports customers that hold two records a guard rail says are different people (made so by
/// a must-link), and must-links a cannot-link refused.
fn print_incoherent(result: &BatchResult, keys: &[(String, String)]) {
    let s = &result.stats;
    if s.must_links + s.must_links_refused > 0 {
        eprintln!(
            "{} must-links applied, {} refused (a cannot-link keeps their customers apart)",
            s.must_links, s.must_links_refused
        );
    }
    if s.incoherent_customers == 0 {
        return;
    }
    eprintln!(
        "{} customers hold records a guard rail says are different people; the first ones:",
        s.incoherent_customers
    );
    let key = |i: u32| {
        let (source, id) = &keys[i as usize];
        format!("{source}/{id}")
    };
    for (a, b, guard) in result.incoherent.iter().take(10) {
        eprintln!("  {} and {}: {guard}", key(*a), key(*b));
    }
}

/// `c360 resolve`: resolves a whole file in memory on all cores and writes
/// `source,source_id,customer_id` for every record.
pub fn resolve(
    input: &Path,
    output: &Path,
    links: Option<&Path>,
    engine: &EngineArgs,
) -> anyhow::Result<()> {
    let engine = engine.engine()?;
    let started = Instant::now();
    let loaded = load_features(input)?;
    let overrides = match links {
        Some(path) => load_manual_links(path, &loaded.keys)?,
        None => batch::ManualOverrides::default(),
    };
    let resolving = Instant::now();
    let result = batch::resolve_with(&engine, &loaded.features, &overrides);
    print_batch_stats(&result, resolving.elapsed().as_secs_f64());
    print_incoherent(&result, &loaded.keys);
    let mut writer = csv::WriterBuilder::new()
        .buffer_capacity(1 << 20)
        .from_path(output)
        .with_context(|| format!("writing {}", output.display()))?;
    writer.write_record(["source", "source_id", "customer_id"])?;
    let mut ids: HashMap<u32, String> = HashMap::new();
    let mut progress = Progress::new("write", Some(loaded.keys.len() as u64));
    for (i, (source, source_id)) in loaded.keys.iter().enumerate() {
        let anchor = result.customer[i];
        let id = ids.entry(anchor).or_insert_with(|| {
            let (s, sid) = &loaded.keys[anchor as usize];
            batch_customer_id(&format!("{s}/{sid}")).to_string()
        });
        writer.write_record([source.as_str(), source_id.as_str(), id.as_str()])?;
        progress.advance(1);
    }
    writer.flush()?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "resolved {} records into {} customers in {seconds:.1}s ({:.0} records/s end to end); wrote {}",
        loaded.keys.len(),
        result.stats.customers,
        loaded.keys.len() as f64 / seconds.max(1e-9),
        output.display()
    );
    Ok(())
}

/// `c360 customer-view rebuild`: rewrites the whole DynamoDB customer view from the SQL
/// records and graph, then deletes what SQL does not account for.
pub async fn rebuild_customer_view(resolver: &c360_services::Resolver) -> anyhow::Result<()> {
    let progress = std::cell::RefCell::new(None::<Progress>);
    let started = Instant::now();
    let report = resolver
        .rebuild_views(
            |total| *progress.borrow_mut() = Some(Progress::new("rebuild", Some(total))),
            |done| {
                if let Some(p) = progress.borrow_mut().as_mut() {
                    p.advance(done - p.done);
                }
            },
        )
        .await?;
    if let Some(p) = progress.into_inner() {
        p.finish();
    }
    eprintln!(
        "customer view rebuilt in {:.1}s: {} customers read from SQL, {} written, {} leftover items deleted",
        started.elapsed().as_secs_f64(),
        report.customers,
        report.written,
        report.deleted_items
    );
    Ok(())
}

/// `c360 customer-view check`: compares the DynamoDB customer view with SQL. Fails when they
/// differ.
pub async fn check_customer_view(resolver: &c360_services::Resolver) -> anyhow::Result<()> {
    let check = resolver.check_views().await?;
    println!("{}", serde_json::to_string_pretty(&check)?);
    if !check.is_consistent() {
        anyhow::bail!("the customer view differs from SQL (see above); `c360 customer-view rebuild` repairs it");
    }
    Ok(())
}
