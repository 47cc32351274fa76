//! Person names: Unicode folding, honorifics and suffixes, nickname groups, phonetic codes.

use std::collections::HashMap;
use std::sync::OnceLock;

use rphonetic::{DoubleMetaphone, Encoder};
use unicode_normalization::UnicodeNormalization;

/// Lower-case ASCII letters, digits and single spaces: accents dropped (`José` -> `jose`),
/// apostrophes joined (`O'Brien` -> `obrien`), other punctuation read as a space
/// (`Mary-Jane` -> `mary jane`).
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.nfkd() {
        if unicode_normalization::char::is_combining_mark(c) || matches!(c, '\'' | '’' | '`') {
            continue;
        }
        if c.is_alphanumeric() {
            for lower in c.to_lowercase() {
                if lower.is_ascii() {
                    out.push(lower);
                }
            }
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

const HONORIFICS: [&str; 14] = [
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "sir", "dame", "madam", "fr", "hon",
    "capt",
];
const SUFFIXES: [&str; 12] = [
    "jr", "sr", "ii", "iii", "iv", "v", "phd", "md", "esq", "dds", "cpa", "jnr",
];

/// A name part cleaned for comparison: folded, without honorifics (`Dr`, `Mrs`) and
/// generational or professional suffixes (`Jr`, `III`, `PhD`). A name made only of such words
/// is kept as folded.
pub fn clean(text: &str) -> String {
    let folded = fold(text);
    let kept: Vec<&str> = folded
        .split(' ')
        .filter(|t| !HONORIFICS.contains(t) && !SUFFIXES.contains(t))
        .collect();
    if kept.is_empty() {
        folded
    } else {
        kept.join(" ")
    }
}

/// Nickname groups: each given name maps to the groups it belongs to (Chris is in Christopher's
/// and in Christine's).
pub struct Nicknames {
    /// The canonical (formal) name of each group.
    groups: Vec<String>,
    /// The names of each group, canonical included.
    members: Vec<Vec<String>>,
    by_name: HashMap<String, Vec<u32>>,
}

impl Nicknames {
    /// The table shipped with c360 (`data/nicknames.txt`).
    pub fn shipped() -> &'static Nicknames {
        static TABLE: OnceLock<Nicknames> = OnceLock::new();
        TABLE.get_or_init(|| Nicknames::parse(include_str!("../../data/nicknames.txt")))
    }

    /// Parses `canonical: nick, nick` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Self {
        let mut table = Self {
            groups: Vec::new(),
            members: Vec::new(),
            by_name: HashMap::new(),
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((canonical, nicks)) = line.split_once(':') else {
                continue;
            };
            let canonical = fold(canonical);
            let id = table.groups.len() as u32;
            table.groups.push(canonical.clone());
            let mut members: Vec<String> = Vec::new();
            for name in std::iter::once(canonical).chain(nicks.split(',').map(fold)) {
                if name.is_empty() || members.contains(&name) {
                    continue;
                }
                let ids = table.by_name.entry(name.clone()).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
                members.push(name);
            }
            table.members.push(members);
        }
        table
    }

    /// How many groups give a name its nicknames (names listed alone, only to be known, are
    /// not counted).
    pub fn group_count(&self) -> usize {
        self.members.iter().filter(|m| m.len() > 1).count()
    }

    /// The formal name a given name stands for (`bob` -> `robert`); the name itself when it is
    /// in no group. A name in several groups takes the first listed.
    pub fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        self.by_name
            .get(name)
            .and_then(|ids| ids.first())
            .map_or(name, |&id| self.groups[id as usize].as_str())
    }

    /// The nicknames of a formal name: the other names of the groups it heads (`robert` ->
    /// `bob`, `bobby`, `rob`...). A nickname has none (`bob` does not stand for `bobby`).
    pub fn variants(&self, name: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .groups
            .iter()
            .zip(&self.members)
            .filter(|(head, _)| head.as_str() == name)
            .flat_map(|(_, members)| members.iter().map(String::as_str))
            .filter(|m| *m != name)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every name that shares a group with `name` (the name itself excluded).
    pub fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|&id| self.members[id as usize].iter().map(String::as_str))
            .filter(move |m| *m != name)
    }

    /// The groups a (folded) given name belongs to; none when the table does not know it.
    pub fn groups_of(&self, name: &str) -> &[u32] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether a (folded) given name is in the table: a formal name, a nickname, or a name
    /// listed alone.
    pub fn is_known(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether two (folded) given names can be the same person's: equal, or in one group.
    pub fn related(&self, a: &str, b: &str) -> bool {
        a == b || Self::groups_meet(self.groups_of(a), self.groups_of(b))
    }

    /// Whether two names' groups ([`Self::groups_of`]) have one in common.
    pub fn groups_meet(a: &[u32], b: &[u32]) -> bool {
        a.iter().any(|group| b.contains(group))
    }
}

/// The primary Double Metaphone code of a folded name, spaces removed (`mc carthy` and
/// `mccarthy` code alike).
pub fn phonetic(folded: &str) -> String {
    static ENCODER: OnceLock<DoubleMetaphone> = OnceLock::new();
    let joined: String = folded.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    if joined.is_empty() {
        return String::new();
    }
    ENCODER
        .get_or_init(|| DoubleMetaphone::new(Some(6)))
        .encode(&joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_handles_accents_case_and_punctuation() {
        assert_eq!(fold("  José  "), "jose");
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("Mary-Jane"), "mary jane");
        assert_eq!(fold("ZOË"), "zoe");
        assert_eq!(fold("Müller-Lüdenscheidt"), "muller ludenscheidt");
        assert_eq!(fold("Nguyễn"), "nguyen");
    }

    #[test]
    fn cleaning_drops_honorifics_and_suffixes() {
        assert_eq!(clean("Dr. Martin Luther King Jr."), "martin luther king");
        assert_eq!(clean("Mrs Smith"), "smith");
        assert_eq!(clean("John Smith III"), "john smith");
        assert_eq!(clean("Jr"), "jr", "a name that is only a suffix is kept");
    }

    #[test]
    fn nickname_groups() {
        let n = Nicknames::shipped();
        assert!(n.group_count() >= 300, "{} groups", n.group_count());
        for (nick, formal) in [
            ("bob", "robert"),
            ("bobby", "robert"),
            ("liz", "elizabeth"),
            ("betty", "elizabeth"),
            ("bill", "william"),
            ("kate", "katherine"),
            ("peggy", "margaret"),
            ("dick", "richard"),
            ("jim", "james"),
        ] {
            assert!(n.related(nick, formal), "{nick} ~ {formal}");
        }
        assert!(n.related("katie", "kate"));
        assert!(n.related("chris", "christine") && n.related("chris", "christopher"));
        assert!(!n.related("robert", "william"));
        assert!(!n.related("zorblax", "robert"));
        assert_eq!(n.canonical("bob"), "robert");
        assert_eq!(n.canonical("zorblax"), "zorblax");
        assert!(n.variants("robert").contains(&"bob"));
        assert!(n.variants("zorblax").is_empty());
        assert!(n.variants("bob").is_empty(), "a nickname heads no group");
        assert!(!n.variants("mary").contains(&"rosemary"));
    }

    #[test]
    fn phonetic_codes_match_sound_alikes() {
        assert_eq!(phonetic("smith"), phonetic("smyth"));
        assert_eq!(phonetic("mc carthy"), phonetic("mccarthy"));
        assert_eq!(phonetic("catherine"), phonetic("kathryn"));
        assert_ne!(phonetic("smith"), phonetic("jones"));
        assert_eq!(phonetic(""), "");
    }
}
