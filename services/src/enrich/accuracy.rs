//! How well the offline geocoder places customer-written addresses in their census block group.
//!
//! Each address point is rewritten the way customers write addresses (case, "Street" vs "St",
//! "NE" vs "Northeast", ordinals spelled out, extra spaces, ZIP+4, a missing ZIP or city,
//! "Washington DC" in the city field), geocoded, placed in a block group, and compared with the
//! block group published for that point.

use c360_domain::{GeoPrecision, PostalAddress};
use c360_matching::rng::SplitMix;

use super::census::CensusIndex;
use super::offline::OfflineGeocoder;
use super::DataFileError;

/// The figures of one evaluation run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeocodeAccuracy {
    pub addresses: usize,
    pub rooftop: usize,
    pub postal: usize,
    pub none: usize,
    /// Rooftop results whose block group is the published one.
    pub right_block_group: usize,
    /// Rooftop results in another block group.
    pub wrong_block_group: usize,
    pub seconds: f64,
}

impl GeocodeAccuracy {
    /// Share of all addresses placed in their right block group.
    pub fn block_group_accuracy(&self) -> f64 {
        self.right_block_group as f64 / self.addresses.max(1) as f64
    }
}

impl std::fmt::Display for GeocodeAccuracy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |n: usize| 100.0 * n as f64 / self.addresses.max(1) as f64;
        writeln!(f, "addresses            {}", self.addresses)?;
        writeln!(
            f,
            "rooftop              {} ({:.2}%)",
            self.rooftop,
            share(self.rooftop)
        )?;
        writeln!(
            f,
            "postal               {} ({:.2}%)",
            self.postal,
            share(self.postal)
        )?;
        writeln!(
            f,
            "none                 {} ({:.2}%)",
            self.none,
            share(self.none)
        )?;
        writeln!(
            f,
            "right block group    {} ({:.2}%)",
            self.right_block_group,
            share(self.right_block_group)
        )?;
        writeln!(
            f,
            "wrong block group    {} ({:.2}%)",
            self.wrong_block_group,
            share(self.wrong_block_group)
        )?;
        write!(
            f,
            "time                 {:.3} s ({:.1} µs per address, PIP included)",
            self.seconds,
            1e6 * self.seconds / self.addresses.max(1) as f64
        )
    }
}

/// Rewrites every address point of an OpenAddresses-style CSV with a `blockgroup_geoid`
/// column the way customers write them, geocodes it, and checks the block group.
pub fn evaluate(
    geocoder: &OfflineGeocoder,
    census: &CensusIndex,
    points_csv: &[u8],
    seed: u64,
) -> Result<GeocodeAccuracy, DataFileError> {
    let mut reader = csv::Reader::from_reader(points_csv);
    let headers = reader
        .headers()
        .map_err(|e| DataFileError::at("address points", "line 1", e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            DataFileError::at("address points", "line 1", format!("no `{name}` column"))
        })
    };
    let (number, street, city, state, zip, expected) = (
        column("number")?,
        column("street")?,
        column("city")?,
        column("state")?,
        column("postcode")?,
        column("blockgroup_geoid")?,
    );
    let mut rng = SplitMix::new(seed);
    let mut figures = GeocodeAccuracy::default();
    let started = std::time::Instant::now();
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| {
            DataFileError::at("address points", &format!("line {}", n + 2), e.to_string())
        })?;
        let address = customer_spelling(
            &mut rng,
            &row[number],
            &row[street],
            &row[city],
            &row[state],
            &row[zip],
        );
        let found = geocoder.locate(&address);
        figures.addresses += 1;
        match found.precision {
            GeoPrecision::Rooftop => {
                figures.rooftop += 1;
                let placed = census.locate(found.lon.unwrap_or(0.0), found.lat.unwrap_or(0.0));
                if placed == Some(&row[expected]) {
                    figures.right_block_group += 1;
                } else {
                    figures.wrong_block_group += 1;
                }
            }
            GeoPrecision::Postal => figures.postal += 1,
            GeoPrecision::None => figures.none += 1,
        }
    }
    figures.seconds = started.elapsed().as_secs_f64();
    Ok(figures)
}

const TYPES: &[(&str, &[&str])] = &[
    ("STREET", &["Street", "St", "St.", "street", "ST"]),
    ("AVENUE", &["Avenue", "Ave", "Ave.", "Av"]),
    ("PLACE", &["Place", "Pl", "Pl."]),
    ("ROAD", &["Road", "Rd", "Rd."]),
    ("DRIVE", &["Drive", "Dr", "Dr."]),
    ("TERRACE", &["Terrace", "Ter", "Terr"]),
    ("COURT", &["Court", "Ct", "Ct."]),
    ("CIRCLE", &["Circle", "Cir"]),
    ("LANE", &["Lane", "Ln"]),
    ("BOULEVARD", &["Boulevard", "Blvd", "Blvd."]),
    ("PARKWAY", &["Parkway", "Pkwy"]),
];

const QUADRANTS: &[(&str, &[&str])] = &[
    ("NW", &["NW", "nw", "Northwest", "NorthWest"]),
    ("NE", &["NE", "ne", "Northeast"]),
    ("SW", &["SW", "sw", "Southwest"]),
    ("SE", &["SE", "se", "Southeast"]),
];

const ORDINALS: &[(&str, &str)] = &[
    ("1ST", "First"),
    ("2ND", "Second"),
    ("3RD", "Third"),
    ("4TH", "Fourth"),
    ("5TH", "Fifth"),
    ("6TH", "Sixth"),
    ("7TH", "Seventh"),
    ("8TH", "Eighth"),
    ("9TH", "Ninth"),
    ("10TH", "Tenth"),
];

/// One address written as a customer might.
fn customer_spelling(
    rng: &mut SplitMix,
    number: &str,
    street: &str,
    city: &str,
    state: &str,
    zip: &str,
) -> PostalAddress {
    let mut words: Vec<String> = Vec::new();
    for word in street.split_whitespace() {
        let upper = word.to_uppercase();
        let upper = match upper.as_str() {
            "NORTHWEST" => "NW".to_owned(),
            "NORTHEAST" => "NE".to_owned(),
            "SOUTHWEST" => "SW".to_owned(),
            "SOUTHEAST" => "SE".to_owned(),
            _ => upper,
        };
        let replaced = if let Some((_, forms)) = TYPES.iter().find(|(t, forms)| {
            *t == upper
                || forms
                    .iter()
                    .any(|f| f.trim_end_matches('.').eq_ignore_ascii_case(&upper))
        }) {
            forms[rng.below(forms.len())].to_owned()
        } else if let Some((_, forms)) = QUADRANTS.iter().find(|(q, _)| *q == upper) {
            forms[rng.below(forms.len())].to_owned()
        } else if let Some((_, spelled)) = ORDINALS
            .iter()
            .find(|(o, _)| *o == upper)
            .filter(|_| rng.below(3) == 0)
        {
            (*spelled).to_owned()
        } else {
            match rng.below(3) {
                0 => word.to_lowercase(),
                1 => title_case(word),
                _ => upper,
            }
        };
        words.push(replaced);
    }
    let separator = if rng.below(5) == 0 { "  " } else { " " };
    let line1 = format!("{number}{separator}{}", words.join(separator));
    // Half the addresses lose the ZIP, a tenth lose the city (but keep the ZIP); some put the
    // state into the city field.
    let has_zip = !zip.is_empty() && rng.below(2) == 0;
    let drop_city = has_zip && rng.below(10) == 0;
    let zip = has_zip.then(|| {
        if rng.below(5) == 0 {
            format!("{zip}-{:04}", rng.below(10_000))
        } else {
            zip.to_owned()
        }
    });
    let (city, state) = match rng.below(6) {
        _ if drop_city => (None, Some(state.to_owned())),
        0 => (Some(format!("{} DC", title_case(city))), None),
        1 => (
            Some(city.to_lowercase()),
            Some("District of Columbia".to_owned()),
        ),
        2 => (Some(title_case(city)), None),
        _ => (Some(title_case(city)), Some(state.to_lowercase())),
    };
    PostalAddress {
        line1: Some(line1),
        line2: None,
        city,
        state,
        postal_code: zip,
        country: None,
    }
}

fn title_case(word: &str) -> String {
    word.split(' ')
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::census::read_geojson;
    use crate::enrich::data;

    /// The target: at least 99% of customer-written addresses that have a ZIP or a
    /// city land in the right block group. Run with `--nocapture` to see the figures.
    #[test]
    fn customer_written_dc_addresses_land_in_their_block_group() {
        let geocoder = OfflineGeocoder::new(
            &[("address_points.csv", data::ADDRESS_POINTS_CSV)],
            ("zip_centroids.csv", data::ZIP_CENTROIDS_CSV),
        )
        .unwrap();
        let census = CensusIndex::new(
            read_geojson(data::BLOCKGROUPS_GEOJSON, "blockgroups.geojson").unwrap(),
            data::ACS_CSV,
            "acs_blockgroups.csv",
        )
        .unwrap();
        let figures = evaluate(&geocoder, &census, data::ADDRESS_POINTS_CSV, 7).unwrap();
        println!("{figures}");
        assert_eq!(figures.addresses, 22_293);
        assert!(figures.block_group_accuracy() >= 0.99, "{figures}");
    }

    #[test]
    fn spellings_vary() {
        let mut rng = SplitMix::new(1);
        let spellings: std::collections::HashSet<String> = (0..50)
            .map(|_| {
                customer_spelling(&mut rng, "701", "E STREET NE", "WASHINGTON", "DC", "20002")
                    .line1
                    .unwrap()
            })
            .collect();
        assert!(spellings.len() > 10, "{spellings:?}");
    }
}
