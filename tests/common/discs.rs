//! Disc fixtures made with the real tools: `.deb` files from `dpkg-deb`, a
//! disc-like `dists/` from `apt-ftparchive`, ISO images from `xorriso`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command and panics with its output when it fails.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A package to make.
#[derive(Clone)]
pub struct Pkg<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub arch: &'a str,
    pub component: &'a str,
    /// Goes into a file in the package: different payloads, different bytes.
    pub payload: &'a str,
    pub priority: &'a str,
    /// More control fields, each line ending in a newline (`Depends: x\n`).
    pub control: &'a str,
}

impl<'a> Pkg<'a> {
    pub fn new(name: &'a str, version: &'a str) -> Self {
        Pkg {
            name,
            version,
            arch: "amd64",
            component: "main",
            payload: "payload",
            priority: "optional",
            control: "",
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version, self.arch)
    }

    pub fn pool_path(&self) -> String {
        let first = &self.name[..1];
        format!(
            "pool/{}/{first}/{}/{}",
            self.component,
            self.name,
            self.file_name()
        )
    }
}

/// Builds `pkg` with dpkg-deb under `disc/<pool path>`.
pub fn make_deb(disc: &Path, pkg: &Pkg) -> PathBuf {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("pkg");
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc").join(pkg.name)).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <test@example.org>\nSection: misc\nPriority: {}\n{}Description: test package {}\n A package made by the airlock tests.\n .\n It has a long description.\n",
            pkg.name, pkg.version, pkg.arch, pkg.priority, pkg.control, pkg.name
        ),
    )
    .unwrap();
    fs::write(
        root.join("usr/share/doc").join(pkg.name).join("payload"),
        pkg.payload,
    )
    .unwrap();
    let dest = disc.join(pkg.pool_path());
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&root)
        .arg(&dest)
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    dest
}

/// Writes the disc's own `dists/1.7_x86-64/<comp>/binary-amd64/Packages(.gz)`
/// and `Release` with apt-ftparchive, as the Astra discs carry.
pub fn index_disc(disc: &Path, components: &[&str]) {
    let suite = disc.join("dists/1.7_x86-64");
    for comp in components {
        let dir = suite.join(comp).join("binary-amd64");
        fs::create_dir_all(&dir).unwrap();
        let pool = format!("pool/{comp}");
        let packages = if disc.join(&pool).exists() {
            sh(Command::new("apt-ftparchive")
                .args(["packages", &pool])
                .current_dir(disc))
        } else {
            String::new()
        };
        fs::write(dir.join("Packages"), &packages).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, packages.as_bytes()).unwrap();
        fs::write(dir.join("Packages.gz"), gz.finish().unwrap()).unwrap();
    }
    let release = sh(Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=1.7_x86-64",
            "release",
            ".",
        ])
        .current_dir(&suite));
    fs::write(suite.join("Release"), release).unwrap();
}

/// Makes a disc directory with `pkgs`, indexed.
pub fn make_disc(dir: &Path, pkgs: &[Pkg]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for p in pkgs {
        make_deb(dir, p);
    }
    let mut comps: Vec<&str> = pkgs.iter().map(|p| p.component).collect();
    comps.sort();
    comps.dedup();
    index_disc(dir, &comps);
    dir.to_path_buf()
}

/// `xorriso -as mkisofs -R -J -o ISO DIR`.
pub fn make_iso(dir: &Path, iso: &Path) -> PathBuf {
    sh(Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-R",
            "-J",
            "-joliet-long",
            "-V",
            "ASTRA_TEST",
            "-quiet",
            "-o",
        ])
        .arg(iso)
        .arg(dir));
    iso.to_path_buf()
}

/// A throwaway apt root that trusts `keyring` for `repo`. The source uses
/// apt's `copy:` method (like `file:`, but it fetches the packages into the
/// cache, checking size and SHA256, so a download can be seen).
pub struct AptRoot {
    pub root: PathBuf,
}

impl AptRoot {
    pub fn new(base: &Path, repo: &Path, keyring: &Path, suite: &str) -> AptRoot {
        let root = base.join("aptroot");
        for d in [
            "etc/apt/sources.list.d",
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
            "var/log/apt",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        fs::write(
            root.join("etc/apt/sources.list"),
            format!(
                "deb [signed-by={}] copy://{} {suite} main contrib non-free\n",
                keyring.display(),
                repo.display()
            ),
        )
        .unwrap();
        AptRoot { root }
    }

    /// `apt-get ARGS` in this root; returns (success, stdout+stderr).
    pub fn apt_get(&self, args: &[&str]) -> (bool, String) {
        self.apt_get_env(args, &[])
    }

    /// [`AptRoot::apt_get`] with more environment (`APT_CONFIG`, say).
    pub fn apt_get_env(&self, args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
        self.run("apt-get", args, env)
    }

    /// `apt-cache ARGS` (`policy`, `madison`) in this root, after `update`.
    pub fn apt_cache(&self, args: &[&str]) -> (bool, String) {
        self.run("apt-cache", args, &[])
    }

    fn run(&self, program: &str, args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
        let r = self.root.display().to_string();
        let out = Command::new(program)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .args([
                "-q",
                "-o",
                &format!("Dir={r}"),
                "-o",
                &format!("Dir::State::status={r}/var/lib/dpkg/status"),
                "-o",
                "Debug::NoLocking=1",
                "-o",
                "APT::Sandbox::User=root",
                "-o",
                "APT::Architecture=amd64",
                "-o",
                "APT::Architectures=amd64",
                // apt's defaults, as on a VM (this machine's apt.conf.d may
                // turn the date checks off).
                "-o",
                "Acquire::Check-Date=true",
                "-o",
                "Acquire::Check-Valid-Until=true",
            ])
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // apt-get update exits 0 on some signature warnings: treat W:/E: as failure.
        let ok = out.status.success()
            && !text.contains("\nW: ")
            && !text.contains("\nE: ")
            && !text.starts_with("W: ")
            && !text.starts_with("E: ");
        (ok, text)
    }
}
