//! `airlock-firstboot report`: this host's section of the as-built report
//! ([`crate::shared::report`]), collected under a root directory: who the
//! host is (its role file), what it runs (kernel, os-release), how its
//! role went (the journal, the start guard's records) and every installed
//! package with the hashes that tie it to a `.deb`:
//!
//! - the package list: one `dpkg-query -W` (status "install ok installed");
//! - the `.deb`'s SHA-256 as apt's index recorded it: one `apt-cache show`
//!   over every `name:arch=version`. apt reads its lists in whatever form it
//!   stored them, which reading `/var/lib/apt/lists` ourselves would have to
//!   copy: on the Debian 12 test machine apt kept a `file:` source's
//!   Packages lz4-compressed (its container image sets
//!   `Acquire::GzipIndexes`), on a stock system uncompressed, elsewhere gz,
//!   xz or zstd. Under another root, apt is pointed at it with
//!   `-o Dir=ROOT` and the root's dpkg status;
//! - the SHA-256 of `/var/lib/dpkg/info/PACKAGE[:ARCH].md5sums`, read
//!   directly (dpkg copies the `.deb`'s `md5sums` member there verbatim);
//! - the files `dpkg --verify` reports as changed: one call for every
//!   package, each path put under the packages whose file list
//!   (`info/PACKAGE.list`) names it.
//!
//! Every command goes through [`Exec`]; what cannot be collected (no apt,
//! an unreadable journal) becomes a note in the report, not a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::Digest;

use crate::shared::hex;
use crate::shared::journal::Journal;
use crate::shared::paths;
use crate::shared::report::{ChangedFile, HostReport, Package, REPORT_VERSION};
use crate::shared::role::RoleFile;
use crate::shared::timefmt;
use crate::vm::engine::under;
use crate::vm::exec::{Cmd, Exec};

/// dpkg's database, where the `.md5sums` and `.list` files are.
const DPKG_INFO: &str = "/var/lib/dpkg/info";
/// A package's identity: name, version, architecture.
type Key = (String, String, String);

/// This host's section of the as-built report, collected under `root` at
/// `now` (seconds since the epoch).
pub fn collect(root: &Path, exec: &dyn Exec, now: i64) -> Result<HostReport> {
    let role_path = under(root, paths::ROLE_FILE);
    let role = RoleFile::load(&role_path).context(
        "the report names the host by its role file: run it on a VM of the cluster (or pass --root)",
    )?;
    let mut notes = Vec::new();
    let journal = Journal::load(&under(root, paths::JOURNAL)).unwrap_or_else(|e| {
        notes.push(format!("journal: {e:#}"));
        None
    });
    let mut packages = installed(root, exec)?;
    let index = index_hashes(root, exec, &packages, &mut notes);
    for p in &mut packages {
        let key = (p.name.clone(), p.version.clone(), p.architecture.clone());
        p.deb_sha256 = index.get(&key).into_iter().flatten().cloned().collect();
        p.md5sums_sha256 = info_file(root, p, "md5sums")
            .and_then(|path| fs::read(path).ok())
            .map(|bytes| hex(&sha2::Sha256::digest(&bytes)));
    }
    let (files_verified, changed) = match verify(root, exec) {
        Ok(changed) => (true, changed),
        Err(e) => {
            notes.push(format!("changed files unknown: {e:#}"));
            (false, Vec::new())
        }
    };
    let changed_unowned = attribute(root, &mut packages, changed);
    Ok(HostReport {
        version: REPORT_VERSION,
        host: role.host.name.clone(),
        role: role.host.role,
        cluster: role.cluster.clone(),
        instance_id: role.instance_id.clone(),
        collected: timefmt::rfc3339_utc(now),
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
        // The running kernel's (an image that is not running has none).
        kernel: fs::read_to_string(under(root, "/proc/sys/kernel/osrelease"))
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty()),
        os_release: os_release(root),
        journal,
        fenced: crate::vm::guard::Fence::load(root).and_then(|f| serde_json::to_value(f).ok()),
        promoted: crate::vm::guard::promoted(root),
        packages,
        files_verified,
        changed_unowned,
        notes,
    })
}

/// Whether `root` is this machine's own `/`.
fn is_slash(root: &Path) -> bool {
    root == Path::new("/")
}

/// Every package dpkg has "install ok installed", in dpkg's order.
fn installed(root: &Path, exec: &dyn Exec) -> Result<Vec<Package>> {
    let mut cmd = Cmd::new("dpkg-query");
    if !is_slash(root) {
        cmd = cmd.arg(format!(
            "--admindir={}",
            under(root, "/var/lib/dpkg").display()
        ));
    }
    let cmd = cmd.args([
        "-W",
        "--showformat=${Package}\\t${Version}\\t${Architecture}\\t${Status}\\n",
    ]);
    let out = exec.run(&cmd)?;
    parse_installed(&out.stdout).with_context(|| format!("reading what `{}` printed", cmd.line()))
}

fn parse_installed(text: &str) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, version, arch, status] = f[..] else {
            bail!("a line without four tab-separated fields: {line:?}");
        };
        if status != "install ok installed" {
            continue;
        }
        out.push(Package {
            name: name.into(),
            version: version.into(),
            architecture: arch.into(),
            deb_sha256: Vec::new(),
            md5sums_sha256: None,
            changed: Vec::new(),
        });
    }
    Ok(out)
}

/// The SHA-256 apt's indexes give each installed version (see the module
/// comment for why `apt-cache`).
fn index_hashes(
    root: &Path,
    exec: &dyn Exec,
    packages: &[Package],
    notes: &mut Vec<String>,
) -> BTreeMap<Key, BTreeSet<String>> {
    if packages.is_empty() {
        return BTreeMap::new();
    }
    let mut cmd = Cmd::new("apt-cache");
    if !is_slash(root) {
        cmd = cmd.args([
            "-o".to_string(),
            format!("Dir={}", root.display()),
            "-o".to_string(),
            format!(
                "Dir::State::status={}",
                under(root, "/var/lib/dpkg/status").display()
            ),
        ]);
    }
    let cmd = cmd.arg("show").args(
        packages
            .iter()
            .map(|p| format!("{}:{}={}", p.name, p.architecture, p.version)),
    );
    match exec.output(&cmd) {
        Ok(out) if out.success() || !out.stdout.trim().is_empty() => parse_apt_records(&out.stdout),
        Ok(out) => {
            notes.push(format!(
                "no .deb hashes from apt's indexes: `apt-cache show …` failed: {}",
                out.stderr.trim()
            ));
            BTreeMap::new()
        }
        Err(e) => {
            notes.push(format!("no .deb hashes from apt's indexes: {e:#}"));
            BTreeMap::new()
        }
    }
}

/// `SHA256` of every record `apt-cache show` printed, by name, version and
/// architecture (records without one, dpkg's own, are skipped).
fn parse_apt_records(text: &str) -> BTreeMap<Key, BTreeSet<String>> {
    let mut out: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
    for record in text.split("\n\n") {
        let mut fields = BTreeMap::new();
        for line in record.lines() {
            if let Some((k, v)) = line.split_once(": ")
                && !line.starts_with([' ', '\t'])
            {
                fields.insert(k, v.trim());
            }
        }
        let get = |k: &str| fields.get(k).map(|v| v.to_string());
        if let (Some(n), Some(v), Some(a), Some(sha)) = (
            get("Package"),
            get("Version"),
            get("Architecture"),
            get("SHA256"),
        ) {
            out.entry((n, v, a)).or_default().insert(sha.to_lowercase());
        }
    }
    out
}

/// `info/NAME:ARCH.SUFFIX` or `info/NAME.SUFFIX` (dpkg qualifies the name
/// only for `Multi-Arch: same` packages), whichever exists.
fn info_file(root: &Path, p: &Package, suffix: &str) -> Option<std::path::PathBuf> {
    let info = under(root, DPKG_INFO);
    [format!("{}:{}", p.name, p.architecture), p.name.clone()]
        .into_iter()
        .map(|n| info.join(format!("{n}.{suffix}")))
        .find(|path| path.is_file())
}

/// Every file `dpkg --verify` reports, for all packages at once.
fn verify(root: &Path, exec: &dyn Exec) -> Result<Vec<ChangedFile>> {
    let mut cmd = Cmd::new("dpkg");
    if !is_slash(root) {
        cmd = cmd.arg(format!("--root={}", root.display()));
    }
    let cmd = cmd.arg("--verify");
    let out = exec.output(&cmd)?;
    // dpkg 1.21 exits 0 whatever it finds; others may exit 1 when a check
    // failed. Anything else is dpkg failing.
    if !matches!(out.code, Some(0 | 1)) {
        bail!("`{}` failed: {}", cmd.line(), out.stderr.trim());
    }
    Ok(out.stdout.lines().filter_map(parse_verify_line).collect())
}

/// One line of `dpkg --verify` (its "rpm" format): nine check characters,
/// a space, `c` for a configuration file or a space, a space, the path;
/// a file dpkg could not read has ` (ERROR)` after it.
fn parse_verify_line(line: &str) -> Option<ChangedFile> {
    let checks = line.get(..9)?;
    let rest = line.get(9..)?;
    let mut chars = rest.chars();
    let (Some(' '), Some(attr), Some(' ')) = (chars.next(), chars.next(), chars.next()) else {
        return None;
    };
    let mut path = chars.as_str().to_string();
    let mut error = None;
    if checks.starts_with("missing")
        && path.ends_with(')')
        && let Some(i) = path.rfind(" (")
    {
        error = Some(path[i + 2..path.len() - 1].to_string());
        path.truncate(i);
    }
    path.starts_with('/').then(|| ChangedFile {
        path,
        checks: checks.to_string(),
        conffile: attr == 'c',
        error,
    })
}

/// Puts each changed file under the packages whose file list names it;
/// returns those no list names.
fn attribute(root: &Path, packages: &mut [Package], changed: Vec<ChangedFile>) -> Vec<ChangedFile> {
    if changed.is_empty() {
        return changed;
    }
    let wanted: BTreeSet<&str> = changed.iter().map(|c| c.path.as_str()).collect();
    let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        let Some(list) = info_file(root, p, "list").and_then(|f| fs::read_to_string(f).ok()) else {
            continue;
        };
        for line in list.lines().filter(|l| wanted.contains(l)) {
            owners.entry(line.to_string()).or_default().push(i);
        }
    }
    let mut unowned = Vec::new();
    for c in changed {
        match owners.get(&c.path) {
            Some(pkgs) => {
                for &i in pkgs {
                    packages[i].changed.push(c.clone());
                }
            }
            None => unowned.push(c),
        }
    }
    unowned
}

/// The fields of `/etc/os-release` (or `/usr/lib/os-release`), unquoted.
fn os_release(root: &Path) -> BTreeMap<String, String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| fs::read_to_string(under(root, p)).ok())
        .map(|t| parse_os_release(&t))
        .unwrap_or_default()
}

fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = &v[1..v.len() - 1];
            if v.starts_with('"') {
                unescape(inner)
            } else {
                inner.to_string()
            }
        } else {
            v.to_string()
        };
        out.insert(k.to_string(), v);
    }
    out
}

/// Shell double-quote escapes (`\"`, `\\`, `` \` ``, `\$`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\' | '`' | '$'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, put};

    const QUERY: &str = "hello\t2.10-3\tamd64\tinstall ok installed\n\
        libfoo1\t1.0-1\tamd64\tinstall ok installed\n\
        gone\t0.9\tamd64\tdeinstall ok config-files\n\
        docs\t1:2.0~rc1\tall\tinstall ok installed\n";
    const APT: &str = "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\n\
        Description: greets\n SHA256: not-this-one\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\n\
        SHA256: AAAA\n\n\
        Package: docs\nVersion: 1:2.0~rc1\nArchitecture: all\nSHA256: cccc\n\n\
        Package: docs\nVersion: 1:2.0~rc1\nArchitecture: all\nSHA256: dddd\n\n\
        Package: libfoo1\nVersion: 1.0-1\nArchitecture: amd64\nStatus: install ok installed\n";
    const VERIFY: &str = "??5?????? c /etc/hello.conf\n\
        missing     /usr/share/doc/hello/README (Permission denied)\n\
        ??5??????   /usr/lib/orphan\n";

    /// A root with a role file, os-release, a journal and dpkg's info files.
    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(
            root,
            paths::ROLE_FILE,
            &fixture_role("db1").to_toml().unwrap(),
        );
        put(
            root,
            "/etc/os-release",
            "# comment\nPRETTY_NAME=\"Astra Linux \\\"SE\\\"\"\nID=astra\nVERSION_ID='1.7_x86-64'\n",
        );
        put(root, "/proc/sys/kernel/osrelease", "5.15.0-70-generic\n");
        put(
            root,
            "/var/lib/dpkg/info/hello.md5sums",
            "abc  usr/bin/hello\n",
        );
        put(
            root,
            "/var/lib/dpkg/info/libfoo1:amd64.md5sums",
            "def  usr/lib/libfoo.so.1\n",
        );
        put(
            root,
            "/var/lib/dpkg/info/hello.list",
            "/.\n/etc\n/etc/hello.conf\n/usr/share/doc/hello/README\n",
        );
        dir
    }

    fn fake() -> Recording {
        let f = Recording::new();
        f.on("dpkg-query", 0, QUERY)
            .on("apt-cache", 0, APT)
            .on("--verify", 0, VERIFY);
        f
    }

    #[test]
    fn collects_packages_hashes_and_changed_files_under_a_root() {
        let dir = image();
        let root = dir.path();
        let f = fake();
        let h = collect(root, &f, 1_767_225_600).unwrap();
        let r = root.display();
        assert_eq!(
            f.commands(),
            [
                format!(
                    "dpkg-query --admindir={r}/var/lib/dpkg -W '--showformat=${{Package}}\\t${{Version}}\\t${{Architecture}}\\t${{Status}}\\n'"
                ),
                format!(
                    "apt-cache -o Dir={r} -o Dir::State::status={r}/var/lib/dpkg/status show hello:amd64=2.10-3 libfoo1:amd64=1.0-1 'docs:all=1:2.0~rc1'"
                ),
                format!("dpkg --root={r} --verify"),
            ]
        );
        assert_eq!((h.host.as_str(), h.cluster.as_str()), ("db1", "lab"));
        assert_eq!(h.collected, "2026-01-01T00:00:00Z");
        assert_eq!(h.kernel.as_deref(), Some("5.15.0-70-generic"));
        assert_eq!(h.os_release["PRETTY_NAME"], "Astra Linux \"SE\"");
        assert_eq!(h.os_release["VERSION_ID"], "1.7_x86-64");
        let names: Vec<&str> = h.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["hello", "libfoo1", "docs"],
            "not the config-files one"
        );
        let [hello, libfoo, docs] = &h.packages[..] else {
            unreachable!()
        };
        assert_eq!(hello.deb_sha256, ["aaaa"]);
        assert_eq!(docs.deb_sha256, ["cccc", "dddd"], "sources that disagree");
        assert!(
            libfoo.deb_sha256.is_empty(),
            "dpkg's own record has no hash"
        );
        // sha256sum of the files' contents.
        assert_eq!(
            hello.md5sums_sha256.as_deref(),
            Some("4daaa6ebb70889dba0ebde600206e7fe4c1895c0da3414a0815ae3fe2c0ab88a")
        );
        assert!(libfoo.md5sums_sha256.is_some(), "the :amd64 file");
        assert_eq!(docs.md5sums_sha256, None);
        assert!(h.files_verified);
        assert_eq!(hello.changed.len(), 2);
        assert!(hello.changed[0].conffile && hello.changed[0].path == "/etc/hello.conf");
        assert_eq!(hello.changed[1].error.as_deref(), Some("Permission denied"));
        assert_eq!(h.changed_unowned[0].path, "/usr/lib/orphan");
        assert!(h.notes.is_empty(), "{:?}", h.notes);
    }

    #[test]
    fn on_this_machine_the_commands_are_plain() {
        let f = fake();
        let slash = Path::new("/");
        let pkgs = installed(slash, &f).unwrap();
        index_hashes(slash, &f, &pkgs, &mut Vec::new());
        verify(slash, &f).unwrap();
        let cmds = f.commands();
        assert!(cmds[0].starts_with("dpkg-query -W "), "{cmds:?}");
        assert!(
            cmds[1].starts_with("apt-cache show hello:amd64=2.10-3 "),
            "{cmds:?}"
        );
        assert_eq!(cmds[2], "dpkg --verify");
    }

    #[test]
    fn what_cannot_be_collected_becomes_a_note() {
        let dir = image();
        let f = fake();
        f.on_stderr("apt-cache", 127, "apt-cache: not found")
            .on_stderr("--verify", 2, "dpkg: error: cannot access archive");
        put(dir.path(), paths::JOURNAL, "{ not json");
        let h = collect(dir.path(), &f, 0).unwrap();
        assert!(h.packages.iter().all(|p| p.deb_sha256.is_empty()));
        assert!(h.packages[0].md5sums_sha256.is_some());
        assert!(!h.files_verified);
        let notes = h.notes.join("\n");
        assert!(notes.contains("journal: reading the journal"), "{notes}");
        assert!(notes.contains("apt-cache: not found"), "{notes}");
        assert!(
            notes.contains("changed files unknown: `dpkg --root="),
            "{notes}"
        );
        assert!(notes.contains("cannot access archive"), "{notes}");
    }

    #[test]
    fn no_role_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", collect(dir.path(), &fake(), 0).unwrap_err());
        assert!(e.contains("etc/airlock/role.toml"), "{e}");
        assert!(e.contains("run it on a VM of the cluster"), "{e}");
    }

    #[test]
    fn dpkg_query_output_that_is_not_four_fields_is_an_error() {
        let f = Recording::new();
        f.on("dpkg-query", 0, "hello 2.10-3\n");
        let e = format!("{:#}", installed(Path::new("/"), &f).unwrap_err());
        assert!(e.contains("without four tab-separated fields"), "{e}");
    }

    #[test]
    fn verify_lines() {
        assert_eq!(parse_verify_line(""), None);
        assert_eq!(parse_verify_line("garbage"), None);
        let c = parse_verify_line("??5?????? c /etc/a b (x)").unwrap();
        assert_eq!(
            (c.path.as_str(), c.conffile, c.error),
            ("/etc/a b (x)", true, None),
            "only a missing file carries an error"
        );
        let c = parse_verify_line("missing     /usr/x").unwrap();
        assert_eq!((c.checks.as_str(), c.conffile), ("missing  ", false));
    }
}
