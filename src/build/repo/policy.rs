//! Debian policy for every value a disc or a command line puts into a path,
//! an index or a signed file: package names, versions, architectures,
//! suite and component names, pool paths. A value that breaks it is refused
//! with what it is and why, before it can reach `Packages`, `Release` or a
//! path under the output.

/// Package names (Debian policy 5.6.1): lower case letters, digits, `+`,
/// `-`, `.`; at least two characters, starting with a letter or digit.
pub fn package_name(s: &str) -> Result<(), String> {
    let ok = s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a Debian package name (a-z, 0-9, + - . and at least two characters)")
    })
}

/// Versions (Debian policy 5.6.12): `[epoch:]upstream[-revision]`, the
/// epoch digits, the upstream part starting with a digit; letters, digits
/// and `. + ~`, `-` only before the revision, `:` only after an epoch.
pub fn version(s: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "{s:?} is not a Debian version ([epoch:]upstream[-revision], starting with a digit)"
        ))
    };
    let (epoch, rest) = match s.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, s),
    };
    if epoch.is_some_and(|e| e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit())) {
        return bad();
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, Some(r)),
        None => (rest, None),
    };
    let part_ok = |p: &str, extra: &[u8]| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b) || extra.contains(&b))
    };
    let upstream_extra: &[u8] = match (epoch.is_some(), revision.is_some()) {
        (true, true) => b"-:",
        (true, false) => b":",
        (false, true) => b"-",
        (false, false) => b"",
    };
    if !upstream.starts_with(|c: char| c.is_ascii_digit())
        || !part_ok(upstream, upstream_extra)
        || revision.is_some_and(|r| !part_ok(r, b""))
    {
        return bad();
    }
    Ok(())
}

/// Architecture names (`amd64`, `all`, `i386`, `arm64`…).
pub fn architecture(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} is not an architecture name (a-z, 0-9 and -)"))
}

/// A suite or one part of a component name: a directory name under
/// `dists/` (`1.7_x86-64`, `main`, `non-free`).
pub fn archive_name(s: &str, what: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a {what} name (letters, digits and . _ + ~ -, starting with a letter or digit)")
    })
}

/// A component: one or more archive names joined by `/` (`main`,
/// `updates/main`).
pub fn component(s: &str) -> Result<(), String> {
    s.split('/').try_for_each(|p| archive_name(p, "component"))
}

/// A pool path as it goes into `Filename:`: relative, under `pool/`, each
/// part a plain file name (letters, digits, `. _ + ~ - % :`; the colon of an
/// epoch some pools keep).
pub fn pool_path(s: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+~-%:".contains(&b))
    };
    let ok = s.starts_with("pool/") && s.split('/').all(part_ok);
    ok.then_some(()).ok_or_else(|| {
        format!("{s:?} is not a pool path (pool/…, letters, digits and . _ + ~ - % : in each name)")
    })
}

/// Debian's version order (dpkg's `verrevcmp`): the epoch as a number,
/// then upstream and revision compared part by part, non-digits before
/// digits, `~` before anything, even the end; letters before other
/// characters.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    // An epoch is digits (one too large for a number sorts last); text
    // before a colon that is not one is part of the upstream version.
    fn split(v: &str) -> (u64, &str, &str) {
        let v = v.trim();
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(u64::MAX), r)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

fn verrevcmp(a: &str, b: &str) -> std::cmp::Ordering {
    // dpkg's order of one non-digit character (0 stands for "none").
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ca, cb) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
        let digits = |s: &[u8], k: &mut usize| {
            while *k < s.len() && s[*k] == b'0' {
                *k += 1;
            }
            let start = *k;
            while *k < s.len() && s[*k].is_ascii_digit() {
                *k += 1;
            }
            start..*k
        };
        let (da, db) = (digits(a, &mut i), digits(b, &mut j));
        let by_value = da
            .len()
            .cmp(&db.len())
            .then_with(|| a[da.clone()].cmp(&b[db.clone()]));
        if by_value.is_ne() {
            return by_value;
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        for good in ["hello", "libc6", "g++-12", "python3.11", "0ad"] {
            package_name(good).unwrap();
        }
        for bad in [
            "a",
            "Hello",
            "foo bar",
            "-x",
            "x_y",
            "foo\nPackage: evil",
            "",
        ] {
            assert!(package_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions() {
        for good in [
            "1.0",
            "2.10-3",
            "1:2.3.4-5+deb12u1",
            "5:1.2~rc1+astra3",
            "1.2-3-4",
            "2:1.0:1-1",
            "2.11.1+ci202306131712+astra1",
        ] {
            version(good).unwrap_or_else(|e| panic!("{e}"));
        }
        for bad in [
            "", "a1.0", "1.0 evil", "1:", ":1", "1.0-", "x:1.0", "1.0\n", "1:2-3\r",
        ] {
            assert!(version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_that_reach_paths() {
        architecture("amd64").unwrap();
        architecture("all").unwrap();
        for bad in ["../../x", "AMD64", "", "amd64\n"] {
            assert!(architecture(bad).is_err(), "{bad:?}");
        }
        archive_name("1.7_x86-64", "suite").unwrap();
        for bad in ["..", ".", "../x", "a/b", "", "x\ny"] {
            assert!(archive_name(bad, "suite").is_err(), "{bad:?}");
        }
        component("updates/main").unwrap();
        assert!(component("main/../..").is_err());
        pool_path("pool/main/h/hello/hello_2.10-3_amd64.deb").unwrap();
        for bad in [
            "pool/../x.deb",
            "dists/x.deb",
            "pool/a b.deb",
            "pool/a\nb.deb",
            "pool//x",
        ] {
            assert!(pool_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_order_as_dpkg_orders_them() {
        use std::cmp::Ordering::*;
        // Each pair as `dpkg --compare-versions A lt B` says.
        for (a, b) in [
            ("1.0", "1.1"),
            ("1.0~rc1", "1.0"),
            ("1.0", "1.0-1"),
            ("1.0-1", "1.0-2"),
            ("1.0-9", "1.0-10"),
            ("1.0a", "1.0b"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0+"),
            ("9.9", "1:0.1"),
            ("2.10", "2.9.1~"),
            ("1.2~rc1+astra3", "1.2+astra3"),
            ("1.001", "1.2"),
        ] {
            let want = if a == "2.10" { Greater } else { Less };
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
        assert_eq!(compare_versions("1.01", "1.1"), Equal);
        assert_eq!(compare_versions("0:1.0-1", "1.0-1"), Equal);
    }
}
