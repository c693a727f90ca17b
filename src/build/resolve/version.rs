//! Debian version ordering (Debian policy 5.6.12): `[epoch:]upstream[-revision]`,
//! compared part by part, `~` sorting before everything, even the end.
//!
//! The order is `repo::policy::compare_versions`, the one the indexes,
//! `diff` and the as-built report use; the unit tests pin the policy's
//! examples and dpkg's corner cases.

use std::cmp::Ordering;

/// A Debian version as written, ordered as dpkg orders it. Equality is
/// dpkg's too: `1.0` and `0:1.0` are the same version.
#[derive(Debug, Clone)]
pub struct Version(super::relation::Name);

impl Version {
    pub fn new(text: &str) -> Version {
        Version(text.trim().into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A version already trimmed and shared ([`super::relation::Names`]).
impl From<super::relation::Name> for Version {
    fn from(text: super::relation::Name) -> Version {
        Version(text)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        crate::build::repo::policy::compare_versions(&self.0, &other.0)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        Version::new(a).cmp(&Version::new(b))
    }

    #[test]
    fn policy_examples_order_as_dpkg_does() {
        use Ordering::*;
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "0:1.0", Equal),
            ("1.0-0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1:0.1", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("2.30-21+deb10u1", "2.30-21", Greater),
            ("3.2.7-1", "3.2.2-1", Greater),
            ("1.001", "1.1", Equal),
            ("1.2-3-4", "1.2-3-5", Less),
            ("11+200+deb10u4", "11+200", Greater),
            ("0.9.8zh", "0.9.8z", Greater),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn upstream_with_hyphens_splits_at_the_last_one() {
        // Upstream 2.3-4, revision 5: the revision decides against -4-4,
        // the upstream against -5-1.
        use Ordering::{Equal, Greater, Less};
        assert_eq!(cmp("1:2.3-4-5", "1:2.3-4-4"), Greater);
        assert_eq!(cmp("1:2.3-4-5", "1:2.3-5-1"), Less);
        // No revision and no epoch are revision "" and epoch 0.
        assert_eq!(cmp("2.3", "0:2.3"), Equal);
        // Text before a colon that is not digits is no epoch.
        assert_eq!(cmp("x:1.0", "1:0.1"), Less);
    }
}
