//! The census index: block-group polygons in an R-tree for point-in-polygon, joined by GEOID
//! with a table of American Community Survey figures.
//!
//! Polygons come from GeoJSON (RFC 7946, `Polygon` or `MultiPolygon` features with a `GEOID`
//! property) or from a TIGER/Line shapefile `.zip` as the Census Bureau publishes it, so a user
//! can drop in the national block-group file. A corrupt file fails at start with the file, the
//! feature or line, and the reason.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;

use c360_domain::{BlockGroup, DemographicValue, Demographics};
use geo::{Intersects, MultiPolygon, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;
use serde::Deserialize;

use shapefile::dbase;

use super::DataFileError;

/// ACS top-codes: the Census Bureau publishes "at least this much" as a sentinel value.
/// Values at or above the sentinel are marked with their label instead of being taken literally.
const TOP_CODES: &[(&str, f64, &str)] = &[
    ("median_household_income", 250_001.0, "$250,000+"),
    ("median_family_income", 250_001.0, "$250,000+"),
    ("per_capita_income", 250_001.0, "$250,000+"),
    ("median_home_value", 2_000_001.0, "$2,000,000+"),
    ("median_gross_rent", 3_501.0, "$3,500+"),
    ("median_age", 115.0, "115+"),
];

/// One block group's polygon and its TIGER attributes.
#[derive(Debug, Clone)]
pub struct BlockGroupArea {
    pub geoid: String,
    pub shape: MultiPolygon<f64>,
    /// Land area in m² (TIGER `ALAND`).
    pub land_m2: Option<f64>,
    /// Water area in m² (TIGER `AWATER`).
    pub water_m2: Option<f64>,
}

/// The ACS row of one block group.
#[derive(Debug, Clone)]
struct AcsRow {
    name: Option<String>,
    demographics: Demographics,
}

/// Block-group polygons and ACS figures, ready to answer "which block group contains this
/// point, and what do we know about it".
#[derive(Debug)]
pub struct CensusIndex {
    areas: Vec<BlockGroupArea>,
    by_geoid: HashMap<String, usize>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
    acs: HashMap<String, AcsRow>,
    acs_fields: Vec<String>,
}

/// What the index knows of one block group.
#[derive(Debug, Clone)]
pub struct BlockGroupFacts {
    pub block_group: BlockGroup,
    pub demographics: Option<Demographics>,
    pub land_m2: Option<f64>,
    pub water_m2: Option<f64>,
}

impl CensusIndex {
    /// Builds the index from block-group areas and an ACS CSV (`geoid` column plus figures).
    pub fn new(
        areas: Vec<BlockGroupArea>,
        acs_csv: &[u8],
        acs_file: &str,
    ) -> Result<Self, DataFileError> {
        let (acs, acs_fields) = read_acs(acs_csv, acs_file)?;
        let mut by_geoid = HashMap::with_capacity(areas.len());
        let mut boxes = Vec::with_capacity(areas.len());
        for (i, area) in areas.iter().enumerate() {
            by_geoid.insert(area.geoid.clone(), i);
            let Some(bounds) = geo::BoundingRect::bounding_rect(&area.shape) else {
                continue;
            };
            let rect = Rectangle::from_corners(
                [bounds.min().x, bounds.min().y],
                [bounds.max().x, bounds.max().y],
            );
            boxes.push(GeomWithData::new(rect, i));
        }
        Ok(Self {
            areas,
            by_geoid,
            tree: RTree::bulk_load(boxes),
            acs,
            acs_fields,
        })
    }

    /// Loads polygons from a `.geojson`/`.json` file or a TIGER/Line shapefile (`.zip` or
    /// `.shp`), and ACS figures from a CSV file.
    pub fn from_files(polygons: &Path, acs: &Path) -> Result<Self, DataFileError> {
        let areas = read_areas_file(polygons)?;
        let acs_bytes = std::fs::read(acs).map_err(|e| DataFileError::io(acs, e))?;
        Self::new(areas, &acs_bytes, &acs.display().to_string())
    }

    /// How many block groups have a polygon.
    pub fn len(&self) -> usize {
        self.areas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// The names of the ACS figures every block group may have.
    pub fn fields(&self) -> &[String] {
        &self.acs_fields
    }

    /// The GEOID of the block group whose polygon covers the point (boundary included).
    pub fn locate(&self, lon: f64, lat: f64) -> Option<&str> {
        let point = Point::new(lon, lat);
        self.tree
            .locate_all_at_point(&[lon, lat])
            .map(|hit| &self.areas[hit.data])
            .find(|area| area.shape.intersects(&point))
            .map(|area| area.geoid.as_str())
    }

    /// Everything known about one block group: GEOID parts, ACS name and figures, areas.
    pub fn facts(&self, geoid: &str) -> Option<BlockGroupFacts> {
        let area = self.by_geoid.get(geoid).map(|&i| &self.areas[i]);
        let acs = self.acs.get(geoid);
        if area.is_none() && acs.is_none() {
            return None;
        }
        let block_group = BlockGroup::from_geoid(geoid, acs.and_then(|a| a.name.clone()))?;
        Some(BlockGroupFacts {
            block_group,
            demographics: acs.map(|a| a.demographics.clone()),
            land_m2: area.and_then(|a| a.land_m2),
            water_m2: area.and_then(|a| a.water_m2),
        })
    }

    /// One ACS figure of a block group; `None` when the block group or the figure is unknown
    /// (a published gap is a figure whose `estimate` is `None`).
    pub fn figure(&self, geoid: &str, field: &str) -> Option<&DemographicValue> {
        self.acs
            .get(geoid)
            .and_then(|row| row.demographics.values.get(field))
    }

    /// Every block group's value of one figure (gaps left out).
    pub fn values_of(&self, field: &str) -> impl Iterator<Item = f64> + '_ {
        let field = field.to_owned();
        self.acs
            .values()
            .filter_map(move |row| row.demographics.values.get(&field).and_then(|v| v.estimate))
    }
}

// ---------------------------------------------------------------------------------------------
// ACS CSV

fn read_acs(
    bytes: &[u8],
    file: &str,
) -> Result<(HashMap<String, AcsRow>, Vec<String>), DataFileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| DataFileError::at(file, "line 1", e.to_string()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let geoid_col = column("geoid")
        .or_else(|| column("GEO_ID"))
        .ok_or_else(|| DataFileError::at(file, "line 1", "no `geoid` column"))?;
    let name_col = column("name");
    let period_col = column("acs_period");
    // Every other column is a figure; `<figure>_moe` is the margin of error of `<figure>`.
    let figures: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            Some(*i) != name_col
                && Some(*i) != period_col
                && *i != geoid_col
                && !h.to_ascii_lowercase().ends_with("_moe")
        })
        .map(|(i, h)| (i, h.to_owned()))
        .collect();
    let moe_of: HashMap<usize, usize> = figures
        .iter()
        .filter_map(|(i, h)| column(&format!("{h}_moe")).map(|m| (*i, m)))
        .collect();

    let mut rows = HashMap::new();
    for (n, record) in reader.records().enumerate() {
        let line = format!("line {}", n + 2);
        let record = record.map_err(|e| DataFileError::at(file, &line, e.to_string()))?;
        let geoid = record.get(geoid_col).unwrap_or("").trim();
        // The Census API writes `1500000US110010001011`; the GEOID is the part after `US`.
        let geoid = geoid.rsplit("US").next().unwrap_or(geoid);
        if BlockGroup::from_geoid(geoid, None).is_none() {
            return Err(DataFileError::at(
                file,
                &line,
                format!("geoid `{geoid}` is not a 12-digit block group GEOID"),
            ));
        }
        let number = |col: usize| -> Result<Option<f64>, DataFileError> {
            let raw = record.get(col).unwrap_or("").trim();
            if raw.is_empty() || raw == "NA" || raw == "null" {
                return Ok(None);
            }
            let value: f64 = raw.parse().map_err(|_| {
                DataFileError::at(
                    file,
                    &line,
                    format!("column `{}`: `{raw}` is not a number", &headers[col]),
                )
            })?;
            // The Census API marks suppressed estimates with large negative sentinels
            // (-666666666 and friends): a gap, not a value.
            Ok((value > -1e8).then_some(value))
        };
        let mut values = BTreeMap::new();
        for (col, name) in &figures {
            let estimate = number(*col)?;
            let moe = match moe_of.get(col) {
                Some(&m) => number(m)?,
                None => None,
            };
            let top_coded = TOP_CODES
                .iter()
                .find(|(field, sentinel, _)| {
                    field == name && estimate.is_some_and(|v| v >= *sentinel)
                })
                .map(|(_, _, label)| (*label).to_owned());
            values.insert(
                name.clone(),
                DemographicValue {
                    estimate,
                    moe,
                    top_coded,
                },
            );
        }
        let text = |col: Option<usize>| {
            col.and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        rows.insert(
            geoid.to_owned(),
            AcsRow {
                name: text(name_col),
                demographics: Demographics {
                    acs_period: text(period_col).unwrap_or_default(),
                    values,
                },
            },
        );
    }
    Ok((rows, figures.into_iter().map(|(_, h)| h).collect()))
}

// ---------------------------------------------------------------------------------------------
// Polygons

pub fn read_areas_file(path: &Path) -> Result<Vec<BlockGroupArea>, DataFileError> {
    let name = path.display().to_string();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "zip" => {
            let bytes = std::fs::read(path).map_err(|e| DataFileError::io(path, e))?;
            read_shapefile_zip(&bytes, &name)
        }
        "shp" => {
            let shp = std::fs::read(path).map_err(|e| DataFileError::io(path, e))?;
            let dbf_path = path.with_extension("dbf");
            let dbf = std::fs::read(&dbf_path).map_err(|e| DataFileError::io(&dbf_path, e))?;
            read_shapefile(shp, dbf, &name)
        }
        _ => {
            let bytes = std::fs::read(path).map_err(|e| DataFileError::io(path, e))?;
            read_geojson(&bytes, &name)
        }
    }
}

#[derive(Deserialize)]
struct FeatureCollection {
    features: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Feature {
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
    geometry: Option<Geometry>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Geometry {
    Polygon {
        coordinates: Vec<Vec<Vec<f64>>>,
    },
    MultiPolygon {
        coordinates: Vec<Vec<Vec<Vec<f64>>>>,
    },
}

/// Reads block groups from a GeoJSON FeatureCollection.
pub fn read_geojson(bytes: &[u8], file: &str) -> Result<Vec<BlockGroupArea>, DataFileError> {
    let collection: FeatureCollection = serde_json::from_slice(bytes).map_err(|e| {
        DataFileError::at(
            file,
            &format!("line {}", e.line()),
            format!("not a GeoJSON FeatureCollection: {e}"),
        )
    })?;
    let mut areas = Vec::with_capacity(collection.features.len());
    for (i, raw) in collection.features.into_iter().enumerate() {
        let at = format!("feature {i}");
        let feature: Feature = serde_json::from_value(raw).map_err(|e| {
            DataFileError::at(
                file,
                &at,
                format!("not a Polygon or MultiPolygon feature: {e}"),
            )
        })?;
        let geoid = geoid_property(|key| {
            feature.properties.get(key).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        })
        .ok_or_else(|| DataFileError::at(file, &at, "no 12-digit GEOID property"))?;
        let at = format!("feature {i} (GEOID {geoid})");
        let geometry = feature
            .geometry
            .ok_or_else(|| DataFileError::at(file, &at, "no geometry"))?;
        let polygons = match geometry {
            Geometry::Polygon { coordinates } => vec![coordinates],
            Geometry::MultiPolygon { coordinates } => coordinates,
        };
        let mut shape = Vec::with_capacity(polygons.len());
        for rings in polygons {
            let mut rings = rings.into_iter().map(|ring| ring_of(ring, file, &at));
            let exterior = rings
                .next()
                .ok_or_else(|| DataFileError::at(file, &at, "a polygon without rings"))??;
            let interiors = rings.collect::<Result<Vec<_>, _>>()?;
            shape.push(Polygon::new(exterior, interiors));
        }
        let number = |key: &str| {
            feature
                .properties
                .get(key)
                .and_then(serde_json::Value::as_f64)
        };
        areas.push(BlockGroupArea {
            geoid,
            shape: MultiPolygon::new(shape),
            land_m2: number("ALAND"),
            water_m2: number("AWATER"),
        });
    }
    if areas.is_empty() {
        return Err(DataFileError::at(
            file,
            "features",
            "no block groups in the file",
        ));
    }
    Ok(areas)
}

/// The block group GEOID from a feature's attributes (TIGER names it `GEOID`, 2020 files
/// `GEOID20`).
fn geoid_property(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    ["GEOID", "GEOID20", "geoid", "GEOID10"]
        .iter()
        .find_map(|key| get(key))
        .map(|g| g.trim().to_owned())
        .filter(|g| BlockGroup::from_geoid(g, None).is_some())
}

fn ring_of(
    ring: Vec<Vec<f64>>,
    file: &str,
    at: &str,
) -> Result<geo::LineString<f64>, DataFileError> {
    if ring.len() < 4 {
        return Err(DataFileError::at(
            file,
            at,
            format!("a ring with {} positions (at least 4 needed)", ring.len()),
        ));
    }
    let mut coords = Vec::with_capacity(ring.len());
    for position in ring {
        let (Some(&lon), Some(&lat)) = (position.first(), position.get(1)) else {
            return Err(DataFileError::at(
                file,
                at,
                "a position with fewer than 2 numbers",
            ));
        };
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(DataFileError::at(
                file,
                at,
                format!("position ({lon}, {lat}) is not longitude/latitude in degrees"),
            ));
        }
        coords.push(geo::coord! { x: lon, y: lat });
    }
    Ok(geo::LineString::new(coords))
}

/// Reads block groups from a TIGER/Line shapefile `.zip` (the `.shp` and `.dbf` inside it).
pub fn read_shapefile_zip(bytes: &[u8], file: &str) -> Result<Vec<BlockGroupArea>, DataFileError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| DataFileError::at(file, "archive", format!("not a zip file: {e}")))?;
    let mut member = |extension: &str| -> Result<Vec<u8>, DataFileError> {
        let name = archive
            .file_names()
            .find(|n| n.to_ascii_lowercase().ends_with(extension))
            .map(str::to_owned)
            .ok_or_else(|| {
                DataFileError::at(file, "archive", format!("no {extension} file inside"))
            })?;
        let mut entry = archive
            .by_name(&name)
            .map_err(|e| DataFileError::at(file, &name, e.to_string()))?;
        let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .read_to_end(&mut out)
            .map_err(|e| DataFileError::at(file, &name, e.to_string()))?;
        Ok(out)
    };
    let shp = member(".shp")?;
    let dbf = member(".dbf")?;
    read_shapefile(shp, dbf, file)
}

fn read_shapefile(
    shp: Vec<u8>,
    dbf: Vec<u8>,
    file: &str,
) -> Result<Vec<BlockGroupArea>, DataFileError> {
    let shapes = shapefile::ShapeReader::new(Cursor::new(shp))
        .map_err(|e| DataFileError::at(file, ".shp", e.to_string()))?;
    let table = dbase::Reader::new(Cursor::new(dbf))
        .map_err(|e| DataFileError::at(file, ".dbf", e.to_string()))?;
    let mut reader = shapefile::Reader::new(shapes, table);
    let mut areas = Vec::new();
    for (i, item) in reader.iter_shapes_and_records().enumerate() {
        let at = format!("shape {i}");
        let (shape, record) = item.map_err(|e| DataFileError::at(file, &at, e.to_string()))?;
        let text = |key: &str| match record.get(key) {
            Some(dbase::FieldValue::Character(Some(s))) => Some(s.clone()),
            Some(dbase::FieldValue::Numeric(Some(n))) => Some(format!("{n:.0}")),
            _ => None,
        };
        let geoid = geoid_property(text)
            .ok_or_else(|| DataFileError::at(file, &at, "no 12-digit GEOID attribute"))?;
        let at = format!("shape {i} (GEOID {geoid})");
        let shapefile::Shape::Polygon(polygon) = shape else {
            return Err(DataFileError::at(file, &at, "not a polygon shape"));
        };
        let mut polygons: Vec<Polygon<f64>> = Vec::new();
        for ring in polygon.into_inner() {
            let (outer, points) = match ring {
                shapefile::PolygonRing::Outer(p) => (true, p),
                shapefile::PolygonRing::Inner(p) => (false, p),
            };
            let ring = ring_of(
                points.into_iter().map(|p| vec![p.x, p.y]).collect(),
                file,
                &at,
            )?;
            if outer {
                polygons.push(Polygon::new(ring, vec![]));
            } else {
                // Shapefiles list a hole after the outer ring it belongs to.
                let last = polygons
                    .last_mut()
                    .ok_or_else(|| DataFileError::at(file, &at, "a hole before any outer ring"))?;
                last.interiors_push(ring);
            }
        }
        let number = |key: &str| match record.get(key) {
            Some(dbase::FieldValue::Numeric(n)) => *n,
            Some(dbase::FieldValue::Character(Some(s))) => s.trim().parse().ok(),
            _ => None,
        };
        areas.push(BlockGroupArea {
            geoid,
            shape: MultiPolygon::new(polygons),
            land_m2: number("ALAND"),
            water_m2: number("AWATER"),
        });
    }
    if areas.is_empty() {
        return Err(DataFileError::at(
            file,
            "shapes",
            "no block groups in the shapefile",
        ));
    }
    Ok(areas)
}

/// Never-failing lookup of an AABB, used by tests to check the tree covers every area.
#[cfg(test)]
fn boxes_containing(index: &CensusIndex, lon: f64, lat: f64) -> usize {
    index
        .tree
        .locate_in_envelope_intersecting(&rstar::AABB::from_point([lon, lat]))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::data;

    fn index() -> CensusIndex {
        CensusIndex::new(
            read_geojson(data::BLOCKGROUPS_GEOJSON, "blockgroups.geojson").unwrap(),
            data::ACS_CSV,
            "acs_blockgroups.csv",
        )
        .unwrap()
    }

    #[test]
    fn every_address_point_falls_in_its_published_block_group() {
        let index = index();
        assert_eq!(index.len(), 571);
        let mut reader = csv::Reader::from_reader(data::ADDRESS_POINTS_CSV);
        let (mut total, mut right) = (0, 0);
        for row in reader.records() {
            let row = row.unwrap();
            let lon: f64 = row[6].parse().unwrap();
            let lat: f64 = row[7].parse().unwrap();
            total += 1;
            assert!(boxes_containing(&index, lon, lat) >= 1);
            if index.locate(lon, lat) == Some(&row[10]) {
                right += 1;
            }
        }
        // The expected GEOIDs were computed with shapely's covered_by on the same polygons;
        // points on a shared boundary may be given to either neighbour.
        assert!(right as f64 / total as f64 > 0.9995, "{right} of {total}");
    }

    #[test]
    fn points_outside_the_area_have_no_block_group() {
        assert_eq!(index().locate(-87.6298, 41.8781), None); // Chicago
    }

    #[test]
    fn acs_gaps_are_missing_and_top_codes_are_labelled() {
        let index = index();
        let with_gap = index
            .acs
            .iter()
            .find(|(_, row)| {
                row.demographics.values["median_household_income"]
                    .estimate
                    .is_none()
            })
            .expect("74 block groups have no median income");
        assert_eq!(
            index
                .figure(with_gap.0, "median_household_income")
                .map(|v| v.estimate),
            Some(None)
        );
        let top = index
            .acs
            .values()
            .find(|row| {
                row.demographics.values["median_household_income"].estimate == Some(250_001.0)
            })
            .expect("some block groups are top-coded");
        let v = &top.demographics.values["median_household_income"];
        assert_eq!(v.top_coded.as_deref(), Some("$250,000+"));
        let facts = index.facts("110010001011").unwrap();
        assert_eq!(facts.block_group.tract, "11001000101");
        let demographics = facts.demographics.unwrap();
        assert_eq!(demographics.acs_period, "2019-2023");
        let income = &demographics.values["median_household_income"];
        assert_eq!(income.estimate, Some(135_708.0));
        assert_eq!(income.moe, Some(43_153.0));
        assert!(!demographics
            .values
            .contains_key("median_household_income_moe"));
        let total: f64 = index.values_of("total_population").sum();
        assert_eq!(total, 672_079.0);
    }

    #[test]
    fn corrupt_files_name_the_place_and_the_reason() {
        let err = read_geojson(br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"GEOID":"110010001011"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}}]}"#, "bg.geojson").unwrap_err();
        assert!(
            err.to_string()
                .contains("bg.geojson, feature 0 (GEOID 110010001011)"),
            "{err}"
        );
        assert!(err.to_string().contains("at least 4"), "{err}");
        let err = read_geojson(br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":null}]}"#, "bg.geojson").unwrap_err();
        assert!(err.to_string().contains("GEOID"), "{err}");
        let err = read_geojson(b"{\"type\":\n\"Feat", "bg.geojson").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = CensusIndex::new(
            vec![],
            b"geoid,income\n110010001011,12\n110010001012,lots\n",
            "acs.csv",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "acs.csv, line 3: column `income`: `lots` is not a number"
        );
        let err = CensusIndex::new(vec![], b"geoid,income\n1100,12\n", "acs.csv").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = read_shapefile_zip(b"not a zip", "tl_2023_11_bg.zip").unwrap_err();
        assert!(err.to_string().contains("tl_2023_11_bg.zip"), "{err}");
    }

    /// Writes the GeoJSON polygons as a TIGER-style shapefile zip and reads it back: the zip
    /// path must give the same answers as the GeoJSON path.
    #[test]
    fn a_tiger_shapefile_zip_gives_the_same_answers() {
        use std::io::Write as _;
        let areas = read_geojson(data::BLOCKGROUPS_GEOJSON, "blockgroups.geojson").unwrap();
        let dir = std::env::temp_dir().join(format!("c360-shp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shp_path = dir.join("tl_2023_11_bg.shp");
        let table = dbase::TableWriterBuilder::new()
            .add_character_field("GEOID".try_into().unwrap(), 12)
            .add_numeric_field("ALAND".try_into().unwrap(), 14, 0);
        let mut writer = shapefile::Writer::from_path(&shp_path, table).unwrap();
        for area in &areas {
            let mut rings = Vec::new();
            for polygon in &area.shape {
                let points = |ls: &geo::LineString<f64>| {
                    ls.coords()
                        .map(|c| shapefile::Point::new(c.x, c.y))
                        .collect::<Vec<_>>()
                };
                rings.push(shapefile::PolygonRing::Outer(points(polygon.exterior())));
                for hole in polygon.interiors() {
                    rings.push(shapefile::PolygonRing::Inner(points(hole)));
                }
            }
            let mut record = dbase::Record::default();
            record.insert(
                "GEOID".to_owned(),
                dbase::FieldValue::Character(Some(area.geoid.clone())),
            );
            record.insert("ALAND".to_owned(), dbase::FieldValue::Numeric(area.land_m2));
            writer
                .write_shape_and_record(&shapefile::Polygon::with_rings(rings), &record)
                .unwrap();
        }
        drop(writer);
        let zip_path = dir.join("tl_2023_11_bg.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        for ext in ["shp", "shx", "dbf"] {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file(format!("tl_2023_11_bg.{ext}"), options)
                .unwrap();
            zip.write_all(&std::fs::read(dir.join(format!("tl_2023_11_bg.{ext}"))).unwrap())
                .unwrap();
        }
        zip.finish().unwrap();

        let from_zip = CensusIndex::from_files(&zip_path, &write_acs(&dir)).unwrap();
        let from_json = index();
        assert_eq!(from_zip.len(), 571);
        let mut reader = csv::Reader::from_reader(data::ADDRESS_POINTS_CSV);
        for row in reader.records().take(3000) {
            let row = row.unwrap();
            let (lon, lat) = (row[6].parse().unwrap(), row[7].parse().unwrap());
            assert_eq!(from_zip.locate(lon, lat), from_json.locate(lon, lat));
        }
        assert_eq!(
            from_zip.facts("110010001011").unwrap().land_m2,
            from_json.facts("110010001011").unwrap().land_m2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn write_acs(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("acs.csv");
        std::fs::write(&path, data::ACS_CSV).unwrap();
        path
    }
}
