//! Figures for the enrichment pieces (`c360 bench-enrichment`): index load time and memory,
//! point-in-polygon lookups per second on one core (DC, and a synthetic index the size of all
//! US block groups), offline geocodes per second, and what enrichment adds to one ingest.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use c360_domain::{Profile, RecordInput};
use c360_matching::rng::SplitMix;
use geo::{LineString, MultiPolygon, Polygon};

use super::census::{BlockGroupArea, CensusIndex};
use super::{accuracy, data, load_census, load_offline_geocoder, Enricher};
use crate::store::Database;
use crate::Resolver;

/// Resident memory of this process in bytes (Linux), for before/after differences.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The memory and point-in-polygon lines of a census index's figures.
fn index_figures(
    out: &mut String,
    rss: Option<(u64, u64)>,
    rate: f64,
    hit: f64,
) -> std::fmt::Result {
    writeln!(
        out,
        "  memory (RSS growth)            {}",
        mib(rss.map(|(after, before)| after.saturating_sub(before)))
    )?;
    writeln!(
        out,
        "  PIP lookups, one core          {rate:.0}/s ({:.1}% of points inside)",
        hit * 100.0
    )
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("n/a".to_owned(), |b| {
        format!("{:.1} MiB", b as f64 / 1_048_576.0)
    })
}

/// `count` polygons of `vertices` vertices each, on a grid over the continental US extent,
/// each a slightly irregular ring inside its cell: the shape of a national block-group file.
pub fn synthetic_areas(count: usize, vertices: usize, seed: u64) -> Vec<BlockGroupArea> {
    let mut rng = SplitMix::new(seed);
    let columns = (count as f64 * 2.0).sqrt().ceil() as usize;
    let rows = count.div_ceil(columns);
    let (west, east, south, north) = (-124.7, -66.9, 24.5, 49.4);
    let (width, height) = (
        (east - west) / columns as f64,
        (north - south) / rows as f64,
    );
    (0..count)
        .map(|i| {
            let (cx, cy) = (
                west + width * ((i % columns) as f64 + 0.5),
                south + height * ((i / columns) as f64 + 0.5),
            );
            let mut ring: Vec<(f64, f64)> = (0..vertices)
                .map(|v| {
                    let angle = std::f64::consts::TAU * v as f64 / vertices as f64;
                    let r = 0.38 + 0.1 * rng.float();
                    (cx + r * width * angle.cos(), cy + r * height * angle.sin())
                })
                .collect();
            ring.push(ring[0]);
            BlockGroupArea {
                geoid: format!("{:012}", i),
                shape: MultiPolygon::new(vec![Polygon::new(LineString::from(ring), vec![])]),
                land_m2: None,
                water_m2: None,
            }
        })
        .collect()
}

/// Point-in-polygon lookups per second over `index` on this thread, for points spread over
/// the index's extent, and the share that hit a polygon.
fn lookups_per_second(index: &CensusIndex, points: &[(f64, f64)], budget: Duration) -> (f64, f64) {
    let started = Instant::now();
    let (mut done, mut hits) = (0usize, 0usize);
    while started.elapsed() < budget {
        for &(lon, lat) in points {
            if index.locate(lon, lat).is_some() {
                hits += 1;
            }
        }
        done += points.len();
    }
    (
        done as f64 / started.elapsed().as_secs_f64(),
        hits as f64 / done.max(1) as f64,
    )
}

/// Runs every measurement and returns the report.
pub async fn run(records: usize) -> anyhow::Result<String> {
    let mut out = String::new();

    // DC index: load time and memory, lookups on address points.
    let before = resident_bytes();
    let started = Instant::now();
    let dc = load_census(None, None)?;
    let load = started.elapsed();
    let after = resident_bytes();
    let points: Vec<(f64, f64)> = csv::Reader::from_reader(data::ADDRESS_POINTS_CSV)
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| Some((r.get(6)?.parse().ok()?, r.get(7)?.parse().ok()?)))
        .collect();
    let (rate, hit) = lookups_per_second(&dc, &points, Duration::from_secs(2));
    writeln!(out, "census index, DC ({} block groups)", dc.len())?;
    writeln!(
        out,
        "  load (GeoJSON + ACS + R-tree)  {:.0} ms",
        load.as_secs_f64() * 1e3
    )?;
    index_figures(&mut out, after.zip(before), rate, hit)?;

    // Synthetic national-size index.
    let count = 220_000;
    let before = resident_bytes();
    let started = Instant::now();
    let areas = synthetic_areas(count, 100, 7);
    let generated = started.elapsed();
    let started = Instant::now();
    let national = CensusIndex::new(areas, b"geoid\n", "synthetic")?;
    let build = started.elapsed();
    let after = resident_bytes();
    let mut rng = SplitMix::new(3);
    let random: Vec<(f64, f64)> = (0..20_000)
        .map(|_| (-124.7 + 57.8 * rng.float(), 24.5 + 24.9 * rng.float()))
        .collect();
    let (rate, hit) = lookups_per_second(&national, &random, Duration::from_secs(2));
    writeln!(
        out,
        "census index, synthetic {count} polygons x 100 vertices (all US block groups)"
    )?;
    writeln!(
        out,
        "  R-tree build                   {:.0} ms (polygons generated in {:.0} ms)",
        build.as_secs_f64() * 1e3,
        generated.as_secs_f64() * 1e3
    )?;
    index_figures(&mut out, after.zip(before), rate, hit)?;
    drop(national);

    // Offline geocoder: build, throughput and accuracy on customer-written addresses.
    let started = Instant::now();
    let geocoder = load_offline_geocoder(&[], None)?;
    let build = started.elapsed();
    let figures = accuracy::evaluate(&geocoder, &dc, data::ADDRESS_POINTS_CSV, 7)?;
    writeln!(
        out,
        "offline geocoder ({} address points, national ZIP table)",
        geocoder.point_count()
    )?;
    writeln!(
        out,
        "  build                          {:.0} ms",
        build.as_secs_f64() * 1e3
    )?;
    writeln!(
        out,
        "  geocode + PIP, one core        {:.0}/s",
        figures.addresses as f64 / figures.seconds
    )?;
    writeln!(out, "  customer-written DC addresses  {:.2}% in the right block group ({} of {}; {} postal, {} none, {} wrong)",
        figures.block_group_accuracy() * 100.0, figures.right_block_group, figures.addresses, figures.postal, figures.none, figures.wrong_block_group)?;

    // Enrichment cost per ingested record: the same records into two fresh SQLite stores,
    // with and without enrichment, one at a time.
    let profiles = dc_profiles(records)?;
    let geocoder = Arc::new(geocoder);
    let census = Arc::new(dc);
    let mut per_record = Vec::new();
    for enrich in [false, true] {
        let dir =
            std::env::temp_dir().join(format!("c360-bench-{}", uuid::Uuid::now_v7().simple()));
        let db = Database::connect(&format!("sqlite://{}/c360.db", dir.display()), 4).await?;
        db.migrate().await?;
        let mut resolver = Resolver::new(db.clone(), c360_matching::Engine::shipped());
        if enrich {
            resolver = resolver.with_enricher(Arc::new(Enricher::new(
                geocoder.clone(),
                census.clone(),
                db.clone(),
                Duration::from_secs(3600),
            )));
        }
        let started = Instant::now();
        for profile in &profiles {
            resolver.ingest(profile.clone()).await?;
        }
        per_record.push(started.elapsed().as_secs_f64() / profiles.len() as f64);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    writeln!(
        out,
        "ingest of {} DC records into SQLite, one at a time (no HTTP)",
        profiles.len()
    )?;
    writeln!(
        out,
        "  without enrichment             {:.3} ms/record",
        per_record[0] * 1e3
    )?;
    writeln!(
        out,
        "  with enrichment                {:.3} ms/record",
        per_record[1] * 1e3
    )?;
    writeln!(
        out,
        "  enrichment cost                {:.3} ms/record",
        (per_record[1] - per_record[0]) * 1e3
    )?;
    Ok(out)
}

/// Distinct people at DC address points.
fn dc_profiles(count: usize) -> anyhow::Result<Vec<Profile>> {
    let mut reader = csv::Reader::from_reader(data::ADDRESS_POINTS_CSV);
    let mut profiles = Vec::with_capacity(count);
    for (i, row) in reader.records().enumerate().take(count) {
        let row = row?;
        let input: RecordInput = serde_json::from_value(serde_json::json!({
            "source": "bench", "source_id": i.to_string(),
            "first_name": format!("P{i}"), "last_name": format!("Q{}", i * 7919 % 100_003),
            "email": format!("p{i}@example.com"),
            "address_line1": format!("{} {}", &row[0], &row[1]),
            "city": &row[3], "state": &row[4], "postal_code": &row[5],
        }))?;
        profiles.push(Profile::parse(&input).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_polygons_tile_without_overlap_and_are_found() {
        let areas = synthetic_areas(100, 32, 1);
        let index = CensusIndex::new(areas.clone(), b"geoid\n", "synthetic").unwrap();
        for area in &areas {
            let centre = geo::Centroid::centroid(&area.shape).unwrap();
            assert_eq!(
                index.locate(centre.x(), centre.y()),
                Some(area.geoid.as_str())
            );
        }
    }
}
