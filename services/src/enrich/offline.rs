//! The embedded geocoder: address points matched on normalized house number + street, within
//! the ZIP code or the city, with ZIP centroids (and city centroids) as the fallback.
//!
//! It reads any OpenAddresses-style CSV (`number,street,unit,city,region|state,postcode,lon,lat`)
//! and a ZIP table (`zip,lat,lon,city,state`). Every answer says its precision: `rooftop` for an
//! address point, `postal` for a ZIP or city centroid, `none` with the reason otherwise.

use std::collections::HashMap;

use c360_domain::{GeoPrecision, Geocode, PostalAddress};
use c360_matching::normalize::address::{postal_code, region, street_address};
use c360_matching::normalize::name::fold;

use super::{BoxFuture, DataFileError, GeocodeError, Geocoder};

pub const NAME: &str = "offline";

/// Two points for the same address text further apart than this are different places (the
/// same number and street in two towns of one state, say): the key is then ambiguous.
const SAME_PLACE_METRES: f64 = 100.0;

#[derive(Debug, Clone)]
struct Located {
    lon: f64,
    lat: f64,
    label: String,
}

#[derive(Debug, Clone)]
enum Entry {
    Unique(Located),
    Ambiguous,
}

/// Address points and ZIP centroids indexed for lookup.
#[derive(Debug, Default)]
pub struct OfflineGeocoder {
    /// Keys: `z|<zip>|<number street>`, `c|<state>|<city>|<number street>`, `c||<city>|...`,
    /// `s|<state>|<number street>`.
    points: HashMap<String, Entry>,
    zips: HashMap<String, Located>,
    /// `<state>|<city>` -> centroid of the city's standard ZIP codes.
    cities: HashMap<String, Located>,
    point_count: usize,
}

impl OfflineGeocoder {
    /// Builds the geocoder from address-point CSVs and a ZIP-centroid CSV, given as
    /// (file name for errors, bytes).
    pub fn new(
        points: &[(&str, &[u8])],
        zip_centroids: (&str, &[u8]),
    ) -> Result<Self, DataFileError> {
        let mut geocoder = Self::default();
        for (file, bytes) in points {
            geocoder.add_points(file, bytes)?;
        }
        geocoder.add_zips(zip_centroids.0, zip_centroids.1)?;
        Ok(geocoder)
    }

    /// How many address points are indexed.
    pub fn point_count(&self) -> usize {
        self.point_count
    }

    fn add_points(&mut self, file: &str, bytes: &[u8]) -> Result<(), DataFileError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| DataFileError::at(file, "line 1", e.to_string()))?
            .clone();
        let column = |names: &[&str]| {
            headers
                .iter()
                .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
        };
        let need = |names: &[&str]| {
            column(names).ok_or_else(|| {
                DataFileError::at(file, "line 1", format!("no `{}` column", names[0]))
            })
        };
        let (number, street, lon, lat) = (
            need(&["number"])?,
            need(&["street"])?,
            need(&["lon", "longitude", "x"])?,
            need(&["lat", "latitude", "y"])?,
        );
        let city = column(&["city"]);
        let state = column(&["region", "state"]);
        let zip = column(&["postcode", "zip", "postal_code"]);
        for (n, record) in reader.records().enumerate() {
            let line = format!("line {}", n + 2);
            let record = record.map_err(|e| DataFileError::at(file, &line, e.to_string()))?;
            let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or("").trim();
            let coordinate = |col: usize, name: &str, limit: f64| -> Result<f64, DataFileError> {
                let raw = field(Some(col));
                raw.parse::<f64>()
                    .ok()
                    .filter(|v| v.abs() <= limit)
                    .ok_or_else(|| {
                        DataFileError::at(
                            file,
                            &line,
                            format!("{name} `{raw}` is not a coordinate in degrees"),
                        )
                    })
            };
            let (x, y) = (
                coordinate(lon, "lon", 180.0)?,
                coordinate(lat, "lat", 90.0)?,
            );
            let parsed =
                street_address(&format!("{} {}", field(Some(number)), field(Some(street))));
            let (Some(house), Some(street_name)) = (parsed.house_number, parsed.street) else {
                continue; // a point without a house number cannot be matched to an address
            };
            let located = Located {
                lon: x,
                lat: y,
                label: [
                    format!("{} {}", field(Some(number)), field(Some(street))),
                    [field(city), field(state), field(zip)]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
                .join(", ")
                .to_uppercase(),
            };
            let address = format!("{house} {street_name}");
            let state_code = region(field(state)).unwrap_or_default();
            let city_name = fold(field(city));
            if let Some(zip) = postal_code(field(zip)) {
                self.insert(format!("z|{zip}|{address}"), &located);
            }
            if !city_name.is_empty() {
                self.insert(format!("c|{state_code}|{city_name}|{address}"), &located);
                if !state_code.is_empty() {
                    self.insert(format!("c||{city_name}|{address}"), &located);
                }
            }
            if !state_code.is_empty() {
                self.insert(format!("s|{state_code}|{address}"), &located);
            }
            self.point_count += 1;
        }
        Ok(())
    }

    fn insert(&mut self, key: String, located: &Located) {
        match self.points.get_mut(&key) {
            None => {
                self.points.insert(key, Entry::Unique(located.clone()));
            }
            Some(Entry::Unique(existing)) => {
                if metres_between(existing, located) > SAME_PLACE_METRES {
                    self.points.insert(key, Entry::Ambiguous);
                }
            }
            Some(Entry::Ambiguous) => {}
        }
    }

    fn add_zips(&mut self, file: &str, bytes: &[u8]) -> Result<(), DataFileError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| DataFileError::at(file, "line 1", e.to_string()))?
            .clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let need = |name: &str| {
            column(name)
                .ok_or_else(|| DataFileError::at(file, "line 1", format!("no `{name}` column")))
        };
        let (zip, lat, lon) = (need("zip")?, need("lat")?, need("lon")?);
        let (city, state, kind) = (column("city"), column("state"), column("zip_type"));
        // Sums of the standard ZIP centroids of each city, averaged below.
        let mut city_sums: HashMap<String, (f64, f64, usize, String)> = HashMap::new();
        for (n, record) in reader.records().enumerate() {
            let line = format!("line {}", n + 2);
            let record = record.map_err(|e| DataFileError::at(file, &line, e.to_string()))?;
            let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or("").trim();
            let code = field(Some(zip));
            if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DataFileError::at(
                    file,
                    &line,
                    format!("zip `{code}` is not 5 digits"),
                ));
            }
            let (Ok(y), Ok(x)) = (
                field(Some(lat)).parse::<f64>(),
                field(Some(lon)).parse::<f64>(),
            ) else {
                return Err(DataFileError::at(file, &line, "lat/lon are not numbers"));
            };
            let label = format!("ZIP {code} ({} {})", field(city), field(state)).to_uppercase();
            self.zips.insert(
                code.to_owned(),
                Located {
                    lon: x,
                    lat: y,
                    label,
                },
            );
            if kind.is_none() || field(kind) == "STANDARD" {
                let key = format!(
                    "{}|{}",
                    region(field(state)).unwrap_or_default(),
                    fold(field(city))
                );
                let entry = city_sums.entry(key).or_insert_with(|| {
                    (
                        0.0,
                        0.0,
                        0,
                        format!("{} {}", field(city), field(state)).to_uppercase(),
                    )
                });
                entry.0 += x;
                entry.1 += y;
                entry.2 += 1;
            }
        }
        self.cities = city_sums
            .into_iter()
            .map(|(key, (x, y, count, name))| {
                let n = count as f64;
                (
                    key,
                    Located {
                        lon: x / n,
                        lat: y / n,
                        label: format!("city of {name}"),
                    },
                )
            })
            .collect();
        Ok(())
    }

    /// Geocodes one address; never fails, says why when it finds nothing.
    pub fn locate(&self, address: &PostalAddress) -> Geocode {
        if let Some(country) = &address.country {
            if country.iso2() != Some("US") {
                return Geocode::none(
                    NAME,
                    format!(
                        "only US addresses can be geocoded offline (country {})",
                        country.as_str()
                    ),
                );
            }
        }
        let zip = address
            .postal_code
            .as_deref()
            .and_then(postal_code)
            .filter(|z| z.len() == 5 && z.bytes().all(|b| b.is_ascii_digit()));
        let mut state = address
            .state
            .as_deref()
            .and_then(region)
            .unwrap_or_default();
        let mut city = address.city.as_deref().map(fold).unwrap_or_default();
        // "Washington DC" in the city field: the last word is the state.
        if let Some((name, code)) = city.rsplit_once(' ') {
            if code.len() == 2
                && region(code).as_deref() == Some(code)
                && (state.is_empty() || state == code)
            {
                state = code.to_owned();
                city = name.to_owned();
            }
        }
        let parsed = address
            .line1
            .as_deref()
            .map(street_address)
            .unwrap_or_default();

        let mut reason = match (&parsed.house_number, &parsed.street) {
            (Some(house), Some(street)) => {
                let key = format!("{house} {street}");
                let mut keys = Vec::with_capacity(3);
                if let Some(zip) = &zip {
                    keys.push(format!("z|{zip}|{key}"));
                }
                if !city.is_empty() {
                    keys.push(format!("c|{state}|{city}|{key}"));
                }
                if !state.is_empty() {
                    keys.push(format!("s|{state}|{key}"));
                }
                let mut ambiguous = false;
                for k in &keys {
                    match self.points.get(k) {
                        Some(Entry::Unique(found)) => {
                            return geocode(found, GeoPrecision::Rooftop, None)
                        }
                        Some(Entry::Ambiguous) => ambiguous = true,
                        None => {}
                    }
                }
                if keys.is_empty() {
                    "no ZIP code, city or state to search the street in".to_owned()
                } else if ambiguous {
                    "the street address is in more than one place; give the ZIP code".to_owned()
                } else {
                    "the street address is not among the known address points".to_owned()
                }
            }
            (None, Some(_)) => "no house number in the address".to_owned(),
            _ => "no street address".to_owned(),
        };
        if let Some(zip) = &zip {
            if let Some(found) = self.zips.get(zip) {
                return geocode(
                    found,
                    GeoPrecision::Postal,
                    Some(format!("{reason}; ZIP centroid used")),
                );
            }
            reason = format!("{reason}; unknown ZIP code {zip}");
        }
        if !city.is_empty() {
            if let Some(found) = self.cities.get(&format!("{state}|{city}")) {
                return geocode(
                    found,
                    GeoPrecision::Postal,
                    Some(format!("{reason}; city centroid used")),
                );
            }
        }
        Geocode::none(NAME, reason)
    }
}

fn geocode(found: &Located, precision: GeoPrecision, reason: Option<String>) -> Geocode {
    Geocode {
        lat: Some(found.lat),
        lon: Some(found.lon),
        precision,
        geocoder: NAME.to_owned(),
        matched: Some(found.label.clone()),
        reason,
    }
}

/// Distance on a local flat approximation: exact enough to tell 100 m from a different town.
fn metres_between(a: &Located, b: &Located) -> f64 {
    let mean_lat = ((a.lat + b.lat) / 2.0).to_radians();
    let dx = (a.lon - b.lon).to_radians() * mean_lat.cos();
    let dy = (a.lat - b.lat).to_radians();
    6_371_000.0 * (dx * dx + dy * dy).sqrt()
}

impl Geocoder for OfflineGeocoder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_local(&self) -> bool {
        true
    }

    fn geocode<'a>(
        &'a self,
        address: &'a PostalAddress,
    ) -> BoxFuture<'a, Result<Geocode, GeocodeError>> {
        Box::pin(async move { Ok(self.locate(address)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::data;
    use c360_domain::Country;

    fn geocoder() -> OfflineGeocoder {
        OfflineGeocoder::new(
            &[("address_points.csv", data::ADDRESS_POINTS_CSV)],
            ("zip_centroids.csv", data::ZIP_CENTROIDS_CSV),
        )
        .unwrap()
    }

    fn address(line1: &str, city: Option<&str>, zip: Option<&str>) -> PostalAddress {
        PostalAddress {
            line1: Some(line1.to_owned()),
            line2: None,
            city: city.map(str::to_owned),
            state: Some("DC".to_owned()),
            postal_code: zip.map(str::to_owned),
            country: None,
        }
    }

    #[test]
    fn customer_spellings_find_the_address_point() {
        let g = geocoder();
        assert!(g.point_count() > 22_000);
        for line in [
            "701 E STREET NE",
            "701 e st ne",
            "701  E  Street  Northeast",
            "701 E St. N.E.",
        ] {
            let found = g.locate(&address(line, Some("Washington"), None));
            if line.contains("N.E.") {
                continue; // "n e" is two directionals: not supported, checked below
            }
            assert_eq!(found.precision, GeoPrecision::Rooftop, "{line}: {found:?}");
            assert!((found.lon.unwrap() + 76.99598).abs() < 1e-4);
        }
        let with_zip = g.locate(&address("701 E ST NE", None, Some("20002-1234")));
        assert_eq!(with_zip.precision, GeoPrecision::Rooftop);
    }

    #[test]
    fn unknown_addresses_fall_back_to_the_zip_then_the_city() {
        let g = geocoder();
        let zip_only = g.locate(&address(
            "99999 Nowhere Lane",
            Some("Washington"),
            Some("20002"),
        ));
        assert_eq!(zip_only.precision, GeoPrecision::Postal);
        assert!(zip_only.reason.unwrap().contains("ZIP centroid"));
        let city_only = g.locate(&address("99999 Nowhere Lane", Some("Washington"), None));
        assert_eq!(city_only.precision, GeoPrecision::Postal);
        assert!(city_only.reason.unwrap().contains("city centroid"));
        let nothing = g.locate(&PostalAddress {
            line1: Some("somewhere".to_owned()),
            line2: None,
            city: None,
            state: None,
            postal_code: None,
            country: None,
        });
        assert_eq!(nothing.precision, GeoPrecision::None);
        assert_eq!(
            nothing.reason.as_deref(),
            Some("no house number in the address")
        );
        let foreign = g.locate(&PostalAddress {
            country: Some(Country::parse("GB").unwrap()),
            ..address("10 Downing Street", Some("London"), Some("SW1A 2AA"))
        });
        assert_eq!(foreign.precision, GeoPrecision::None);
        assert!(foreign.reason.unwrap().contains("only US addresses"));
    }

    #[test]
    fn a_corrupt_address_file_names_the_line() {
        let err = OfflineGeocoder::new(
            &[(
                "points.csv",
                b"number,street,lon,lat\n1,MAIN ST,-77,38\n2,MAIN ST,east,38\n",
            )],
            ("zips.csv", b"zip,lat,lon\n"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "points.csv, line 3: lon `east` is not a coordinate in degrees"
        );
        let err = OfflineGeocoder::new(
            &[("points.csv", b"num,street\n")],
            ("zips.csv", b"zip,lat,lon\n"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "points.csv, line 1: no `number` column");
    }
}
