//! Hostile bundles, as an attacker at the delivery point would make them.
//! What `airlock verify` accepts, GNU tar must extract to exactly the
//! manifest; every crafted tar and directory here is refused, each naming
//! what is wrong, and so are a thousand random alterations of each form,
//! and crafted volumes of a bundle delivered in pieces.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng};

use crate::common::{Run, airlock_bin};

/// A demo bundle (directory and tar) in a fresh directory.
fn demo() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(airlock_bin())
        .args(["demo", "--out", "demo"])
        .current_dir(dir.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.path().join("demo/bundle");
    let tar = dir.path().join("demo/bundle.tar");
    (dir, bundle, tar)
}

fn verify(path: &Path) -> Run {
    Run::from_output(
        Command::new(airlock_bin())
            .arg("verify")
            .arg(path)
            .output()
            .unwrap(),
    )
}

/// `verify` refuses `path` (exit 1) and says `what`.
fn refused(path: &Path, what: &str, case: &str) {
    let run = verify(path);
    assert_eq!(
        run.code, 1,
        "{case}: accepted:\n{}{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains(what),
        "{case}: refused without saying {what:?}:\n{}",
        run.stdout
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// --- raw tar surgery ------------------------------------------------------------

const BLOCK: usize = 512;

/// (offset of the header, name, size) of each header in a tar, in order;
/// stops at the first zero block.
fn headers(t: &[u8]) -> Vec<(usize, String, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + BLOCK <= t.len() && t[at..at + BLOCK].iter().any(|&b| b != 0) {
        let h = &t[at..at + BLOCK];
        let name =
            String::from_utf8_lossy(h[..100].split(|&b| b == 0).next().unwrap()).into_owned();
        let size_field = String::from_utf8_lossy(&h[124..135])
            .trim_matches('\0')
            .to_string();
        let size = usize::from_str_radix(size_field.trim(), 8).unwrap_or(0);
        out.push((at, name, size));
        at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
    }
    out
}

/// Where the end marker starts.
fn end_of_entries(t: &[u8]) -> usize {
    let hs = headers(t);
    let (at, _, size) = hs.last().unwrap();
    at + BLOCK + size.div_ceil(BLOCK) * BLOCK
}

fn set_checksum(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h[..BLOCK].iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn octal_field(h: &mut [u8], range: std::ops::Range<usize>, v: u64) {
    let digits = range.len() - 1;
    h[range.start..range.start + digits].copy_from_slice(format!("{v:0digits$o}").as_bytes());
    h[range.start + digits] = 0;
}

/// A raw header block.
fn raw_header(name: &str, flag: u8, mode: u32, size: usize) -> Vec<u8> {
    let mut h = vec![0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal_field(&mut h, 100..108, u64::from(mode));
    octal_field(&mut h, 108..116, 0);
    octal_field(&mut h, 116..124, 0);
    octal_field(&mut h, 124..136, size as u64);
    octal_field(&mut h, 136..148, 0);
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    set_checksum(&mut h);
    h
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

/// A pax extended header entry with these records.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (k, v) in records {
        let rest = format!(" {k}={v}\n");
        let mut n = rest.len() + 1;
        while n.to_string().len() + rest.len() != n {
            n += 1;
        }
        body.push_str(&format!("{n}{rest}"));
    }
    let mut out = raw_header("./PaxHeaders/x", b'x', 0o644, body.len());
    out.extend(padded(body.as_bytes()));
    out
}

/// The runner's entry as a canonical file entry with other bytes.
fn evil_runner_entry(mode: u32) -> Vec<u8> {
    let body = b"#!/bin/sh\necho owned\n";
    let mut out = raw_header("bin/airlock-firstboot", b'0', mode, body.len());
    out.extend(padded(body));
    out
}

fn insert_before(t: &[u8], name: &str, extra: &[u8]) -> Vec<u8> {
    let (at, _, _) = headers(t).into_iter().find(|(_, n, _)| n == name).unwrap();
    [&t[..at], extra, &t[at..]].concat()
}

fn patch_header(t: &[u8], name: &str, f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut t = t.to_vec();
    let (at, _, _) = headers(&t)
        .into_iter()
        .find(|(_, n, _)| n.trim_end_matches('/') == name)
        .unwrap();
    f(&mut t[at..at + BLOCK]);
    set_checksum(&mut t[at..at + BLOCK]);
    t
}

fn first_seed(t: &[u8]) -> String {
    headers(t)
        .into_iter()
        .map(|(_, n, _)| n)
        .find(|n| n.starts_with("seeds/") && n.ends_with(".iso"))
        .unwrap()
}

#[test]
fn every_crafted_tar_is_refused_naming_what_is_wrong() {
    let (dir, _, tar) = demo();
    let good = fs::read(&tar).unwrap();
    assert_eq!(verify(&tar).code, 0);
    let end = end_of_entries(&good);
    let seed = first_seed(&good);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a pax path given twice",
            insert_before(
                &good,
                "bin/airlock-firstboot",
                &pax(&[("path", "bin/a"), ("path", "bin/airlock-firstboot")]),
            ),
            "pax",
        ),
        (
            "a GNU long name and a pax path",
            {
                let long = "bin/airlock-firstboot\0";
                let mut l = raw_header("././@LongLink", b'L', 0, long.len());
                l.extend(padded(long.as_bytes()));
                l.extend(pax(&[("path", "bin/other")]));
                insert_before(&good, "bin/airlock-firstboot", &l)
            },
            "FORM",
        ),
        (
            "GNU.sparse records",
            insert_before(
                &good,
                "bin/airlock-firstboot",
                &pax(&[("GNU.sparse.size", "99999"), ("GNU.sparse.map", "0,10")]),
            ),
            "pax",
        ),
        (
            "a GNU sparse entry",
            insert_before(
                &good,
                "bin/airlock-firstboot",
                &raw_header("bin/x", b'S', 0o644, 0),
            ),
            "sparse",
        ),
        (
            "the runner twice",
            [&good[..end], &evil_runner_entry(0o755), &good[end..]].concat(),
            "FORM",
        ),
        (
            "SHA256SUMS twice",
            {
                let (at, _, size) = headers(&good)[0].clone();
                let first = good[at..at + BLOCK + size.div_ceil(BLOCK) * BLOCK].to_vec();
                [&good[..end], &first, &good[end..]].concat()
            },
            "FORM",
        ),
        (
            "an entry after the end marker (tar -i)",
            [&good[..], &evil_runner_entry(0o755), &[0u8; 1024][..]].concat(),
            "after the end marker",
        ),
        (
            "an entry hidden behind a lone zero block",
            [
                &good[..end],
                &[0u8; 512][..],
                &evil_runner_entry(0o755),
                &[0u8; 1024][..],
            ]
            .concat(),
            "lone zero block",
        ),
        (
            "trailing garbage",
            [&good[..], b"garbage"].concat(),
            "after the end marker",
        ),
        (
            "a setuid runner",
            patch_header(&good, "bin/airlock-firstboot", |h| {
                octal_field(h, 100..108, 0o4755)
            }),
            "MODE",
        ),
        (
            "a world-writable runner",
            patch_header(&good, "bin/airlock-firstboot", |h| {
                octal_field(h, 100..108, 0o777)
            }),
            "MODE",
        ),
        (
            "a 0666 secret",
            patch_header(&good, &seed, |h| octal_field(h, 100..108, 0o666)),
            "MODE",
        ),
        (
            "a uid-1000 owner",
            patch_header(&good, "bin/airlock-firstboot", |h| {
                octal_field(h, 108..116, 1000)
            }),
            "FORM",
        ),
        (
            "a 0777 directory",
            patch_header(&good, "bin", |h| octal_field(h, 100..108, 0o777)),
            "MODE",
        ),
        (
            "a user name",
            patch_header(&good, "bin/airlock-firstboot", |h| {
                h[265..269].copy_from_slice(b"evil")
            }),
            "FORM",
        ),
        (
            "a symlink to /",
            insert_before(&good, "bin/airlock-firstboot", &{
                let mut h = raw_header("bin/escape", b'2', 0o777, 0);
                h[157] = b'/';
                set_checksum(&mut h);
                h
            }),
            "link",
        ),
        (
            "a path with ..",
            insert_before(
                &good,
                "bin/airlock-firstboot",
                &raw_header("../x", b'0', 0o644, 0),
            ),
            "FORM",
        ),
    ];
    // Gzip: a second member carrying another runner, and garbage after one.
    let evil_tar = [&evil_runner_entry(0o755)[..], &[0u8; 1024][..]].concat();
    cases.push((
        "a second gzip member",
        [gzip(&good), gzip(&evil_tar)].concat(),
        "after the gzip member",
    ));
    cases.push((
        "garbage after the gzip member",
        [gzip(&good), b"x".to_vec()].concat(),
        "after the gzip member",
    ));
    for (i, (case, bytes, what)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("evil-{i}.tar"));
        fs::write(&path, bytes).unwrap();
        refused(&path, what, case);
    }
    // The multi-member attack is real: gzip -d reads both members.
    let path = dir.path().join("evil-last.tar.gz");
    fs::write(&path, [gzip(&good), gzip(&evil_tar)].concat()).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | tar -tif -", path.display()))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed.matches("bin/airlock-firstboot").count(),
        2,
        "{listed}"
    );
}

/// What verify accepted, GNU tar extracts (as root, keeping modes) to
/// exactly the manifest: its files and their parents, the modes MODES
/// gives, owned by root, nothing else.
#[test]
fn gnu_tar_extracts_what_verify_accepted_and_nothing_else() {
    let (dir, bundle, tar) = demo();
    let gz = dir.path().join("bundle.tar.gz");
    fs::write(&gz, gzip(&fs::read(&tar).unwrap())).unwrap();
    for t in [&tar, &gz] {
        assert_eq!(verify(t).code, 0, "{}", t.display());
        let out = dir
            .path()
            .join(format!("x-{}", t.file_name().unwrap().to_string_lossy()));
        fs::create_dir_all(&out).unwrap();
        let run = Command::new("tar")
            .arg("-xpf")
            .arg(t)
            .arg("-C")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let modes: BTreeMap<String, u32> = fs::read_to_string(bundle.join("MODES"))
            .unwrap()
            .lines()
            .map(|l| {
                let (m, p) = l.split_once("  ").unwrap();
                (p.to_string(), u32::from_str_radix(m, 8).unwrap())
            })
            .collect();
        let mut want: BTreeMap<String, u32> = modes.clone();
        want.insert("SHA256SUMS".into(), 0o644);
        want.insert("SHA256SUMS.gpg".into(), 0o644);
        let root = nix_is_root();
        let mut got = BTreeMap::new();
        for e in walkdir::WalkDir::new(&out).min_depth(1) {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(&out)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = e.metadata().unwrap();
            if e.file_type().is_dir() {
                assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{rel}");
                assert!(
                    want.keys().any(|p| p.starts_with(&format!("{rel}/"))),
                    "extra directory {rel}"
                );
                continue;
            }
            assert!(e.file_type().is_file(), "{rel} is not a file");
            if root {
                assert_eq!((meta.uid(), meta.gid()), (0, 0), "{rel}");
            }
            got.insert(rel, meta.permissions().mode() & 0o7777);
        }
        assert_eq!(got, want, "{}", t.display());
        // And the same bytes as the directory.
        for p in want.keys() {
            assert!(
                fs::read(out.join(p)).unwrap() == fs::read(bundle.join(p)).unwrap(),
                "{p}"
            );
        }
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn the_directory_form_is_held_to_the_same_policy() {
    let (_dir, bundle, _) = demo();
    let seed = walkdir::WalkDir::new(bundle.join("seeds"))
        .min_depth(1)
        .into_iter()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .to_path_buf();
    let runner = bundle.join("bin/airlock-firstboot");
    let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "an extra empty directory",
            Box::new(|| fs::create_dir(bundle.join("repo/evil")).unwrap()),
            Box::new(|| fs::remove_dir(bundle.join("repo/evil")).unwrap()),
            "EXTRA",
        ),
        (
            "a setuid runner",
            Box::new(|| chmod(&runner, 0o4755)),
            Box::new(|| chmod(&runner, 0o755)),
            "MODE",
        ),
        (
            "a group-writable runner",
            Box::new(|| chmod(&runner, 0o775)),
            Box::new(|| chmod(&runner, 0o755)),
            "MODE",
        ),
        (
            "a secret readable by others",
            Box::new(|| chmod(&seed, 0o644)),
            Box::new(|| chmod(&seed, 0o600)),
            "MODE",
        ),
        (
            "a world-writable directory",
            Box::new(|| chmod(&bundle.join("bin"), 0o777)),
            Box::new(|| chmod(&bundle.join("bin"), 0o755)),
            "MODE",
        ),
    ];
    assert_eq!(verify(&bundle).code, 0);
    for (case, break_it, mend, what) in cases {
        break_it();
        refused(&bundle, what, case);
        mend();
        assert_eq!(verify(&bundle).code, 0, "{case}: not mended");
    }
    // Narrower is fine (a copy made under umask 077).
    chmod(&runner, 0o700);
    assert_eq!(verify(&bundle).code, 0);
}

#[test]
fn a_signed_manifest_that_lists_a_file_twice_is_refused() {
    let (_dir, bundle, _) = demo();
    let sums = fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
    let line = sums
        .lines()
        .find(|l| l.ends_with("bin/airlock-firstboot"))
        .unwrap();
    let evil = format!("{}  bin/airlock-firstboot\n{sums}", "0".repeat(64));
    assert!(evil.contains(line));
    fs::write(bundle.join("SHA256SUMS"), &evil).unwrap();
    let key = airlock::build::demo::demo_key().unwrap();
    let sig = key
        .detached_armored(evil.as_bytes(), airlock::build::demo::DEMO_TIME)
        .unwrap();
    fs::write(bundle.join("SHA256SUMS.gpg"), sig).unwrap();
    refused(&bundle, "lists it twice", "a duplicate line");
}

#[test]
fn a_flipped_armor_checksum_is_refused_by_airlock_and_gpgv() {
    let (_dir, bundle, _) = demo();
    let sig = fs::read_to_string(bundle.join("SHA256SUMS.gpg")).unwrap();
    let crc_line = sig.lines().find(|l| l.starts_with('=')).unwrap();
    let flipped: String = crc_line
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 2 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    fs::write(
        bundle.join("SHA256SUMS.gpg"),
        sig.replace(crc_line, &flipped),
    )
    .unwrap();
    refused(&bundle, "armor checksum", "a flipped CRC24");
    let gpgv = Command::new("gpgv")
        .args([
            "--keyring",
            "./archive-keyring.gpg",
            "SHA256SUMS.gpg",
            "SHA256SUMS",
        ])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(!gpgv.status.success(), "gpgv accepted it too?");
}

/// Found by the random alterations below: rpgp's reader looked for the
/// armor past leading bytes that are not OpenPGP; gpgv refuses those. (It
/// skips lines of text before the armor; airlock refuses them too.)
#[test]
fn junk_before_the_armor_is_refused_by_airlock_and_gpgv() {
    let (_dir, bundle, _) = demo();
    let sig = fs::read(bundle.join("SHA256SUMS.gpg")).unwrap();
    for text in [&b"hello\n"[..], b"\n\n-- \n"] {
        fs::write(bundle.join("SHA256SUMS.gpg"), [text, &sig].concat()).unwrap();
        refused(&bundle, "neither armored", "text before the armor");
    }
    {
        let junk = &b"/\x9e\x12h3J"[..];
        fs::write(bundle.join("SHA256SUMS.gpg"), [junk, &sig].concat()).unwrap();
        refused(&bundle, "neither armored", "junk before the armor");
        let gpgv = Command::new("gpgv")
            .args([
                "--keyring",
                "./archive-keyring.gpg",
                "SHA256SUMS.gpg",
                "SHA256SUMS",
            ])
            .current_dir(&bundle)
            .output()
            .unwrap();
        assert!(!gpgv.status.success(), "gpgv accepted {junk:?} too?");
    }
}

#[test]
fn verify_says_who_signed_and_when() {
    let (_dir, bundle, _) = demo();
    let run = Run::from_output(
        Command::new(airlock_bin())
            .args(["verify", "--keyring"])
            .arg(bundle.join("archive-keyring.gpg"))
            .arg(&bundle)
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("signature: good, by")
            && run.stdout.contains("signed Thu, 01 Jan 2026 00:00:00"),
        "{}",
        run.stdout
    );
}

/// A thousand random alterations of each form: flipped bytes, truncations,
/// insertions, in any file, the signature included. Not one is accepted.
#[test]
fn a_thousand_random_alterations_of_each_form_are_all_refused() {
    // A small runner keeps the thousand checks quick; the form is the same.
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("runner");
    fs::write(&runner, "#!/bin/sh\necho runner\n".repeat(200)).unwrap();
    let out = Command::new(airlock_bin())
        .args(["demo", "--out", "demo", "--runner"])
        .arg(&runner)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (bundle, tar) = (
        dir.path().join("demo/bundle"),
        dir.path().join("demo/bundle.tar"),
    );
    let good = fs::read(&tar).unwrap();
    let gz = gzip(&good);
    let keyring =
        airlock::build::bundle::Trust::load(&[bundle.join("archive-keyring.gpg")], 1).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(20261126);
    let evil = dir.path().join("evil.tar");
    let mut accepted = Vec::new();
    let mut equivalent = 0;
    let mutate = |rng: &mut rand_chacha::ChaCha20Rng, bytes: &[u8]| -> (String, Vec<u8>) {
        let mut b = bytes.to_vec();
        let at = rng.gen_range(0..b.len());
        match rng.gen_range(0..3) {
            0 => {
                let bit = 1u8 << rng.gen_range(0..8);
                b[at] ^= bit;
                (format!("flip bit {bit:#x} at {at}"), b)
            }
            1 => {
                b.truncate(at);
                (format!("truncate at {at}"), b)
            }
            _ => {
                let n = rng.gen_range(1..600);
                let junk: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                b.splice(at..at, junk);
                (format!("insert {n} bytes at {at}"), b)
            }
        }
    };
    for form in ["tar", "tar.gz"] {
        let base = if form == "tar" { &good } else { &gz };
        for _ in 0..1000 {
            let (what, bytes) = mutate(&mut rng, base);
            if bytes == *base {
                continue;
            }
            fs::write(&evil, &bytes).unwrap();
            let r = airlock::build::bundle::verify_tar(&evil, &keyring, false);
            if r.is_ok_and(|r| r.ok) {
                // Only an alteration that changes nothing a reader sees may
                // pass: an unused bit of the deflate stream (gzip -d gives
                // the same tar, byte for byte).
                let same = form == "tar.gz" && gunzip(&bytes).is_some_and(|t| t == good);
                if same {
                    equivalent += 1;
                } else {
                    accepted.push(format!("{form}: {what}"));
                }
            }
        }
    }
    // The directory: a random file (signature and keys included) altered,
    // checked, put back.
    let files: Vec<PathBuf> = walkdir::WalkDir::new(&bundle)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect();
    for _ in 0..1000 {
        let f = &files[rng.gen_range(0..files.len())];
        let orig = fs::read(f).unwrap();
        if orig.is_empty() {
            continue;
        }
        let (what, bytes) = mutate(&mut rng, &orig);
        if bytes == orig {
            continue;
        }
        fs::write(f, &bytes).unwrap();
        let r = airlock::build::bundle::verify_dir(&bundle, &keyring, false);
        fs::write(f, &orig).unwrap();
        if r.is_ok_and(|r| r.ok) {
            accepted.push(format!("{}: {what}", f.display()));
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
    // Deflate has bits that change nothing (unused code lengths, padding):
    // such alterations give the same tar and are rightly accepted.
    eprintln!(
        "{equivalent} of 1000 alterations of the gzip stream left the tar byte for byte as it was"
    );
    assert!(
        airlock::build::bundle::verify_dir(&bundle, &keyring, false)
            .unwrap()
            .ok
    );
}

fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(data), &mut out).ok()?;
    Some(out)
}

/// A signature file is signature packets and nothing else: a key packet
/// after the signature (gpgv: "verify signatures failed", exit 2), a torn
/// packet header after it (rpgp's reader ends there quietly) and a second armored block
/// (gpgv reads both blocks; rpgp's reader stopped after the first, so the
/// two would have counted different signatures) are refused.
#[test]
fn a_signature_file_with_anything_but_signatures_is_refused() {
    let (_dir, bundle, _) = demo();
    let key = airlock::build::demo::demo_key().unwrap();
    let sums = fs::read(bundle.join("SHA256SUMS")).unwrap();
    let binary = key
        .detached_binary(&sums, airlock::build::demo::DEMO_TIME)
        .unwrap();
    let armored = fs::read(bundle.join("SHA256SUMS.gpg")).unwrap();
    let gpgv_accepts = |b: &Path| {
        Command::new("gpgv")
            .args([
                "--keyring",
                "./archive-keyring.gpg",
                "SHA256SUMS.gpg",
                "SHA256SUMS",
            ])
            .current_dir(b)
            .output()
            .unwrap()
            .status
            .success()
    };
    // The binary signature alone is fine.
    fs::write(bundle.join("SHA256SUMS.gpg"), &binary).unwrap();
    assert_eq!(verify(&bundle).code, 0);
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "a key packet after the signature",
            [binary.clone(), key.public_binary().unwrap()].concat(),
            "signature packets only",
            false,
        ),
        (
            "a torn packet header after the signature",
            [binary.clone(), vec![0xc2]].concat(),
            "not exactly its 1 signature packet(s)",
            false,
        ),
        (
            "two armored blocks",
            [armored.clone(), armored.clone()].concat(),
            "more than one armored block",
            true,
        ),
    ];
    for (case, bytes, what, gpgv) in cases {
        fs::write(bundle.join("SHA256SUMS.gpg"), &bytes).unwrap();
        refused(&bundle, what, case);
        assert_eq!(gpgv_accepts(&bundle), gpgv, "{case}: gpgv");
    }
}

/// Volumes altered at the delivery point: a planted file, a table changed
/// without its signature, a volume re-signed by another key with the
/// genuine table copied beside it, a symbolic link. Each is refused, by
/// `airlock verify` and by `prepare`, naming what is wrong.
#[test]
fn crafted_volumes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::demo_site(dir.path());
    let run = crate::volumes::build_in_volumes(dir.path(), "b", "512K", "1800000000");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let genuine = crate::volumes::volumes_of(&dir.path().join("b"));
    let site_keyring = dir.path().join("keys/archive-keyring.gpg");
    let fresh = |case: &str| -> PathBuf {
        let to = dir.path().join(case);
        let out = Command::new("cp")
            .arg("-a")
            .arg(&genuine[1])
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success());
        to
    };
    let check = |v: &Path, says: &str, case: &str| {
        for keyring in [None, Some(&site_keyring)] {
            let mut cmd = Command::new(airlock_bin());
            cmd.arg("verify").arg(v);
            if let Some(k) = keyring {
                cmd.arg("--keyring").arg(k);
            }
            let run = Run::from_output(cmd.output().unwrap());
            assert_eq!(
                run.code, 1,
                "{case}: accepted\n{}{}",
                run.stdout, run.stderr
            );
            assert!(
                run.stdout.contains(says) || run.stderr.contains(says),
                "{case}: {says:?} not said\n{}{}",
                run.stdout,
                run.stderr
            );
        }
        let mut volumes = genuine.clone();
        volumes[1] = v.to_path_buf();
        let root = dir.path().join(format!("root-{case}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"));
        cmd.arg("prepare").arg("--root").arg(&root);
        for b in &volumes {
            cmd.arg("--bundle").arg(b);
        }
        let run = Run::from_output(cmd.stdin(std::process::Stdio::null()).output().unwrap());
        assert_ne!(run.code, 0, "{case}: prepare accepted it");
        assert!(crate::common::nothing_prepared(&root), "{case}");
    };

    let planted = fresh("planted");
    fs::write(planted.join("evil.sh"), "#!/bin/sh\nrm -rf /\n").unwrap();
    check(&planted, "EXTRA", "a planted file");

    let table = fresh("table");
    let text = fs::read_to_string(table.join("VOLUMES")).unwrap();
    fs::write(table.join("VOLUMES"), text.replacen("files ", "files 1", 1)).unwrap();
    check(
        &table,
        "VOLUMES.gpg does not prove VOLUMES",
        "an altered table",
    );

    // Another key signs a changed manifest; the genuine table, copied, no
    // longer names it (and the site's keyring refuses the signature too).
    let resigned = fresh("resigned");
    let other = dir.path().join("other-keys");
    let out = Command::new(airlock_bin())
        .args(["keygen", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let sums = fs::read_to_string(resigned.join("SHA256SUMS")).unwrap();
    let (hash, path) = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap())
        .find(|(_, p)| {
            p.starts_with("repo/") || p.starts_with("payloads/") || p.starts_with("seeds/")
        })
        .unwrap();
    fs::write(resigned.join(path), "replaced\n").unwrap();
    let new_hash = airlock::shared::volumes::sha256(b"replaced\n");
    let new_sums = sums.replace(&format!("{hash}  {path}"), &format!("{new_hash}  {path}"));
    fs::write(resigned.join("SHA256SUMS"), &new_sums).unwrap();
    let signer = airlock::build::sign::SigningKey::load(&other.join("signing-key.asc")).unwrap();
    fs::write(
        resigned.join("SHA256SUMS.gpg"),
        signer
            .detached_armored(new_sums.as_bytes(), 1_800_000_000)
            .unwrap(),
    )
    .unwrap();
    fs::copy(
        other.join("archive-keyring.gpg"),
        resigned.join("archive-keyring.gpg"),
    )
    .unwrap();
    check(&resigned, "VOLUME ", "a volume re-signed by another key");

    let linked = fresh("linked");
    let victim = fs::read_to_string(linked.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_string())
        .find(|p| p.starts_with("repo/") || p.starts_with("payloads/") || p.starts_with("seeds/"))
        .unwrap();
    fs::remove_file(linked.join(&victim)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", linked.join(&victim)).unwrap();
    check(&linked, "symbolic link", "a symbolic link");
}
