//! Field-by-field comparison of two records: each field pair becomes a comparison *level*
//! (exact, close, phonetic, different, missing...), using Jaro-Winkler and Damerau-Levenshtein
//! from `strsim`, phonetic codes and the nickname table.

use serde::{Deserialize, Serialize};
use strsim::jaro_winkler;

use crate::features::{AddressFeature, Features, NameFeature};
use crate::normalize::name::Nicknames;

/// The fields compared. Every field's level 0 is `missing` (one side has no value; it weighs
/// nothing) and its last level is `different`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    FirstName,
    LastName,
    DateOfBirth,
    Email,
    Phone,
    /// The postal address as a whole: its parts (number, street, city, postal code) are far
    /// from independent, so weighing each would count one fact several times.
    Address,
    LoyaltyId,
    DeviceId,
    CookieId,
}

pub const FIELD_COUNT: usize = 9;

impl Field {
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::FirstName,
        Field::LastName,
        Field::DateOfBirth,
        Field::Email,
        Field::Phone,
        Field::Address,
        Field::LoyaltyId,
        Field::DeviceId,
        Field::CookieId,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The level names, best first after `missing`.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::FirstName => &[
                "missing",
                "exact",
                "nickname",
                "close",
                "fuzzy",
                "different",
            ],
            Field::LastName => &["missing", "exact", "close", "fuzzy", "different"],
            Field::Email => &["missing", "exact", "same_user", "different"],
            Field::Address => &[
                "missing",
                "exact",
                "close",
                "same_street",
                "same_postal_code",
                "same_area",
                "different",
            ],
            Field::LoyaltyId | Field::DeviceId | Field::CookieId => {
                &["missing", "exact", "different"]
            }
            _ => &["missing", "exact", "close", "different"],
        }
    }

    pub fn level_name(self, level: u8) -> &'static str {
        self.levels().get(level as usize).copied().unwrap_or("?")
    }

    pub fn level_index(self, name: &str) -> Option<u8> {
        self.levels()
            .iter()
            .position(|l| *l == name)
            .map(|i| i as u8)
    }

    pub fn different(self) -> u8 {
        (self.levels().len() - 1) as u8
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::DateOfBirth => "date_of_birth",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::Address => "address",
            Field::LoyaltyId => "loyalty_id",
            Field::DeviceId => "device_id",
            Field::CookieId => "cookie_id",
        }
    }
}

pub const MISSING: u8 = 0;
pub const EXACT: u8 = 1;

/// The levels of one record pair, indexed by [`Field::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comparison {
    pub levels: [u8; FIELD_COUNT],
    /// First and last names were found swapped between the two records.
    pub names_swapped: bool,
}

impl Comparison {
    pub fn level(&self, field: Field) -> u8 {
        self.levels[field.index()]
    }
}

/// Level of two optional values compared by `f`, or `missing`.
fn both<T: ?Sized, U: ?Sized>(a: Option<&T>, b: Option<&U>, f: impl FnOnce(&T, &U) -> u8) -> u8 {
    match (a, b) {
        (Some(a), Some(b)) => f(a, b),
        _ => MISSING,
    }
}

/// The best level over every pair of values of a multi-valued field.
fn best_of(a: &[String], b: &[String], f: impl Fn(&str, &str) -> u8) -> u8 {
    let mut best = MISSING;
    for x in a {
        for y in b {
            let level = f(x, y);
            if best == MISSING || level < best {
                best = level;
            }
        }
    }
    best
}

/// Levels for a string field with `exact`, `close` (Jaro-Winkler >= `close`) and optionally
/// `fuzzy` (Jaro-Winkler >= `fuzzy` or phonetic codes equal) before `different`.
fn graded(a: &str, b: &str, close: f64, fuzzy: Option<f64>, phonetic_equal: bool) -> u8 {
    if a == b {
        return EXACT;
    }
    let similarity = jaro_winkler_from(a, b, fuzzy.map_or(close, |f| f.min(close)));
    if similarity >= close {
        return 2;
    }
    match fuzzy {
        Some(threshold) if similarity >= threshold || phonetic_equal => 3,
        Some(_) => 4,
        None => 3,
    }
}

fn first_name_level(a: &NameFeature, b: &NameFeature) -> u8 {
    if a.text == b.text {
        return EXACT;
    }
    let (fa, fb) = (a.first_word(), b.first_word());
    if a.first_words_related(b) || a.canonical == b.canonical {
        return 2;
    }
    let similarity = jaro_winkler_from(&a.text, &b.text, 0.8);
    if similarity >= 0.9 {
        return 3;
    }
    // Two given names the table knows, and not of one family, are two names, however alike
    // (Mary and Mark, Gary and Mary, Brenda and Brian): not a typo of one. Household members
    // share a surname, an address and a phone, and such pairs were most of the false links
    // that a merely similar first name let through (F1 0.9657 to 0.9676 on generated data).
    if a.first_word_is_known() && b.first_word_is_known() {
        return 5;
    }
    // One typo (an edit or a transposition) is close however short the names: Jaro-Winkler
    // rates "Myry" against "Mary" and "Kmi" against "Kim" low.
    if fa.len().min(fb.len()) >= 2 && fa.len().max(fb.len()) >= 3 && within_one_edit_str(fa, fb) {
        return 3;
    }
    // An initial matches a name that starts with it.
    let initial = |x: &str, y: &str| x.len() == 1 && y.starts_with(x);
    if similarity >= 0.8
        || (!a.phonetic.is_empty() && a.phonetic == b.phonetic)
        || initial(fa, fb)
        || initial(fb, fa)
    {
        return 4;
    }
    // A mistyped nickname: "Zader" for Alexander is close to "Zander", "Rbo" for Robert is one
    // transposition from "Rob". Most first names that get this far share too few letters with
    // any of the family for Jaro-Winkler to reach 0.85: the bound skips them without
    // computing it.
    let nicknames = Nicknames::shipped();
    let near_family = |x: &str, y: &str| {
        x.len() >= 2
            && nicknames.family(y).any(|n| {
                (x.len() >= 3 && n.len() >= 3 && jaro_winkler_at_least(x, n, 0.85))
                    || (n.len() >= 2 && within_one_edit_str(x, n))
            })
    };
    if near_family(fa, fb) || near_family(fb, fa) {
        return 4;
    }
    5
}

fn last_name_level(a: &NameFeature, b: &NameFeature) -> u8 {
    // Hyphenated or double surnames: one part equal to the other name is a close match.
    let part_of = |x: &NameFeature, y: &NameFeature| {
        y.has_several_words() && y.text.split(' ').any(|p| p == x.text)
    };
    if a.text != b.text && (part_of(a, b) || part_of(b, a)) {
        return 2;
    }
    graded(
        &a.text,
        &b.text,
        0.92,
        Some(0.8),
        !a.phonetic.is_empty() && a.phonetic == b.phonetic,
    )
}

/// `exact`, `close` (one typo: an edit, a transposition, or day and month swapped),
/// `different`.
fn date_level(a: &chrono::NaiveDate, b: &chrono::NaiveDate) -> u8 {
    use chrono::Datelike;
    if a == b {
        return EXACT;
    }
    let swapped = a.year() == b.year() && a.month() == b.day() && a.day() == b.month();
    let one_slip = match (date_digits(a), date_digits(b)) {
        (Some(x), Some(y)) => within_one_edit(&x, &y),
        _ => {
            let text =
                |d: &chrono::NaiveDate| format!("{:04}{:02}{:02}", d.year(), d.month(), d.day());
            within_one_edit_str(&text(a), &text(b))
        }
    };
    if swapped || one_slip {
        return 2;
    }
    3
}

fn email_level(a: &str, b: &str) -> u8 {
    if a == b {
        return EXACT;
    }
    fn user(e: &str) -> &str {
        e.rsplit_once('@').map_or("", |(u, _)| u)
    }
    if user(a) == user(b) && user(a).len() >= 4 {
        2
    } else {
        3
    }
}

/// `close` for a one-digit typo, or the same subscriber number under another area code.
fn phone_level(a: &str, b: &str) -> u8 {
    if a == b {
        return EXACT;
    }
    let same_tail = a.chars().rev().take(7).eq(b.chars().rev().take(7));
    if within_one_edit_str(a, b) || (a.len() >= 10 && same_tail) {
        2
    } else {
        3
    }
}

fn exact_or_different(a: &str, b: &str) -> u8 {
    if a == b {
        EXACT
    } else {
        2
    }
}

/// House numbers: `close` only for a slip that keeps the digits (a transposition, a digit
/// dropped or doubled): 12 and 14 are neighbours, not a typo.
fn house_level(a: &str, b: &str) -> u8 {
    if a == b {
        return EXACT;
    }
    let sorted = |s: &str| {
        let mut c: Vec<char> = s.chars().collect();
        c.sort_unstable();
        c
    };
    if within_one_edit_str(a, b) && (a.len() != b.len() || sorted(a) == sorted(b)) {
        2
    } else {
        3
    }
}

/// One address against another:
/// - `exact`: same house number and street, in the same postal code or city (units, when both
///   are given, agree);
/// - `close`: the same with typos (a close street name, a one-digit slip in the number or the
///   postal code);
/// - `same_street`: the street in the same area, another number (neighbours, or a move down the
///   road);
/// - `same_postal_code`: only the postal code agrees (a ZIP holds far fewer people than a city:
///   on generated data, the same full name in the same ZIP with nothing else to compare was
///   the same person in every one of 368 pairs);
/// - `same_area`: only the city agrees;
/// - `different`: the postal code and the city disagree; `missing` when nothing is comparable.
fn address_level(a: &AddressFeature, b: &AddressFeature) -> u8 {
    fn pair<'x>(x: &'x Option<String>, y: &'x Option<String>) -> Option<(&'x str, &'x str)> {
        Some((x.as_deref()?, y.as_deref()?))
    }
    let zip = pair(&a.postal_code, &b.postal_code);
    let city = pair(&a.city, &b.city);
    let zip_exact = zip.is_some_and(|(x, y)| x == y);
    let zip_close = zip.is_some_and(|(x, y)| within_one_edit_str(x, y));
    let city_same = city.is_some_and(|(x, y)| x == y || jaro_winkler_at_least(x, y, 0.88));
    let area = zip_exact || city_same;
    let area_close = area || zip_close;

    let street = pair(&a.street, &b.street).map(|(x, y)| graded(x, y, 0.92, Some(0.8), false));
    let house = pair(&a.house_number, &b.house_number).map(|(x, y)| house_level(x, y));
    let units_agree = pair(&a.unit, &b.unit).is_none_or(|(x, y)| x == y);

    match (street, house) {
        (Some(EXACT), Some(EXACT)) if area && units_agree => return EXACT,
        (Some(EXACT), Some(EXACT)) if area_close => return 2,
        (Some(s), Some(h)) if s <= 3 && h <= 2 && area_close => return 2,
        // No number on one side is no conflict: "Tindale Street" and "38 Tindale Street".
        (Some(s), None) if s <= 2 && area => return 2,
        (Some(s), _) if s <= 2 && area_close => return 3,
        _ => {}
    }
    if zip_exact {
        4
    } else if area {
        5
    } else if zip.is_some() || city.is_some() {
        6
    } else {
        MISSING
    }
}

/// Whether Damerau-Levenshtein distance of `a` and `b` is at most 1 (one insertion, deletion,
/// substitution or transposition of neighbours), without the distance matrix that
/// `strsim::damerau_levenshtein` allocates: phones, dates, house numbers and postal codes are
/// compared this way in most candidate pairs.
fn within_one_edit<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let Some(i) = short.iter().zip(long).position(|(x, y)| x != y) else {
        return true; // equal, or one character appended
    };
    if short.len() == long.len() {
        short[i + 1..] == long[i + 1..]
            || (i + 1 < short.len()
                && short[i] == long[i + 1]
                && short[i + 1] == long[i]
                && short[i + 2..] == long[i + 2..])
    } else {
        short[i..] == long[i + 1..]
    }
}

/// [`within_one_edit`] over characters; ASCII text (the usual case) is compared as bytes.
fn within_one_edit_str(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        within_one_edit(a.as_bytes(), b.as_bytes())
    } else {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        within_one_edit(&a, &b)
    }
}

/// `YYYYMMDD`, the digits a date is typed with, for years 0 to 9999.
fn date_digits(d: &chrono::NaiveDate) -> Option<[u8; 8]> {
    use chrono::Datelike;
    let year = u32::try_from(d.year()).ok().filter(|&y| y <= 9999)?;
    let mut out = [b'0'; 8];
    let mut put = |at: usize, width: usize, mut value: u32| {
        for k in (at..at + width).rev() {
            out[k] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(4, 2, d.month());
    put(6, 2, d.day());
    Some(out)
}

/// Whether Jaro-Winkler similarity of `a` and `b` can reach `threshold`: `false` means it
/// cannot, `true` that it might. Jaro matches equal characters one to one, so a string has at
/// most as many matching characters as it has characters that occur in the other at all; with
/// that bound on the matches and the largest prefix bonus Winkler adds, most unlike names are
/// ruled out without computing the similarity.
fn may_reach_jaro_winkler(a: &str, b: &str, threshold: f64) -> bool {
    if !(a.is_ascii() && b.is_ascii()) || a.is_empty() || b.is_empty() {
        return true;
    }
    let letters = |s: &str| s.bytes().fold(0u128, |mask, c| mask | 1 << c);
    let occurring_in = |s: &str, mask: u128| s.bytes().filter(|&c| mask & (1 << c) != 0).count();
    let (la, lb) = (a.len() as f64, b.len() as f64);
    let m = occurring_in(a, letters(b)).min(occurring_in(b, letters(a))) as f64;
    // Jaro <= (m/|a| + m/|b| + 1) / 3; Winkler adds at most 0.1 * 4 * (1 - Jaro).
    let jaro = (m / la + m / lb + 1.0) / 3.0;
    jaro + 0.4 * (1.0 - jaro) >= threshold
}

/// Jaro-Winkler similarity of `a` and `b` when it may reach `floor` (above 0), else 0: for
/// callers to which any value below `floor` means the same.
fn jaro_winkler_from(a: &str, b: &str, floor: f64) -> f64 {
    if may_reach_jaro_winkler(a, b, floor) {
        jaro_winkler(a, b)
    } else {
        0.0
    }
}

/// `jaro_winkler(a, b) >= threshold`, computed only when the bound says it may hold.
fn jaro_winkler_at_least(a: &str, b: &str, threshold: f64) -> bool {
    may_reach_jaro_winkler(a, b, threshold) && jaro_winkler(a, b) >= threshold
}

/// Compares two records field by field.
pub fn compare(a: &Features, b: &Features) -> Comparison {
    let mut levels = [MISSING; FIELD_COUNT];
    let mut names_swapped = false;

    levels[Field::FirstName.index()] = both(a.first.as_ref(), b.first.as_ref(), first_name_level);
    levels[Field::LastName.index()] = both(a.last.as_ref(), b.last.as_ref(), last_name_level);
    if let (Some(af), Some(al), Some(bf), Some(bl)) = (&a.first, &a.last, &b.first, &b.last) {
        let first = levels[Field::FirstName.index()];
        // How alike two crossed names are: 1 for a nickname of the other ("Evans Pattie"
        // against "Patricia Evans"), else their Jaro-Winkler similarity when they are alike.
        let crossed_alike = |x: &NameFeature, y: &NameFeature| {
            if x.text == y.text || Nicknames::shipped().related(&x.text, &y.text) {
                Some(1.0)
            } else if jaro_winkler_at_least(&x.text, &y.text, 0.85)
                || (!x.phonetic.is_empty() && x.phonetic == y.phonetic)
            {
                Some(jaro_winkler(&x.text, &y.text))
            } else {
                None
            }
        };
        // Swapped only when crossing the names fits clearly better than reading them straight
        // ("Jon Johnson" and "John Jonson" are not swapped). An exact first name is never
        // swapped, and crossed names that are not alike are not: most pairs stop there, before
        // four Jaro-Winkler similarities.
        let crossed = (first != EXACT)
            .then(|| crossed_alike(af, bl).zip(crossed_alike(al, bf)))
            .flatten();
        if let Some((one, other)) = crossed {
            let straight = jaro_winkler(&af.text, &bf.text) + jaro_winkler(&al.text, &bl.text);
            let crossed = one + other;
            if crossed > straight + 0.2 {
                names_swapped = true;
                levels[Field::FirstName.index()] = 3;
                levels[Field::LastName.index()] = 2;
            }
        }
    }
    levels[Field::DateOfBirth.index()] = both(a.dob.as_ref(), b.dob.as_ref(), date_level);
    levels[Field::Email.index()] = best_of(&a.emails, &b.emails, email_level);
    levels[Field::Phone.index()] = best_of(&a.phones, &b.phones, phone_level);
    levels[Field::LoyaltyId.index()] = both(
        a.loyalty_id.as_deref(),
        b.loyalty_id.as_deref(),
        exact_or_different,
    );
    levels[Field::DeviceId.index()] = both(
        a.device_id.as_deref(),
        b.device_id.as_deref(),
        exact_or_different,
    );
    levels[Field::CookieId.index()] = both(
        a.cookie_id.as_deref(),
        b.cookie_id.as_deref(),
        exact_or_different,
    );

    let mut best = MISSING;
    for x in &a.addresses {
        for y in &b.addresses {
            let level = address_level(x, y);
            if best == MISSING || (level != MISSING && level < best) {
                best = level;
            }
        }
    }
    levels[Field::Address.index()] = best;
    Comparison {
        levels,
        names_swapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::{Profile, RecordInput};

    fn features(json: serde_json::Value) -> Features {
        let mut json = json;
        json["source"] = "t".into();
        json["source_id"] = "1".into();
        Features::of(
            &Profile::parse(&serde_json::from_value::<RecordInput>(json).unwrap()).unwrap(),
        )
    }

    fn level_names(
        a: serde_json::Value,
        b: serde_json::Value,
    ) -> Vec<(&'static str, &'static str)> {
        let c = compare(&features(a), &features(b));
        Field::ALL
            .into_iter()
            .filter(|f| c.level(*f) != MISSING)
            .map(|f| (f.name(), f.level_name(c.level(f))))
            .collect()
    }

    #[test]
    fn names_levels() {
        use serde_json::json;
        let pairs = [
            (("Robert", "Smith"), ("Robert", "Smith"), ("exact", "exact")),
            (("Bob", "Smith"), ("Robert", "Smyth"), ("nickname", "fuzzy")),
            (
                ("Katherine", "Jones"),
                ("Kathryn", "Jones"),
                ("nickname", "exact"),
            ),
            (
                ("Jonathon", "Jones"),
                ("Jonathan", "Jones"),
                ("close", "exact"),
            ),
            (
                ("Jon", "Johnson"),
                ("John", "Jonson"),
                ("nickname", "close"),
            ),
            (("J", "Thompson"), ("John", "Tomsen"), ("fuzzy", "fuzzy")),
            (
                ("Zader", "Miller"),
                ("Alexander", "Miller"),
                ("fuzzy", "exact"),
            ),
            (
                ("Alice", "Smith"),
                ("Maria", "Garcia"),
                ("different", "different"),
            ),
            (
                ("Maria", "Garcia Lopez"),
                ("Maria", "Garcia"),
                ("exact", "close"),
            ),
            // Two given names the nickname table knows, of different families: two people
            // however alike the names look.
            (("Mark", "Hall"), ("Mary", "Hall"), ("different", "exact")),
            (("Gary", "Cruz"), ("Mary", "Cruz"), ("different", "exact")),
            // One typo is close, even in a short name Jaro-Winkler rates low.
            (("Myry", "Hall"), ("Mary", "Hall"), ("close", "exact")),
            (("Kmi", "Hall"), ("Kim", "Hall"), ("close", "exact")),
            (("Ay", "Hall"), ("Amy", "Hall"), ("close", "exact")),
            // A nickname with a typo: one transposition from Rob.
            (("Rbo", "Hall"), ("Robert", "Hall"), ("fuzzy", "exact")),
        ];
        for ((f1, l1), (f2, l2), (ef, el)) in pairs {
            let levels = level_names(
                json!({"first_name": f1, "last_name": l1}),
                json!({"first_name": f2, "last_name": l2}),
            );
            assert_eq!(
                levels,
                vec![("first_name", ef), ("last_name", el)],
                "{f1} {l1} vs {f2} {l2}"
            );
        }
    }

    #[test]
    fn swapped_names_are_detected() {
        use serde_json::json;
        let a = features(json!({"first_name": "Smith", "last_name": "John"}));
        let b = features(json!({"first_name": "John", "last_name": "Smith"}));
        let c = compare(&a, &b);
        assert!(c.names_swapped);
        assert_eq!(
            Field::FirstName.level_name(c.level(Field::FirstName)),
            "close"
        );
        // Swapped, and a nickname on one side.
        let a = features(json!({"first_name": "Evans", "last_name": "Pattie"}));
        let b = features(json!({"first_name": "Patricia", "last_name": "Evans"}));
        assert!(compare(&a, &b).names_swapped);
        // Not swapped: two people of one family.
        let a = features(json!({"first_name": "Evans", "last_name": "Mark"}));
        assert!(!compare(&a, &b).names_swapped);
    }

    #[test]
    fn dates_phones_emails_addresses() {
        use serde_json::json;
        assert_eq!(
            level_names(
                json!({"date_of_birth": "1984-07-12"}),
                json!({"date_of_birth": "1984-12-07"})
            ),
            vec![("date_of_birth", "close")]
        );
        assert_eq!(
            level_names(
                json!({"date_of_birth": "1984-07-12"}),
                json!({"date_of_birth": "1984-07-13"})
            ),
            vec![("date_of_birth", "close")]
        );
        assert_eq!(
            level_names(
                json!({"date_of_birth": "1984-07-12"}),
                json!({"date_of_birth": "1991-03-30"})
            ),
            vec![("date_of_birth", "different")]
        );
        assert_eq!(
            level_names(
                json!({"phone": "555 123 4567"}),
                json!({"phone": "+1 (555) 123-4567"})
            ),
            vec![("phone", "exact")]
        );
        assert_eq!(
            level_names(
                json!({"phone": "555 123 4567"}),
                json!({"phone": "555 123 4568"})
            ),
            vec![("phone", "close")]
        );
        assert_eq!(
            level_names(
                json!({"email": "jdoe@gmail.com"}),
                json!({"email": "jdoe@yahoo.com"})
            ),
            vec![("email", "same_user")]
        );
        assert_eq!(
            level_names(
                json!({"email": "a.b@gmail.com", "emails": ["x@y.com"]}),
                json!({"email": "ab@gmail.com"})
            ),
            vec![("email", "exact")]
        );
        let address = |line: &str, city: &str, zip: &str| json!({"address_line1": line, "city": city, "postal_code": zip});
        let cases = [
            (
                address("12 North Main Street", "Springfield", "62704"),
                address("12 N Main St", "springfield", "62704"),
                "exact",
            ),
            (
                address("12 North Main Street", "Springfield", "62704"),
                address("12 N Main St Apt 2", "Springfeld", "62705"),
                "exact",
            ),
            (
                address("12 Main Street", "Springfield", "62704"),
                address("12 Mian Street", "Boston", "62705"),
                "close",
            ),
            (
                address("12 Main Street", "Springfield", "62704"),
                address("14 Main Street", "Springfield", "62704"),
                "same_street",
            ),
            (
                address("12 Main Street", "Springfield", "62704"),
                address("9 Oak Ave", "Springfield", "62704"),
                "same_postal_code",
            ),
            (
                address("12 Main Street", "Springfield", "62704"),
                address("9 Oak Ave", "Springfield", "62711"),
                "same_area",
            ),
            (
                address("12 Main Street", "Springfield", "62704"),
                address("12 Main Street", "Boston", "02108"),
                "different",
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                level_names(a.clone(), b.clone()),
                vec![("address", expected)],
                "{a} / {b}"
            );
        }
        assert_eq!(
            level_names(
                json!({"address_line1": "1 Elm St Apt 1", "postal_code": "10001"}),
                json!({"address_line1": "1 Elm St Apt 2", "postal_code": "10001"})
            ),
            vec![("address", "close")],
            "another apartment of the building"
        );
        assert_eq!(
            level_names(json!({"first_name": "Ann"}), json!({"last_name": "Lee"})),
            vec![]
        );
    }

    proptest::proptest! {
        /// The shortcut agrees with strsim's Damerau-Levenshtein on every pair of strings.
        #[test]
        fn within_one_edit_is_damerau_levenshtein_at_most_one(
            a in "[01aé]{0,6}",
            b in "[01aé]{0,6}",
        ) {
            proptest::prop_assert_eq!(
                within_one_edit_str(&a, &b),
                strsim::damerau_levenshtein(&a, &b) <= 1
            );
        }

        /// The bound never skips a pair Jaro-Winkler would pass.
        #[test]
        fn jaro_winkler_bound_never_skips_a_passing_pair(
            a in "[a-e]{1,9}",
            b in "[a-e]{1,9}",
            threshold in 0.5f64..1.0,
        ) {
            if jaro_winkler(&a, &b) >= threshold {
                proptest::prop_assert!(may_reach_jaro_winkler(&a, &b, threshold));
            }
        }
    }

    #[test]
    fn one_edit_cases_and_date_digits() {
        for (a, b, expected) in [
            ("+12025550123", "+12025550123", true),
            ("+12025550123", "+12025550132", true), // neighbours swapped
            ("+12025550123", "+1202555013", true),  // one dropped
            ("+12025550123", "+12025550321", false), // two apart swapped
            ("12", "21", true),
            ("123", "1234", true),
            ("123", "12345", false),
            ("", "1", true),
        ] {
            assert_eq!(within_one_edit_str(a, b), expected, "{a} / {b}");
        }
        let date = chrono::NaiveDate::from_ymd_opt(1984, 3, 7).unwrap();
        assert_eq!(&date_digits(&date).unwrap(), b"19840307");
        assert!(may_reach_jaro_winkler("zader", "zander", 0.85));
        assert!(!may_reach_jaro_winkler("bob", "elizabeth", 0.85));
    }
}
