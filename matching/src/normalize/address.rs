//! Postal addresses in USPS style: suffixes (Street -> st), directionals (Northeast -> ne) and
//! unit designators (Apartment, # -> apt) abbreviated; the house number and unit split from the
//! street; ZIP codes cut to five digits.

use super::name::fold;

/// USPS Publication 28 street suffixes (the common ones) and a few Commonwealth forms.
const SUFFIXES: &[(&str, &str)] = &[
    ("alley", "aly"),
    ("allee", "aly"),
    ("ally", "aly"),
    ("annex", "anx"),
    ("arcade", "arc"),
    ("avenue", "ave"),
    ("av", "ave"),
    ("aven", "ave"),
    ("avenu", "ave"),
    ("avn", "ave"),
    ("bayou", "byu"),
    ("beach", "bch"),
    ("bend", "bnd"),
    ("bluff", "blf"),
    ("bottom", "btm"),
    ("boulevard", "blvd"),
    ("boul", "blvd"),
    ("boulv", "blvd"),
    ("branch", "br"),
    ("bridge", "brg"),
    ("brook", "brk"),
    ("burg", "bg"),
    ("bypass", "byp"),
    ("camp", "cp"),
    ("canyon", "cyn"),
    ("cape", "cpe"),
    ("causeway", "cswy"),
    ("center", "ctr"),
    ("centre", "ctr"),
    ("circle", "cir"),
    ("circ", "cir"),
    ("circuit", "cct"),
    ("cliff", "clf"),
    ("club", "clb"),
    ("common", "cmn"),
    ("corner", "cor"),
    ("course", "crse"),
    ("court", "ct"),
    ("crt", "ct"),
    ("cove", "cv"),
    ("creek", "crk"),
    ("crescent", "cres"),
    ("crest", "crst"),
    ("crossing", "xing"),
    ("drive", "dr"),
    ("driv", "dr"),
    ("drv", "dr"),
    ("estate", "est"),
    ("estates", "ests"),
    ("expressway", "expy"),
    ("extension", "ext"),
    ("falls", "fls"),
    ("ferry", "fry"),
    ("field", "fld"),
    ("fields", "flds"),
    ("flat", "flt"),
    ("ford", "frd"),
    ("forest", "frst"),
    ("fork", "frk"),
    ("fort", "ft"),
    ("freeway", "fwy"),
    ("garden", "gdn"),
    ("gardens", "gdns"),
    ("gateway", "gtwy"),
    ("glen", "gln"),
    ("green", "grn"),
    ("grove", "grv"),
    ("harbor", "hbr"),
    ("haven", "hvn"),
    ("heights", "hts"),
    ("highway", "hwy"),
    ("hill", "hl"),
    ("hills", "hls"),
    ("hollow", "holw"),
    ("island", "is"),
    ("junction", "jct"),
    ("key", "ky"),
    ("knoll", "knl"),
    ("lake", "lk"),
    ("lakes", "lks"),
    ("landing", "lndg"),
    ("lane", "ln"),
    ("light", "lgt"),
    ("loop", "loop"),
    ("manor", "mnr"),
    ("meadow", "mdw"),
    ("meadows", "mdws"),
    ("mill", "ml"),
    ("mission", "msn"),
    ("motorway", "mtwy"),
    ("mount", "mt"),
    ("mountain", "mtn"),
    ("orchard", "orch"),
    ("parkway", "pkwy"),
    ("parkwy", "pkwy"),
    ("pkway", "pkwy"),
    ("pass", "pass"),
    ("path", "path"),
    ("pike", "pike"),
    ("pine", "pne"),
    ("pines", "pnes"),
    ("place", "pl"),
    ("plain", "pln"),
    ("plains", "plns"),
    ("plaza", "plz"),
    ("point", "pt"),
    ("port", "prt"),
    ("prairie", "pr"),
    ("ranch", "rnch"),
    ("ridge", "rdg"),
    ("river", "riv"),
    ("road", "rd"),
    ("route", "rte"),
    ("shore", "shr"),
    ("shores", "shrs"),
    ("spring", "spg"),
    ("springs", "spgs"),
    ("square", "sq"),
    ("station", "sta"),
    ("stream", "strm"),
    ("street", "st"),
    ("str", "st"),
    ("strt", "st"),
    ("summit", "smt"),
    ("terrace", "ter"),
    ("terr", "ter"),
    ("trace", "trce"),
    ("track", "trak"),
    ("trail", "trl"),
    ("tunnel", "tunl"),
    ("turnpike", "tpke"),
    ("union", "un"),
    ("valley", "vly"),
    ("viaduct", "via"),
    ("view", "vw"),
    ("village", "vlg"),
    ("ville", "vl"),
    ("vista", "vis"),
    ("walk", "walk"),
    ("way", "way"),
    ("wells", "wls"),
    ("close", "cl"),
    ("parade", "pde"),
    ("esplanade", "esp"),
];

const DIRECTIONALS: &[(&str, &str)] = &[
    ("north", "n"),
    ("south", "s"),
    ("east", "e"),
    ("west", "w"),
    ("northeast", "ne"),
    ("northwest", "nw"),
    ("southeast", "se"),
    ("southwest", "sw"),
    ("north east", "ne"),
];

/// Unit designators; the unit number follows them.
const UNITS: &[(&str, &str)] = &[
    ("apartment", "apt"),
    ("apt", "apt"),
    ("appt", "apt"),
    ("suite", "ste"),
    ("ste", "ste"),
    ("unit", "unit"),
    ("floor", "fl"),
    ("fl", "fl"),
    ("building", "bldg"),
    ("bldg", "bldg"),
    ("room", "rm"),
    ("rm", "rm"),
    ("lot", "lot"),
    ("space", "spc"),
    ("trailer", "trlr"),
    ("department", "dept"),
    ("office", "ofc"),
    ("flat", "flat"),
    ("villa", "villa"),
    ("level", "lvl"),
    ("shop", "shop"),
    ("box", "box"),
];

fn lookup(table: &[(&'static str, &'static str)], token: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(long, short)| *long == token || *short == token)
        .map(|(_, short)| *short)
}

/// One address line split into its parts, each normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreetAddress {
    /// `123`, `123a`, `12-14`, `38 1/2`.
    pub house_number: Option<String>,
    /// The street with suffix and directionals abbreviated: `n main st`.
    pub street: Option<String>,
    /// The unit: `apt 4b`, `ste 200`, `# 5` (as `apt 5`).
    pub unit: Option<String>,
}

/// Ordinals written out are read as numbers (`First Street` is `1st st`), as USPS does.
fn ordinal(token: &str) -> Option<&'static str> {
    Some(match token {
        "first" => "1st",
        "second" => "2nd",
        "third" => "3rd",
        "fourth" => "4th",
        "fifth" => "5th",
        "sixth" => "6th",
        "seventh" => "7th",
        "eighth" => "8th",
        "ninth" => "9th",
        "tenth" => "10th",
        _ => return None,
    })
}

/// Splits and normalizes an address line such as `123 North Main Street, Apt. 4B`.
pub fn street_address(line: &str) -> StreetAddress {
    // '#' marks a unit; keep it as a token before folding removes it.
    let marked = line
        .replace('#', " apt ")
        .replace('½', " onehalf ")
        .replace("1/2", " onehalf ");
    let folded = fold(&marked);
    let mut tokens: Vec<String> = folded
        .split(' ')
        .map(|t| {
            if t == "onehalf" {
                "1/2".to_owned()
            } else {
                t.to_owned()
            }
        })
        .collect();
    tokens.retain(|t| !t.is_empty());

    let mut house_number = None;
    if let Some(first) = tokens.first() {
        if first.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            let mut number = tokens.remove(0);
            if tokens.first().is_some_and(|t| t == "1/2") {
                number.push_str(" 1/2");
                tokens.remove(0);
            }
            house_number = Some(number);
        }
    }

    let mut street_tokens: Vec<String> = Vec::new();
    let mut unit = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].as_str();
        if let Some(designator) = lookup(UNITS, token) {
            // A designator followed by a value starts the unit; everything after it belongs
            // to the unit. ("Flat" alone, without a value, is not a unit.)
            if i + 1 < tokens.len() && (!street_tokens.is_empty() || designator == "apt") {
                unit = Some(format!("{designator} {}", tokens[i + 1..].join(" ")));
                break;
            }
        }
        let normalized = if let Some(n) = ordinal(token) {
            n.to_owned()
        } else if let Some(d) = lookup(DIRECTIONALS, token) {
            d.to_owned()
        } else if i > 0 || street_tokens.len() > 1 {
            lookup(SUFFIXES, token).map_or_else(|| token.to_owned(), str::to_owned)
        } else {
            token.to_owned()
        };
        street_tokens.push(normalized);
        i += 1;
    }
    // A bare suffix word as the only token is the street's name, not its type ("The Mall").
    let street = (!street_tokens.is_empty()).then(|| street_tokens.join(" "));
    StreetAddress {
        house_number,
        street,
        unit,
    }
}

/// A second address line (unit, building) normalized like the unit part of line 1.
pub fn unit_line(line: &str) -> Option<String> {
    let folded = fold(&line.replace('#', " apt "));
    if folded.is_empty() {
        return None;
    }
    let mut tokens: Vec<&str> = folded.split(' ').collect();
    if let Some(d) = tokens.first().and_then(|t| lookup(UNITS, t)) {
        tokens[0] = d;
    }
    Some(tokens.join(" "))
}

/// The comparable form of a postal code: US ZIP and ZIP+4 become the 5-digit ZIP; others are
/// upper-cased without spaces (`sw1a 1aa` -> `SW1A1AA`).
pub fn postal_code(raw: &str) -> Option<String> {
    let compact: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if compact.is_empty() {
        return None;
    }
    let digits_only = compact.chars().all(|c| c.is_ascii_digit());
    if digits_only && (compact.len() == 9 || compact.len() == 5) {
        return Some(compact[..5].to_owned());
    }
    Some(compact)
}

/// A US state or other region: two-letter codes kept, US state names mapped to their codes.
pub fn region(raw: &str) -> Option<String> {
    let folded = fold(raw);
    if folded.is_empty() {
        return None;
    }
    const STATES: &[(&str, &str)] = &[
        ("alabama", "al"),
        ("alaska", "ak"),
        ("arizona", "az"),
        ("arkansas", "ar"),
        ("california", "ca"),
        ("colorado", "co"),
        ("connecticut", "ct"),
        ("delaware", "de"),
        ("district of columbia", "dc"),
        ("florida", "fl"),
        ("georgia", "ga"),
        ("hawaii", "hi"),
        ("idaho", "id"),
        ("illinois", "il"),
        ("indiana", "in"),
        ("iowa", "ia"),
        ("kansas", "ks"),
        ("kentucky", "ky"),
        ("louisiana", "la"),
        ("maine", "me"),
        ("maryland", "md"),
        ("massachusetts", "ma"),
        ("michigan", "mi"),
        ("minnesota", "mn"),
        ("mississippi", "ms"),
        ("missouri", "mo"),
        ("montana", "mt"),
        ("nebraska", "ne"),
        ("nevada", "nv"),
        ("new hampshire", "nh"),
        ("new jersey", "nj"),
        ("new mexico", "nm"),
        ("new york", "ny"),
        ("north carolina", "nc"),
        ("north dakota", "nd"),
        ("ohio", "oh"),
        ("oklahoma", "ok"),
        ("oregon", "or"),
        ("pennsylvania", "pa"),
        ("rhode island", "ri"),
        ("south carolina", "sc"),
        ("south dakota", "sd"),
        ("tennessee", "tn"),
        ("texas", "tx"),
        ("utah", "ut"),
        ("vermont", "vt"),
        ("virginia", "va"),
        ("washington", "wa"),
        ("west virginia", "wv"),
        ("wisconsin", "wi"),
        ("wyoming", "wy"),
        ("puerto rico", "pr"),
    ];
    Some(
        STATES
            .iter()
            .find(|(name, _)| *name == folded)
            .map_or(folded, |(_, code)| (*code).to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(line: &str) -> (Option<String>, Option<String>, Option<String>) {
        let a = street_address(line);
        (a.house_number, a.street, a.unit)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn usps_abbreviations() {
        assert_eq!(
            parts("123 North Main Street"),
            (some("123"), some("n main st"), None)
        );
        assert_eq!(
            parts("123 N. Main St."),
            (some("123"), some("n main st"), None)
        );
        assert_eq!(
            parts("1600 Pennsylvania Avenue Northwest"),
            (some("1600"), some("pennsylvania ave nw"), None)
        );
        assert_eq!(
            parts("1600 pennsylvania ave nw"),
            (some("1600"), some("pennsylvania ave nw"), None)
        );
        assert_eq!(
            parts("42 Elm Boulevard Apartment 4B"),
            (some("42"), some("elm blvd"), some("apt 4b"))
        );
        assert_eq!(
            parts("42 Elm Blvd #4B"),
            (some("42"), some("elm blvd"), some("apt 4b"))
        );
        assert_eq!(
            parts("42 Elm Blvd, Suite 200"),
            (some("42"), some("elm blvd"), some("ste 200"))
        );
        assert_eq!(
            parts("701 First Street NE"),
            (some("701"), some("1st st ne"), None)
        );
        assert_eq!(
            parts("38 1/2 Oak Lane"),
            (some("38 1/2"), some("oak ln"), None)
        );
        assert_eq!(parts("tindale street"), (None, some("tindale st"), None));
    }

    #[test]
    fn units_and_postal_codes() {
        assert_eq!(unit_line("Apartment 12"), some("apt 12"));
        assert_eq!(unit_line("# 5"), some("apt 5"));
        assert_eq!(unit_line("  "), None);
        assert_eq!(postal_code("62704-1234"), some("62704"));
        assert_eq!(postal_code("627041234"), some("62704"));
        assert_eq!(postal_code("2119"), some("2119"));
        assert_eq!(postal_code("sw1a 1aa"), some("SW1A1AA"));
        assert_eq!(region("Illinois"), some("il"));
        assert_eq!(region("IL"), some("il"));
        assert_eq!(region("nsw"), some("nsw"));
    }
}
