//! Debian version ordering (Debian policy 5.6.12): `[epoch:]upstream[-revision]`,
//! compared part by part, `~` sorting before everything, even the end.
//!
//! Written here because `debian-packaging` is not a dependency (see README,
//! Choices); the unit tests pin the policy's examples and dpkg's corner cases.

use std::cmp::Ordering;

/// A Debian version as written, ordered as dpkg orders it. Equality is
/// dpkg's too: `1.0` and `0:1.0` are the same version.
#[derive(Debug, Clone)]
pub struct Version(String);

impl Version {
    pub fn new(text: &str) -> Version {
        Version(text.trim().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// (epoch, upstream, revision); a missing revision is `""`, which dpkg
    /// orders like `0`.
    fn parts(&self) -> (u64, &str, &str) {
        let (epoch, rest) = match self.0.split_once(':') {
            Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(u64::MAX), rest)
            }
            _ => (0, self.0.as_str()),
        };
        match rest.rsplit_once('-') {
            Some((upstream, revision)) => (epoch, upstream, revision),
            None => (epoch, rest, ""),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let (ea, ua, ra) = self.parts();
        let (eb, ub, rb) = other.parts();
        ea.cmp(&eb)
            .then_with(|| compare_part(ua, ub))
            .then_with(|| compare_part(ra, rb))
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

/// A character's weight in the non-digit runs: `~` first, then the end of
/// the run, then letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit run, character by character.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            let (wa, wb) = (weight(ca), weight(cb));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += usize::from(ca.is_some());
            j += usize::from(cb.is_some());
        }
        // The digit run, as a number (leading zeros do not count).
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let start = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[start.0..i], &b[start.1..j]);
        let by_value = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if by_value != Ordering::Equal {
            return by_value;
        }
    }
    Ordering::Equal
}

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
        assert_eq!(Version::new("1:2.3-4-5").parts(), (1, "2.3-4", "5"));
        assert_eq!(Version::new("2.3").parts(), (0, "2.3", ""));
    }
}
