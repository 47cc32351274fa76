//! Canonical forms used to compare and look up values.

pub mod address;
pub mod name;

use c360_domain::IdentifierKind;

/// Mail providers that ignore dots in the local part and deliver `name+tag` to `name`.
const DOTLESS_PROVIDERS: [&str; 2] = ["gmail.com", "googlemail.com"];
/// Providers that deliver `name+tag` to `name` but treat dots as significant.
const PLUS_TAG_PROVIDERS: [&str; 7] = [
    "outlook.com",
    "hotmail.com",
    "live.com",
    "icloud.com",
    "me.com",
    "protonmail.com",
    "fastmail.com",
];

/// The address a mailbox really is: lower case; for Gmail, dots dropped and `+tag` cut, and
/// `googlemail.com` read as `gmail.com`; for the providers known to honour `+tags`, the tag cut.
pub fn canonical_email(email: &str) -> String {
    let email = email.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    if DOTLESS_PROVIDERS.contains(&domain) {
        let local = local.split('+').next().unwrap_or(local).replace('.', "");
        return format!("{local}@gmail.com");
    }
    if PLUS_TAG_PROVIDERS.contains(&domain) {
        let local = local.split('+').next().unwrap_or(local);
        return format!("{local}@{domain}");
    }
    email
}

/// The canonical form of an identifier of the given kind. Phones are already E.164 once parsed;
/// opaque ids are case-sensitive and kept as sent.
pub fn identifier(kind: IdentifierKind, value: &str) -> String {
    match kind {
        IdentifierKind::Email => canonical_email(value),
        _ => value.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_ignores_dots_and_tags() {
        assert_eq!(
            canonical_email("Bob.Smith+shop@GMAIL.com"),
            "bobsmith@gmail.com"
        );
        assert_eq!(canonical_email("b.o.b@googlemail.com"), "bob@gmail.com");
    }

    #[test]
    fn other_providers_keep_dots() {
        assert_eq!(
            canonical_email("bob.smith+x@outlook.com"),
            "bob.smith@outlook.com"
        );
        assert_eq!(
            canonical_email("Bob.Smith+x@Example.com"),
            "bob.smith+x@example.com"
        );
    }
}
