//! The as-built report end to end, with the real tools: the demo's bundle,
//! two of its packages installed by apt-get (dpkg underneath) into a
//! throwaway root from the bundle's signed repository, the report
//! collected there by `airlock-firstboot report --root` (dpkg-query,
//! apt-cache, dpkg --verify), and held against the bundle by
//! `airlock report check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::discs::{Pkg, make_deb, sh};
use crate::common::{Run, airlock};

const SUITE: &str = "1.7_x86-64";
const BASE: &str = "airlock-demo-base";
const DOC: &str = "airlock-demo-doc";

/// A throwaway system root that apt and dpkg install into, its sources
/// pointing at the bundle's repository with a `file:` line as on a VM.
struct Image {
    root: PathBuf,
    /// apt settings that drop this machine's install hooks (they would act
    /// on this machine, not on the image).
    conf: PathBuf,
}

impl Image {
    fn new(base: &Path, bundle: &Path) -> Image {
        let root = base.join("image");
        for d in [
            "etc/apt/sources.list.d",
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/log/apt",
            "etc/airlock",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        fs::write(
            root.join("etc/apt/sources.list"),
            format!(
                "deb [signed-by={}] file://{} {SUITE} main contrib non-free\n",
                bundle.join("archive-keyring.gpg").display(),
                bundle.join("repo").display()
            ),
        )
        .unwrap();
        fs::write(
            root.join("etc/os-release"),
            "PRETTY_NAME=\"Astra Linux\"\nID=astra\nVERSION_ID=1.7_x86-64\n",
        )
        .unwrap();
        let conf = base.join("no-hooks.conf");
        fs::write(
            &conf,
            "#clear DPkg::Pre-Install-Pkgs;\n#clear DPkg::Pre-Invoke;\n#clear DPkg::Post-Invoke;\n\
             #clear APT::Update::Pre-Invoke;\n#clear APT::Update::Post-Invoke;\n\
             #clear APT::Update::Post-Invoke-Success;\n",
        )
        .unwrap();
        Image { root, conf }
    }

    fn dpkg_options(&self) -> Vec<String> {
        let r = self.root.display();
        vec![
            format!("--root={r}"),
            format!("--log={r}/var/log/dpkg.log"),
            "--force-not-root".into(),
            "--force-script-chrootless".into(),
        ]
    }

    /// `apt-get ARGS` in the image; returns what it said.
    fn apt_get(&self, args: &[&str]) -> String {
        let r = self.root.display();
        let mut cmd = Command::new("apt-get");
        cmd.arg("-q").arg("-c").arg(&self.conf).args([
            "-o",
            &format!("Dir={r}"),
            "-o",
            &format!("Dir::State::status={r}/var/lib/dpkg/status"),
            "-o",
            &format!("Dir::Log={r}/var/log/apt"),
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Architecture=amd64",
            "-o",
            "APT::Architectures=amd64",
        ]);
        for o in self.dpkg_options() {
            cmd.args(["-o", &format!("DPkg::Options::={o}")]);
        }
        sh(cmd.args(args).env("LC_ALL", "C"))
    }

    /// `dpkg -i DEB` into the image (a package from elsewhere).
    fn dpkg_install(&self, deb: &Path) {
        sh(Command::new("dpkg")
            .args(self.dpkg_options())
            .arg("-i")
            .arg(deb));
    }
}

/// Runs `airlock-firstboot ARGS` in `dir`.
fn firstboot(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-firstboot"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    Run::from_output(out)
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Whether apt and dpkg can install into a throwaway root here: apt-get
/// and dpkg present, and (as a non-root user) dpkg accepting
/// --force-not-root for an image it cannot chown in.
fn can_install(dir: &Path) -> Result<(), String> {
    for tool in ["apt-get", "apt-cache", "dpkg", "dpkg-query", "dpkg-deb"] {
        let found = Command::new(tool).arg("--version").output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(format!("no {tool}"));
        }
    }
    let probe = dir.join("probe");
    fs::create_dir_all(probe.join("var/lib/dpkg/info")).unwrap();
    fs::write(probe.join("var/lib/dpkg/status"), "").unwrap();
    let deb = make_deb(dir, &Pkg::new("probe-pkg", "1.0"));
    let out = Command::new("dpkg")
        .arg(format!("--root={}", probe.display()))
        .arg(format!("--log={}/dpkg.log", probe.display()))
        .args(["--force-not-root", "--force-script-chrootless", "-i"])
        .arg(&deb)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "dpkg cannot install into a throwaway root as this user: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[test]
fn an_as_built_report_is_checked_against_the_bundle_with_real_apt_and_dpkg() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if let Err(why) = can_install(d) {
        eprintln!(
            "skipping: {why}; this test needs dpkg and apt that install into a throwaway root (root does)"
        );
        return;
    }
    let run = airlock(d, &["demo", "--out", "demo"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bundle = d.join("demo/bundle");
    let image = Image::new(d, &bundle);
    fs::copy(
        bundle.join("payloads/spdb1/rootfs/etc/airlock/role.toml"),
        image.root.join("etc/airlock/role.toml"),
    )
    .unwrap();
    image.apt_get(&["update"]);
    let said = image.apt_get(&["install", "-y", BASE, DOC]);
    assert!(
        said.contains(&format!("Setting up {BASE} (1.0-1)")),
        "{said}"
    );

    // Collected by the real code, checked: every package from the bundle.
    let root = image.root.to_str().unwrap();
    let run = firstboot(d, &["report", "--root", root, "--out", "as-built.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("wrote as-built.json: spdb1 (db-master of cluster "),
        "{}",
        run.stdout
    );
    let report = fs::read_to_string(d.join("as-built.json")).unwrap();
    check_clean(d, &report);

    // The host section alone is a report too.
    let run = firstboot(d, &["report", "--root", root, "--host-only"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let section = json(&run);
    assert_eq!(section["host"], "spdb1");
    fs::write(d.join("section.json"), &run.stdout).unwrap();
    let run = airlock(
        d,
        &["report", "check", "section.json", "--bundle", "demo/bundle"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    check_altered_hash(d, &report);
    check_foreign_package_and_changed_file(d, &image);
    check_a_bundle_that_does_not_verify(d);
}

/// The report as collected: both packages with both hashes, all
/// from-bundle, exit 0.
fn check_clean(d: &Path, report: &str) {
    let v: serde_json::Value = serde_json::from_str(report).unwrap();
    let host = &v["hosts"][0];
    assert_eq!(host["files_verified"], true);
    assert_eq!(host["os_release"]["ID"], "astra");
    let pkgs = host["packages"].as_array().unwrap();
    let names: Vec<&str> = pkgs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, [BASE, DOC]);
    for p in pkgs {
        assert_eq!(p["deb_sha256"].as_array().unwrap().len(), 1, "{p}");
        assert!(p["md5sums_sha256"].is_string(), "{p}");
    }
    let run = airlock(
        d,
        &[
            "report",
            "check",
            "as-built.json",
            "--bundle",
            "demo/bundle",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("2 packages: 2 from-bundle; 0 changed file(s) - OK"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("OK: all 2 packages of 1 host(s) are from the bundle"),
        "{}",
        run.stdout
    );
    let run = airlock(
        d,
        &[
            "report",
            "check",
            "as-built.json",
            "--bundle",
            "demo/bundle",
            "--json",
        ],
    );
    assert_eq!(run.code, 0);
    let out = json(&run);
    assert_eq!(out["ok"], true);
    assert_eq!(out["hosts"][0]["packages"][0]["class"], "from-bundle");
    assert!(
        out["hosts"][0]["packages"][0]["bundle_path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{BASE}_1.0-1_amd64.deb"))
    );
}

/// One .deb hash altered in the report: `differs`, naming both, exit 1.
fn check_altered_hash(d: &Path, report: &str) {
    let mut v: serde_json::Value = serde_json::from_str(report).unwrap();
    let real = v["hosts"][0]["packages"][1]["deb_sha256"][0]
        .as_str()
        .unwrap()
        .to_string();
    let fake = "0".repeat(64);
    v["hosts"][0]["packages"][1]["deb_sha256"][0] = serde_json::json!(fake);
    fs::write(d.join("altered.json"), v.to_string()).unwrap();
    let run = airlock(
        d,
        &["report", "check", "altered.json", "--bundle", "demo/bundle"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let line = format!(
        "  DIFFERS        {DOC} 1.0-1 all: the .deb's SHA-256 in apt's index is {fake} in the report, {real} in the bundle\n"
    );
    assert!(run.stdout.contains(&line), "{}", run.stdout);
    assert!(
        run.stdout.contains("1 from-bundle, 1 differs"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("FAILED: 1 of 1 host(s)"),
        "{}",
        run.stdout
    );
}

/// A package from elsewhere installed, a file of the bundle's changed:
/// `not-in-bundle` and the file, exit 1.
fn check_foreign_package_and_changed_file(d: &Path, image: &Image) {
    let mut local = Pkg::new("local-tool", "2.0");
    local.payload = "not from the bundle";
    image.dpkg_install(&make_deb(&d.join("elsewhere"), &local));
    // A newer airlock-demo-base than the bundle's, from elsewhere.
    let mut newer = Pkg::new(BASE, "1.1-1");
    newer.payload = "newer";
    image.dpkg_install(&make_deb(&d.join("elsewhere"), &newer));
    let readme = image.root.join(format!("usr/share/doc/{DOC}/README"));
    fs::write(&readme, "edited on the VM\n").unwrap();
    let root = image.root.to_str().unwrap();
    let out = d.join("after.json");
    let run = firstboot(
        d,
        &["report", "--root", root, "--out", out.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("3 packages, 1 with the .deb's hash from apt's index, 1 changed file(s)"),
        "{}",
        run.stdout
    );
    let run = airlock(
        d,
        &["report", "check", "after.json", "--bundle", "demo/bundle"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let text = &run.stdout;
    assert!(
        text.contains(&format!(
            "  NOT-IN-BUNDLE  {BASE} 1.1-1 amd64: the bundle has {BASE} 1.0-1 amd64 instead\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "  NOT-IN-BUNDLE  local-tool 2.0 amd64: the bundle has no package local-tool\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  CHANGED        /usr/share/doc/{DOC}/README (of {DOC}): contents changed\n"
        )),
        "{text}"
    );
    let out = json(&airlock(
        d,
        &[
            "report",
            "check",
            "after.json",
            "--bundle",
            "demo/bundle",
            "--json",
        ],
    ));
    let classes: Vec<&str> = out["hosts"][0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["not-in-bundle", "from-bundle", "not-in-bundle"]);
}

/// A bundle that does not verify is refused (exit 2); so are a truncated
/// report and a bundle tar.
fn check_a_bundle_that_does_not_verify(d: &Path) {
    let report = fs::read_to_string(d.join("as-built.json")).unwrap();
    fs::write(d.join("cut.json"), &report[..report.len() / 2]).unwrap();
    let run = airlock(
        d,
        &["report", "check", "cut.json", "--bundle", "demo/bundle"],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cut.json ends early"), "{}", run.stderr);
    let run = airlock(
        d,
        &[
            "report",
            "check",
            "as-built.json",
            "--bundle",
            "demo/bundle.tar",
        ],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("give the bundle directory"),
        "{}",
        run.stderr
    );
    let readme = d.join("demo/bundle/README.txt");
    let mut text = fs::read_to_string(&readme).unwrap();
    text.push_str("tampered\n");
    fs::write(&readme, text).unwrap();
    let run = airlock(
        d,
        &[
            "report",
            "check",
            "as-built.json",
            "--bundle",
            "demo/bundle",
        ],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("MODIFIED   README.txt"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "does not verify (1 problem(s), listed above): refusing to check a report against it"
        ),
        "{}",
        run.stderr
    );
}
