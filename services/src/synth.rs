//! Synthetic US customer data with ground truth, for measuring accuracy (`c360 gen`).
//!
//! Persons live in households; each person appears in 1 to 6 records spread over the sources
//! `crm`, `web`, `pos`, `support` and `mobile`, each source filling the fields it has, with the
//! noise real systems add: typos, nicknames, format variants of emails, phones and addresses,
//! missing fields, people who moved (older records keep the old address), swapped names.
//! Hard negatives are built in: household members share an address, a surname, a landline and
//! sometimes a family email; some households have twins (same birth date and surname); very
//! common names are concentrated in a few cities. Every record of a household carries the
//! household as its `hard_negative_group`, so that precision on those pairs can be reported.

use c360_domain::RecordInput;
use c360_matching::normalize::name::Nicknames;
use c360_matching::rng::SplitMix;
use chrono::{Duration, NaiveDate};

const FEMALE: &[&str] = &[
    "mary",
    "patricia",
    "jennifer",
    "linda",
    "elizabeth",
    "barbara",
    "susan",
    "jessica",
    "sarah",
    "karen",
    "lisa",
    "nancy",
    "betty",
    "margaret",
    "sandra",
    "ashley",
    "kimberly",
    "emily",
    "donna",
    "michelle",
    "carol",
    "amanda",
    "dorothy",
    "melissa",
    "deborah",
    "stephanie",
    "rebecca",
    "sharon",
    "laura",
    "cynthia",
    "kathleen",
    "amy",
    "angela",
    "shirley",
    "anna",
    "brenda",
    "pamela",
    "emma",
    "nicole",
    "helen",
    "samantha",
    "katherine",
    "christine",
    "debra",
    "rachel",
    "carolyn",
    "janet",
    "catherine",
    "maria",
    "heather",
    "diane",
    "ruth",
    "julie",
    "olivia",
    "joyce",
    "virginia",
    "victoria",
    "kelly",
    "lauren",
    "christina",
    "joan",
    "evelyn",
    "judith",
    "megan",
    "andrea",
    "cheryl",
    "hannah",
    "jacqueline",
    "martha",
    "gloria",
    "teresa",
    "ann",
    "sara",
    "madison",
    "frances",
    "kathryn",
    "janice",
    "jean",
    "abigail",
    "alice",
    "judy",
    "sophia",
    "grace",
    "denise",
    "amber",
    "doris",
    "marilyn",
    "danielle",
    "beverly",
    "isabella",
    "theresa",
    "diana",
    "natalie",
    "brittany",
    "charlotte",
    "marie",
    "kayla",
    "alexis",
    "lori",
    "ximena",
    "guadalupe",
    "mei",
    "priya",
    "aisha",
    "yolanda",
];
const MALE: &[&str] = &[
    "james",
    "robert",
    "john",
    "michael",
    "david",
    "william",
    "richard",
    "joseph",
    "thomas",
    "charles",
    "christopher",
    "daniel",
    "matthew",
    "anthony",
    "mark",
    "donald",
    "steven",
    "paul",
    "andrew",
    "joshua",
    "kenneth",
    "kevin",
    "brian",
    "george",
    "timothy",
    "ronald",
    "edward",
    "jason",
    "jeffrey",
    "ryan",
    "jacob",
    "gary",
    "nicholas",
    "eric",
    "jonathan",
    "stephen",
    "larry",
    "justin",
    "scott",
    "brandon",
    "benjamin",
    "samuel",
    "gregory",
    "alexander",
    "frank",
    "patrick",
    "raymond",
    "jack",
    "dennis",
    "jerry",
    "tyler",
    "aaron",
    "jose",
    "adam",
    "nathan",
    "henry",
    "douglas",
    "zachary",
    "peter",
    "kyle",
    "ethan",
    "walter",
    "noah",
    "jeremy",
    "christian",
    "keith",
    "roger",
    "terry",
    "gerald",
    "harold",
    "sean",
    "austin",
    "carl",
    "arthur",
    "lawrence",
    "dylan",
    "jesse",
    "jordan",
    "bryan",
    "billy",
    "joe",
    "bruce",
    "gabriel",
    "logan",
    "albert",
    "willie",
    "alan",
    "juan",
    "wayne",
    "elijah",
    "randy",
    "roy",
    "vincent",
    "ralph",
    "eugene",
    "russell",
    "bobby",
    "mason",
    "philip",
    "louis",
    "wei",
    "rahul",
    "omar",
    "dmitri",
    "kwame",
    "hiroshi",
];
/// Surnames, most common first: the first ones are drawn far more often.
const SURNAMES: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "gomez",
    "phillips",
    "evans",
    "turner",
    "diaz",
    "parker",
    "cruz",
    "edwards",
    "collins",
    "reyes",
    "stewart",
    "morris",
    "morales",
    "murphy",
    "cook",
    "rogers",
    "gutierrez",
    "ortiz",
    "morgan",
    "cooper",
    "peterson",
    "bailey",
    "reed",
    "kelly",
    "howard",
    "ramos",
    "kim",
    "cox",
    "ward",
    "richardson",
    "watson",
    "brooks",
    "chavez",
    "wood",
    "james",
    "bennett",
    "gray",
    "mendoza",
    "ruiz",
    "hughes",
    "price",
    "alvarez",
    "castillo",
    "sanders",
    "patel",
    "myers",
    "long",
    "ross",
    "foster",
    "jimenez",
    "powell",
    "jenkins",
    "perry",
    "russell",
    "sullivan",
    "bell",
    "coleman",
    "butler",
    "henderson",
    "barnes",
    "gonzales",
    "fisher",
    "vasquez",
    "simmons",
    "romero",
    "jordan",
    "patterson",
    "alexander",
    "hamilton",
    "graham",
    "reynolds",
    "griffin",
    "wallace",
    "moreno",
    "west",
    "cole",
    "hayes",
    "bryant",
    "herrera",
    "gibson",
    "ellis",
    "tran",
    "medina",
    "aguilar",
    "stevens",
    "murray",
    "ford",
    "castro",
    "marshall",
    "owens",
    "harrison",
    "fernandez",
    "mcdonald",
    "woods",
    "washington",
    "kennedy",
    "wells",
    "vargas",
    "henry",
    "chen",
    "freeman",
    "webb",
    "tucker",
    "guzman",
    "burns",
    "crawford",
    "olson",
    "simpson",
    "porter",
    "hunter",
    "gordon",
    "mendez",
    "silva",
    "shaw",
    "snyder",
    "mason",
    "dixon",
    "munoz",
    "hunt",
    "hicks",
    "holmes",
    "palmer",
    "wagner",
    "black",
    "robertson",
    "boyd",
    "rose",
    "stone",
    "salazar",
    "fox",
    "warren",
    "mills",
    "meyer",
    "rice",
    "schmidt",
    "garza",
    "daniels",
    "ferguson",
    "nichols",
    "stephens",
    "soto",
    "weaver",
    "ryan",
    "gardner",
    "payne",
    "grant",
    "dunn",
    "kowalczyk",
    "oconnor",
    "nakamura",
    "abernathy",
    "vanderberg",
    "okafor",
    "lindqvist",
    "papadopoulos",
    "delacroix",
    "fitzgerald",
    "yamamoto",
    "kaczmarek",
    "oyelaran",
    "quintero",
];
const STREETS: &[&str] = &[
    "main",
    "oak",
    "pine",
    "maple",
    "cedar",
    "elm",
    "washington",
    "lake",
    "hill",
    "park",
    "view",
    "sunset",
    "lincoln",
    "jackson",
    "church",
    "river",
    "highland",
    "walnut",
    "chestnut",
    "spring",
    "willow",
    "meadow",
    "forest",
    "ridge",
    "franklin",
    "jefferson",
    "madison",
    "adams",
    "center",
    "north",
    "south",
    "mill",
    "valley",
    "cherry",
    "dogwood",
    "hickory",
    "laurel",
    "magnolia",
    "sycamore",
    "birch",
    "aspen",
    "juniper",
    "poplar",
    "spruce",
    "orchard",
    "prospect",
    "union",
    "market",
    "liberty",
    "broad",
    "water",
    "bridge",
    "school",
    "college",
    "academy",
    "grove",
    "summit",
    "fairview",
    "greenwood",
    "woodland",
    "lakeview",
    "hillcrest",
];
const SUFFIXES: &[(&str, &str)] = &[
    ("Street", "St"),
    ("Avenue", "Ave"),
    ("Road", "Rd"),
    ("Drive", "Dr"),
    ("Lane", "Ln"),
    ("Court", "Ct"),
    ("Boulevard", "Blvd"),
    ("Place", "Pl"),
    ("Way", "Way"),
    ("Terrace", "Ter"),
];
const DIRECTIONS: &[(&str, &str)] = &[("North", "N"), ("South", "S"), ("East", "E"), ("West", "W")];
/// City, state, first ZIP, area code.
const CITIES: &[(&str, &str, u32, u32)] = &[
    ("New York", "NY", 10001, 212),
    ("Los Angeles", "CA", 90001, 213),
    ("Chicago", "IL", 60601, 312),
    ("Houston", "TX", 77001, 713),
    ("Phoenix", "AZ", 85001, 602),
    ("Philadelphia", "PA", 19102, 215),
    ("San Antonio", "TX", 78201, 210),
    ("San Diego", "CA", 92101, 619),
    ("Dallas", "TX", 75201, 214),
    ("Austin", "TX", 78701, 512),
    ("Jacksonville", "FL", 32202, 904),
    ("Columbus", "OH", 43201, 614),
    ("Charlotte", "NC", 28202, 704),
    ("Indianapolis", "IN", 46201, 317),
    ("Seattle", "WA", 98101, 206),
    ("Denver", "CO", 80202, 303),
    ("Washington", "DC", 20001, 202),
    ("Boston", "MA", 2108, 617),
    ("Nashville", "TN", 37201, 615),
    ("Detroit", "MI", 48201, 313),
    ("Portland", "OR", 97201, 503),
    ("Memphis", "TN", 38103, 901),
    ("Louisville", "KY", 40202, 502),
    ("Baltimore", "MD", 21201, 410),
    ("Milwaukee", "WI", 53202, 414),
    ("Albuquerque", "NM", 87101, 505),
    ("Tucson", "AZ", 85701, 520),
    ("Fresno", "CA", 93701, 559),
    ("Sacramento", "CA", 95814, 916),
    ("Atlanta", "GA", 30303, 404),
    ("Omaha", "NE", 68102, 402),
    ("Raleigh", "NC", 27601, 919),
    ("Miami", "FL", 33101, 305),
    ("Minneapolis", "MN", 55401, 612),
    ("Tulsa", "OK", 74103, 918),
    ("Cleveland", "OH", 44113, 216),
    ("Wichita", "KS", 67202, 316),
    ("Springfield", "IL", 62701, 217),
    ("Madison", "WI", 53703, 608),
    ("Boise", "ID", 83702, 208),
];
const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "aol.com",
    "icloud.com",
    "comcast.net",
    "att.net",
];
const SOURCES: &[&str] = &["crm", "web", "pos", "support", "mobile"];

/// One generated record with its truth.
#[derive(Debug, Clone)]
pub struct SyntheticRecord {
    pub input: RecordInput,
    pub person_id: String,
    /// The household: records of different persons in one group are hard negatives.
    pub hard_negative_group: String,
}

#[derive(Debug, Clone)]
struct Address {
    number: u32,
    direction: Option<usize>,
    street: &'static str,
    suffix: usize,
    unit: Option<String>,
    city: usize,
    zip: u32,
}

#[derive(Debug, Clone)]
struct Person {
    id: usize,
    household: usize,
    first: &'static str,
    middle: Option<&'static str>,
    last: &'static str,
    dob: NaiveDate,
    email: String,
    family_email: Option<String>,
    mobile: String,
    landline: Option<String>,
    address: Address,
    previous_address: Option<Address>,
    loyalty_id: Option<String>,
    device_id: String,
    cookie_id: String,
}

/// Picks from a list with a Zipf-like skew: early entries are much more likely.
fn skewed<'a>(rng: &mut SplitMix, items: &'a [&'a str]) -> &'a str {
    let u = rng.float();
    items[((u * u * u) * items.len() as f64) as usize % items.len()]
}

fn random_address(rng: &mut SplitMix, city: usize) -> Address {
    let (_, _, zip, _) = CITIES[city];
    Address {
        number: 1 + rng.below(9_899) as u32,
        direction: rng.chance(0.2).then(|| rng.below(DIRECTIONS.len())),
        street: STREETS[rng.below(STREETS.len())],
        suffix: rng.below(SUFFIXES.len()),
        unit: rng.chance(0.25).then(|| format!("{}", 1 + rng.below(40))),
        city,
        zip: zip + rng.below(30) as u32,
    }
}

fn phone(rng: &mut SplitMix, area: u32) -> String {
    format!("{area}{:03}{:04}", 200 + rng.below(700), rng.below(10_000))
}

fn birth_date(rng: &mut SplitMix, min_age: i64, max_age: i64) -> NaiveDate {
    let today = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
    let days = 365 * min_age + rng.below((365 * (max_age - min_age)) as usize) as i64;
    today - Duration::days(days)
}

/// Introduces one typing error: a dropped, doubled, swapped or replaced letter.
fn typo(rng: &mut SplitMix, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() < 3 {
        return text.to_owned();
    }
    let i = 1 + rng.below(chars.len() - 2);
    match rng.below(4) {
        0 => {
            chars.remove(i);
        }
        1 => chars.insert(i, chars[i]),
        2 => chars.swap(i, i + 1),
        _ => chars[i] = (b'a' + rng.below(26) as u8) as char,
    }
    chars.into_iter().collect()
}

fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// A name as a source system writes it: capitalized, upper case or as typed.
fn styled(rng: &mut SplitMix, name: &str) -> String {
    match rng.below(10) {
        0 => name.to_uppercase(),
        1 => name.to_owned(),
        _ => capitalize(name),
    }
}

fn format_phone(rng: &mut SplitMix, digits: &str) -> String {
    let (a, b, c) = (&digits[..3], &digits[3..6], &digits[6..]);
    match rng.below(5) {
        0 => format!("({a}) {b}-{c}"),
        1 => format!("{a}-{b}-{c}"),
        2 => format!("+1 {a} {b} {c}"),
        3 => format!("{a}.{b}.{c}"),
        _ => digits.to_owned(),
    }
}

fn format_email(rng: &mut SplitMix, email: &str) -> String {
    match rng.below(6) {
        0 => email.to_uppercase(),
        1 if email.ends_with("@gmail.com") => {
            let (user, domain) = email.split_once('@').unwrap_or((email, ""));
            format!("{user}+shop@{domain}")
        }
        _ => email.to_owned(),
    }
}

fn format_address(rng: &mut SplitMix, a: &Address, record: &mut RecordInput) {
    let (long, short) = SUFFIXES[a.suffix];
    let suffix = if rng.chance(0.5) { long } else { short };
    let direction = a.direction.map(|d| {
        let (long, short) = DIRECTIONS[d];
        if rng.chance(0.5) {
            format!("{long} ")
        } else {
            format!("{short} ")
        }
    });
    let street = if rng.chance(0.04) {
        typo(rng, a.street)
    } else {
        a.street.to_owned()
    };
    // Clerks slip on house numbers too: a digit dropped or two swapped.
    let mut number = a.number.to_string();
    if rng.chance(0.03) {
        number = typo(rng, &format!("{number}0"))
            .trim_end_matches('0')
            .to_owned();
        if number.is_empty() {
            number = a.number.to_string();
        }
    }
    let line = format!(
        "{} {}{} {}",
        number,
        direction.unwrap_or_default(),
        capitalize(&street),
        suffix
    );
    record.address_line1 = Some(if rng.chance(0.1) {
        line.to_uppercase()
    } else {
        line
    });
    if let Some(unit) = &a.unit {
        if rng.chance(0.8) {
            record.address_line2 = Some(match rng.below(3) {
                0 => format!("Apt {unit}"),
                1 => format!("#{unit}"),
                _ => format!("Apartment {unit}"),
            });
        }
    }
    let (city, state, _, _) = CITIES[a.city];
    record.city = Some(city.to_owned());
    record.state = Some(state.to_owned());
    record.postal_code = Some(if rng.chance(0.1) {
        format!("{:05}-{:04}", a.zip, rng.below(10_000))
    } else {
        format!("{:05}", a.zip)
    });
}

fn email_for(rng: &mut SplitMix, first: &str, last: &str, n: usize) -> String {
    let domain = rng.pick(EMAIL_DOMAINS);
    let user = match rng.below(5) {
        0 => format!("{first}.{last}"),
        1 => format!("{}{last}", &first[..1]),
        2 => format!("{first}{last}{}", 10 + rng.below(89)),
        3 => format!("{first}_{}", 100 + n % 900),
        _ => format!("{last}.{first}{}", n % 100),
    };
    format!("{user}@{domain}")
}

/// Generates about `records` records.
pub fn generate(records: usize, seed: u64) -> Vec<SyntheticRecord> {
    let mut rng = SplitMix::new(seed);
    let mut persons: Vec<Person> = Vec::new();
    let nicknames = Nicknames::shipped();
    let mut household = 0;
    let mut emails_taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Persons until the expected record count is reached (2.57 records per person on average).
    while persons.len() * 257 < records * 100 {
        household += 1;
        // Common names gather in a few cities, so that "John Smith" meets "John Smith".
        let city = if rng.chance(0.5) {
            rng.below(5)
        } else {
            rng.below(CITIES.len())
        };
        let area = CITIES[city].3;
        let address = random_address(&mut rng, city);
        let last = skewed(&mut rng, SURNAMES);
        let size = match rng.below(10) {
            0..=5 => 1,
            6 | 7 => 2,
            8 => 3,
            _ => 4,
        };
        let landline = (size > 1 && rng.chance(0.6)).then(|| phone(&mut rng, area));
        let family_email = (size > 1 && rng.chance(0.25))
            .then(|| format!("the{last}family{}@gmail.com", household % 1000));
        let twins = size >= 3 && rng.chance(0.35);
        let twin_dob = birth_date(&mut rng, 18, 30);
        let mut used_first: Vec<&str> = Vec::new();
        for member in 0..size {
            let female = rng.chance(0.5);
            let mut first = skewed(&mut rng, if female { FEMALE } else { MALE });
            while used_first.contains(&first) {
                first = *rng.pick(if female { FEMALE } else { MALE });
            }
            used_first.push(first);
            let is_twin = twins && member >= size - 2;
            let dob = if is_twin {
                twin_dob
            } else if member < 2 {
                birth_date(&mut rng, 30, 85)
            } else {
                birth_date(&mut rng, 18, 30)
            };
            let id = persons.len();
            let moved = rng.chance(0.15);
            persons.push(Person {
                id,
                household,
                first,
                middle: rng.chance(0.3).then(|| *rng.pick(MALE)),
                // Some spouses keep their own surname.
                last: if member == 1 && rng.chance(0.3) {
                    skewed(&mut rng, SURNAMES)
                } else {
                    last
                },
                dob,
                email: {
                    // A mailbox belongs to one person: on a collision, a number goes after the
                    // name, as providers suggest (the person's id keeps it unique).
                    let mut email = email_for(&mut rng, first, last, id);
                    if !emails_taken.insert(email.clone()) {
                        let (user, domain) = email.split_once('@').unwrap_or((&email, ""));
                        email = format!("{user}{id}@{domain}");
                        emails_taken.insert(email.clone());
                    }
                    email
                },
                family_email: family_email.clone(),
                mobile: phone(&mut rng, area),
                landline: landline.clone(),
                address: address.clone(),
                previous_address: moved.then(|| {
                    let other = rng.below(CITIES.len());
                    random_address(&mut rng, other)
                }),
                loyalty_id: rng.chance(0.5).then(|| format!("L{:08}", 10_000_000 + id)),
                device_id: format!("dev-{:012x}", rng.next_u64() >> 16),
                cookie_id: format!("ck-{:016x}", rng.next_u64()),
            });
        }
    }

    let mut out = Vec::with_capacity(records + 8);
    let mut next_id = 0usize;
    for person in &persons {
        let count = match rng.below(100) {
            0..=29 => 1,
            30..=54 => 2,
            55..=74 => 3,
            75..=86 => 4,
            87..=94 => 5,
            _ => 6,
        };
        for n in 0..count {
            next_id += 1;
            let source = *rng.pick(SOURCES);
            let mut r = RecordInput {
                source: Some(source.to_owned()),
                source_id: Some(format!("{}-{next_id:07}", &source[..1].to_uppercase())),
                ..RecordInput::default()
            };
            // The first name as this system knows it: sometimes a nickname, sometimes a typo.
            let mut first = person.first.to_owned();
            if rng.chance(0.2) {
                let variants = nicknames.variants(person.first);
                if !variants.is_empty() {
                    first = (*rng.pick(&variants)).to_owned();
                }
            }
            if rng.chance(0.06) {
                first = typo(&mut rng, &first);
            }
            let mut last = person.last.to_owned();
            if rng.chance(0.06) {
                last = typo(&mut rng, &last);
            }
            if rng.chance(0.01) {
                std::mem::swap(&mut first, &mut last);
            }
            // Old records of movers carry the old address.
            let address = match &person.previous_address {
                Some(previous) if n == 0 && count > 1 => previous,
                _ => &person.address,
            };
            let wants = |rng: &mut SplitMix, p: f64| rng.chance(p);
            let email = if person.family_email.is_some() && rng.chance(0.2) {
                person.family_email.clone()
            } else {
                Some(person.email.clone())
            };
            let phone = match &person.landline {
                Some(landline) if rng.chance(0.4) => landline.clone(),
                _ => person.mobile.clone(),
            };
            // What each system asks for: the web shop and the app log in by email, the point of
            // sale by phone or loyalty card, the CRM and the support desk keep fuller profiles.
            let (has_name, mut has_email, mut has_phone, has_dob, has_address) = match source {
                "crm" => (
                    true,
                    wants(&mut rng, 0.9),
                    wants(&mut rng, 0.85),
                    wants(&mut rng, 0.75),
                    wants(&mut rng, 0.95),
                ),
                "web" => (
                    wants(&mut rng, 0.9),
                    true,
                    wants(&mut rng, 0.4),
                    wants(&mut rng, 0.2),
                    wants(&mut rng, 0.6),
                ),
                "pos" => (
                    wants(&mut rng, 0.9),
                    wants(&mut rng, 0.3),
                    wants(&mut rng, 0.9),
                    false,
                    wants(&mut rng, 0.3),
                ),
                "support" => (
                    true,
                    wants(&mut rng, 0.8),
                    wants(&mut rng, 0.8),
                    wants(&mut rng, 0.3),
                    wants(&mut rng, 0.3),
                ),
                _ => (
                    wants(&mut rng, 0.8),
                    wants(&mut rng, 0.95),
                    wants(&mut rng, 0.7),
                    false,
                    false,
                ),
            };
            // Every system keeps at least one way to reach the customer.
            let has_loyalty = matches!(source, "crm" | "pos") && person.loyalty_id.is_some();
            if !(has_email || has_phone || has_loyalty) {
                if rng.chance(0.5) {
                    has_email = true;
                } else {
                    has_phone = true;
                }
            }
            if has_name || !(has_email || has_phone) {
                r.first_name = Some(styled(&mut rng, &first));
                r.last_name = Some(styled(&mut rng, &last));
                if let Some(middle) = person.middle.filter(|_| source == "crm") {
                    r.middle_name = Some(capitalize(middle));
                }
            }
            if has_email {
                r.email = email.map(|e| format_email(&mut rng, &e));
            }
            if has_phone {
                r.phone = Some(format_phone(&mut rng, &phone));
            }
            if has_dob {
                let dob = if rng.chance(0.03) {
                    person.dob + Duration::days(1 + rng.below(27) as i64)
                } else {
                    person.dob
                };
                r.date_of_birth = Some(match rng.below(3) {
                    0 => dob.format("%m/%d/%Y").to_string(),
                    _ => dob.format("%Y-%m-%d").to_string(),
                });
            }
            if has_address {
                format_address(&mut rng, address, &mut r);
            } else if source == "pos" && rng.chance(0.5) {
                r.postal_code = Some(format!("{:05}", address.zip));
            }
            if matches!(source, "crm" | "pos") {
                r.loyalty_id = person.loyalty_id.clone();
            }
            if source == "mobile" {
                r.device_id = Some(person.device_id.clone());
            }
            if source == "web" && rng.chance(0.7) {
                r.cookie_id = Some(person.cookie_id.clone());
            }
            let days_ago = rng.below(1_000) as i64;
            r.updated_at = Some(format!(
                "{}T{:02}:{:02}:00Z",
                (NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default()
                    - Duration::days(days_ago)),
                rng.below(24),
                rng.below(60)
            ));
            out.push(SyntheticRecord {
                input: r,
                person_id: format!("p{}", person.id),
                hard_negative_group: format!("h{}", person.household),
            });
        }
    }
    // Interleave persons so that a file is not sorted by person.
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::Profile;

    #[test]
    fn generates_valid_reproducible_records_with_truth() {
        let a = generate(3_000, 7);
        let b = generate(3_000, 7);
        assert_eq!(a.len(), b.len());
        assert!(a.len() > 2_500 && a.len() < 3_600, "{}", a.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.input.source_id, y.input.source_id);
            assert_eq!(x.person_id, y.person_id);
        }
        let invalid = a
            .iter()
            .filter(|r| Profile::parse(&r.input).is_err())
            .count();
        assert_eq!(invalid, 0, "every generated record parses");
        let persons: std::collections::HashSet<&str> =
            a.iter().map(|r| r.person_id.as_str()).collect();
        assert!(persons.len() * 2 < a.len(), "persons repeat across records");
        let households: std::collections::HashSet<&str> =
            a.iter().map(|r| r.hard_negative_group.as_str()).collect();
        assert!(
            households.len() < persons.len(),
            "some households have several persons"
        );
    }
}
