//! The deliverable: one directory (and optionally one tar) holding the signed
//! repository, the vendor disc, every VM's seed and payload, the runner and a
//! signed `SHA256SUMS` that `sha256sum -c` and `gpgv` check on their own.
//!
//! ```text
//! SHA256SUMS            every other file, sorted, "<hex>  <path>"
//! SHA256SUMS.gpg        detached OpenPGP signature of SHA256SUMS
//! archive-keyring.gpg   the public key (and .asc)
//! repo/                 the signed apt repository
//! vendor/               the vendor disc's files
//! seeds/ payloads/ inventory.toml
//! bin/airlock-firstboot
//! recipe.toml           the resolved recipe
//! README.txt            what to do at the site
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::Digest;

use crate::media::Medium;
use crate::par::progress_bar;
use crate::payload;
use crate::plan::{MediaCheck, Plan};
use crate::recipe::{self, Recipe, Role};
use crate::repo;
use crate::repo::hex;
use crate::secrets::Secrets;
use crate::seed;
use crate::sign::{self, Keyring, SigningKey};
use crate::tarform;
use crate::writer::{RootWriter, Writer};

/// The manifest.
pub const SUMS: &str = "SHA256SUMS";
/// The mode of every file, signed through the manifest: what the tar must
/// carry and what the directory form must not exceed.
pub const MODES: &str = "MODES";
/// Its signature.
pub const SUMS_SIG: &str = "SHA256SUMS.gpg";

/// What `airlock build` needs besides the recipe.
pub struct BuildOptions {
    pub recipe: PathBuf,
    pub out: PathBuf,
    pub key: SigningKey,
    /// Where the key was read from (never inside `out`).
    pub key_path: Option<PathBuf>,
    /// Where the secrets are kept between builds (outside the bundle).
    pub secrets: PathBuf,
    /// Pre-made secrets (the demo's); otherwise read or created at `secrets`.
    pub fixed_secrets: Option<Secrets>,
    /// The `airlock-firstboot` binary to ship.
    pub runner: PathBuf,
    pub tar: Option<PathBuf>,
    pub time: i64,
    pub progress: bool,
    /// Refuse a runner that needs a newer glibc than Astra SE 1.7's 2.28.
    pub check_glibc: bool,
    /// airlock's own source with its vendored crates (`just vendor`), shipped
    /// as `source/airlock-src.tar` so the site can audit and rebuild it.
    pub source_tar: Option<PathBuf>,
}

/// What a build made.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    pub out: PathBuf,
    pub tar: Option<PathBuf>,
    pub cluster: String,
    pub hosts: usize,
    pub files: usize,
    pub bytes: u64,
    pub repository: repo::Summary,
    /// The secrets file, or None for the demo's fixed secrets.
    pub secrets: Option<PathBuf>,
    pub secrets_created: bool,
    pub fingerprint: String,
    pub seconds: f64,
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path, buf: &mut [u8]) -> Result<(String, u64)> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut n = 0u64;
    loop {
        let k = f
            .read(buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// A file's SHA-256 (hex) and size, or why it could not be read.
pub type HashResult = Result<(String, u64)>;

/// Hashes `files` (absolute paths, with sizes for the progress bar) on all
/// cores; results in the same order.
pub fn hash_parallel(files: &[(PathBuf, u64)], progress: bool, what: &str) -> Vec<HashResult> {
    let total = files.iter().map(|f| f.1).sum();
    let bar = progress_bar(progress, total, what);
    let out = crate::par::map_buffered(files, crate::par::threads(0), |(path, size), buf| {
        let r = sha256_file(path, buf);
        bar.inc(*size);
        r
    });
    bar.finish_and_clear();
    out
}

/// Every regular file under `dir`, as sorted `/`-separated relative paths.
/// Symbolic links and other non-regular files are errors: a bundle has none.
pub fn list_tree(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        if rel.is_empty() || e.file_type().is_dir() {
            continue;
        }
        if !e.file_type().is_file() {
            bail!("{rel}: not a regular file (a bundle holds no links or devices)");
        }
        out.push((rel, e.metadata()?.len()));
    }
    out.sort();
    Ok(out)
}

/// `SHA256SUMS` text for `(path, hash)` pairs (sorted by path).
pub fn render_sums(entries: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (path, hash) in entries {
        let _ = writeln!(s, "{hash}  {path}");
    }
    s
}

/// The recipe as the bundle keeps it: defaults filled in, media reduced to
/// their file names (the build machine's paths mean nothing at the site).
pub fn resolved_recipe(recipe: &Recipe) -> Result<String> {
    let mut r = recipe.clone();
    let name_only = |p: &Option<PathBuf>| p.as_ref().and_then(|p| p.file_name()).map(PathBuf::from);
    r.media.main = name_only(&r.media.main);
    r.media.devel = name_only(&r.media.devel);
    r.media.vendor = name_only(&r.media.vendor);
    r.database.password_file = None;
    Ok(format!(
        "# The recipe this bundle was built from, with every default filled in.\n# Media are named by file only; the DB password is in the payloads, not here.\n{}",
        toml::to_string(&r)?
    ))
}

/// README.txt: the site procedure for this recipe.
pub fn site_readme(plan: &Plan, fingerprint: &str) -> String {
    let mut s = String::new();
    let db = &plan.database;
    let _ = writeln!(
        s,
        "airlock bundle for cluster {} ({})\n{}\n",
        plan.cluster,
        plan.domain,
        "=".repeat(40)
    );
    let _ = writeln!(
        s,
        "1. Check the bundle before you use it (stock tools only; run in this directory):\n\n    sha256sum -c --quiet SHA256SUMS && echo all files intact\n    gpgv --keyring ./archive-keyring.gpg SHA256SUMS.gpg SHA256SUMS\n\n   Or: airlock verify . --keyring /path/to/independently/delivered/archive-keyring.gpg\n   The keyring inside the bundle only proves the bundle is consistent; compare\n   its fingerprint with the one you were given separately:\n\n    {fingerprint}\n"
    );
    let _ = writeln!(
        s,
        "2. Prepare the reference VM once (Astra Linux SE 1.7, 2 vCPU, 4 GiB, 30 GiB,\n   one virtio NIC), with this bundle mounted or copied at /media/airlock:\n\n    sudo /media/airlock/bin/airlock-firstboot prepare --bundle /media/airlock\n\n   It copies the repository to /opt/airlock/repo (also /opt/main and /opt/devel\n   for the vendor installer) and the inventory with every VM's payload to\n   /opt/airlock, trusts the archive key, installs the runner and its service\n   (it runs at every boot), and seals the VM for cloning: the image's machine\n   id and SSH host keys are recorded so that no clone keeps them. Then shut it\n   down and clone it {} times; do not boot it again before cloning (if you do,\n   the clones still replace its ids, but cloud-init sees it as an instance).\n",
        plan.hosts.len()
    );
    let _ = writeln!(
        s,
        "   With the closed software environment on (DIGSIG_ELF_MODE=1 in\n   /etc/digsig/digsig_initramfs.conf), the one ELF file airlock adds must be\n   signed with the site's key after `prepare`, before the VM is shut down to be cloned:\n\n    sudo bsign --sign /usr/local/sbin/airlock-firstboot\n\n   (airlock-firstboot prints this hint when it finds ZPS on and no signature.)\n"
    );
    let _ = writeln!(
        s,
        "3. Give each clone its seed as a CD-ROM (label cidata), and boot them in this\n   order (each waits for what it needs, so the order only saves time):\n"
    );
    let order = [Role::DbMaster, Role::DbReplica, Role::Leader, Role::Manager];
    for role in order {
        for h in plan.hosts.iter().filter(|h| h.role == role) {
            let _ = writeln!(
                s,
                "    seeds/{}.iso  ->  {:<12} {:<10} {}/{}{}",
                h.name,
                h.name,
                h.role.as_str(),
                h.ip,
                h.prefix,
                h.mac
                    .as_ref()
                    .map(|m| format!("  MAC {m}"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        s,
        "\n   A clone without a seed disc finds itself in the inventory (copied to\n   /opt/airlock by prepare) by the MAC or SMBIOS UUID the recipe gives it,\n   and sets its address itself. The clones' clocks need not be right: apt\n   accepts this repository even when a clone's clock is behind the build\n   machine's (/etc/apt/apt.conf.d/50airlock).\n"
    );
    let _ = writeln!(
        s,
        "4. Watch each VM (nobody needs to type anything):\n\n    airlock-firstboot status          # steps done, running, waiting, failed\n    journalctl -u airlock-firstboot   # the log, with every command run\n"
    );
    match db.vip {
        Some(vip) => {
            let _ = writeln!(
                s,
                "   The database answers on the VIP {vip}:{} (VRRP router id {}).",
                db.port,
                db.virtual_router_id.unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "   The database answers on {}:{} (single server).",
                db.endpoint, db.port
            );
        }
    }
    let _ = writeln!(
        s,
        "   The web interface is on any dispatcher (https://{}/), login vdiadmin.\n",
        plan.swarm.leader_ip
    );
    let _ = writeln!(
        s,
        "5. When a step fails: `airlock-firstboot status` names the step and the\n   command; fix the cause and run `airlock-firstboot run` again (or reboot):\n   finished steps are skipped, an interrupted one is redone safely. A wait\n   that runs out is retried by the service on its own.\n\n6. After a failover the replica is the primary. When the old master comes\n   back it starts read-only (`status` says NOT A PRIMARY and why); nothing\n   is deleted. Make it a replica of the new primary before it serves again.\n"
    );
    s
}

/// Refuses an `--out` that would delete an input or something else.
fn check_output(opts: &BuildOptions, plan: &Plan) -> Result<()> {
    let mut inputs: Vec<(&str, &Path)> = vec![
        ("recipe", opts.recipe.as_path()),
        ("secrets file", opts.secrets.as_path()),
        ("runner", opts.runner.as_path()),
    ];
    for (what, p) in [
        ("main disc", &plan.media.main),
        ("devel disc", &plan.media.devel),
        ("vendor disc", &plan.media.vendor),
        ("password file", &plan.database.password_file),
    ] {
        if let Some(p) = p {
            inputs.push((what, p.as_path()));
        }
    }
    if let Some(s) = &opts.source_tar {
        inputs.push(("source tarball", s.as_path()));
    }
    if let Some(k) = &opts.key_path {
        inputs.push(("signing key", k.as_path()));
    }
    let also: Vec<(&str, &Path)> = opts.tar.iter().map(|t| ("--tar", t.as_path())).collect();
    crate::outdir::check(&opts.out, crate::outdir::Kind::Bundle, &inputs, &also)
}

/// `airlock build`.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    let started = std::time::Instant::now();
    let (recipe, source) = recipe::load(&opts.recipe)?;
    let outcome = crate::plan::resolve(&recipe, &source, MediaCheck::Require);
    let errors: Vec<String> = outcome.errors().map(|p| p.to_string()).collect();
    if !errors.is_empty() {
        bail!(
            "the recipe is not ready for a build:\n  {}",
            errors.join("\n  ")
        );
    }
    let plan = outcome.plan.expect("no errors, so a plan");
    check_output(opts, &plan)?;
    let runner_meta = fs::metadata(&opts.runner).with_context(|| {
        format!(
            "the runner {} is missing: build it (cargo build --release) or pass --runner",
            opts.runner.display()
        )
    })?;
    if !runner_meta.is_file() {
        bail!("the runner {} is not a file", opts.runner.display());
    }
    let runner =
        fs::read(&opts.runner).with_context(|| format!("reading {}", opts.runner.display()))?;
    if opts.check_glibc {
        crate::elfcheck::check_runner(&opts.runner, &runner)?;
    }
    let (secrets, secrets_created) = match &opts.fixed_secrets {
        Some(s) => (s.clone(), false),
        None => Secrets::load_or_create(&opts.secrets, &plan.cluster)?,
    };
    let secrets = match &plan.database.password_file {
        Some(f) => secrets.with_password_file(f)?,
        None => secrets,
    };

    // Build beside the target; rename into place at the end.
    let name = opts
        .out
        .file_name()
        .with_context(|| format!("{}: the output must name a directory", opts.out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    let tmp = parent.join(format!(".{name}.airlock-build-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    struct Cleanup(Option<PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(p) = self.0.take() {
                let _ = fs::remove_dir_all(p);
            }
        }
    }
    let mut cleanup = Cleanup(Some(tmp.clone()));

    // --- repository (reusing the previous bundle's pool files) ------------------
    // The cache names build-machine inodes and times, so it lives beside the
    // bundle, not in it (the bundle must be reproducible).
    let cache_beside = parent.join(format!(".{name}.airlock-repo-cache.json"));
    let old_repo = opts.out.join("repo");
    let mut discs = vec![(
        "main".to_string(),
        plan.media
            .main
            .clone()
            .expect("checked by MediaCheck::Require"),
    )];
    if let Some(d) = &plan.media.devel {
        discs.push(("devel".to_string(), d.clone()));
    }
    let mut repo_summary = repo::build(
        &repo::Options {
            discs,
            out: tmp.join("repo"),
            suite: plan.repository.suite.clone(),
            components: plan.repository.components.clone(),
            architectures: plan.repository.architectures.clone(),
            allow_unlisted: false,
            disc_keyring: None,
            time: opts.time,
            progress: opts.progress,
            jobs: 0,
            previous: old_repo.is_dir().then(|| old_repo.clone()),
            previous_cache: Some(cache_beside.clone()),
        },
        &opts.key,
    )?;

    repo_summary.out = opts.out.join("repo");
    let cache_tmp = parent.join(format!(".{name}.airlock-repo-cache.json.new"));
    fs::rename(tmp.join("repo").join(repo::CACHE_FILE), &cache_tmp)
        .context("moving the repository cache out of the bundle")?;

    // --- payloads, seeds, inventory -------------------------------------------------
    let payloads = payload::render_all(&plan, &secrets)?;
    let mut w = RootWriter::new(&tmp);
    seed::write_all(&mut w, &plan, &payloads, opts.time)?;

    // --- vendor disc ------------------------------------------------------------------
    let vendor_path = plan
        .media
        .vendor
        .clone()
        .expect("checked by MediaCheck::Require");
    let vendor = Medium::open_any(&vendor_path).context("reading the vendor disc")?;
    if vendor.find("install.sh").is_none() {
        bail!(
            "{}: no install.sh at the top of the vendor disc; is media.vendor the Space Dispatcher disc?",
            vendor.label
        );
    }
    let mut buf = vec![0u8; 1 << 20];
    for f in vendor.files() {
        let dest = tmp.join("vendor").join(&f.path);
        fs::create_dir_all(dest.parent().expect("has a parent"))?;
        let mut out =
            fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        vendor.stream(f, &mut buf, |chunk| Ok(out.write_all(chunk)?))?;
        let mode = if f.path.ends_with(".sh") {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
    }

    // --- runner, key, recipe, README ------------------------------------------------------
    w.write("bin/airlock-firstboot", &runner, 0o755)?;
    w.write(sign::PUBLIC_GPG_FILE, &opts.key.public_binary()?, 0o644)?;
    w.write(
        sign::PUBLIC_ASC_FILE,
        opts.key.public_armored()?.as_bytes(),
        0o644,
    )?;
    w.write("recipe.toml", resolved_recipe(&recipe)?.as_bytes(), 0o644)?;
    w.write(
        "README.txt",
        site_readme(&plan, &opts.key.fingerprint()).as_bytes(),
        0o644,
    )?;

    if let Some(src) = &opts.source_tar {
        let dest = tmp.join("source/airlock-src.tar");
        fs::create_dir_all(dest.parent().expect("has a parent"))?;
        fs::copy(src, &dest).with_context(|| {
            format!(
                "copying the source tarball {} (make it with `just vendor`)",
                src.display()
            )
        })?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
    }

    // --- MODES: every file's mode, set exactly ------------------------------------------
    let mut modes = BTreeMap::new();
    for (p, _) in list_tree(&tmp)? {
        if !safe_path(&p) {
            bail!(
                "{p:?}: a file name with a control character or an odd component; it would forge lines in SHA256SUMS (rename it on the disc it comes from)"
            );
        }
        let path = tmp.join(&p);
        let have = fs::metadata(&path)?.permissions().mode() & 0o7777;
        let mode = policy_mode(have);
        if have != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        }
        modes.insert(p, mode);
    }
    modes.insert(MODES.to_string(), 0o644);
    w.write(MODES, render_modes(&modes).as_bytes(), 0o644)?;

    // --- SHA256SUMS: pool files were hashed while the repository was built -----------
    let known: BTreeMap<String, String> = repo_summary
        .pool_hashes
        .iter()
        .map(|(p, h)| (format!("repo/{p}"), h.clone()))
        .collect();
    let tree = list_tree(&tmp)?;
    let todo: Vec<(PathBuf, u64)> = tree
        .iter()
        .filter(|(p, _)| !known.contains_key(p))
        .map(|(p, n)| (tmp.join(p), *n))
        .collect();
    let hashed = hash_parallel(&todo, opts.progress, "hashing the bundle");
    let mut sums = BTreeMap::new();
    let mut todo_iter = todo.iter().zip(hashed);
    let mut bytes = 0;
    for (p, n) in &tree {
        bytes += n;
        let h = match known.get(p) {
            Some(h) => h.clone(),
            None => {
                let (_, r) = todo_iter.next().expect("one result per file");
                r?.0
            }
        };
        sums.insert(p.clone(), h);
    }
    let sums_text = render_sums(&sums);
    w.write(SUMS, sums_text.as_bytes(), 0o644)?;
    w.write(
        SUMS_SIG,
        opts.key
            .detached_armored(sums_text.as_bytes(), opts.time)?
            .as_bytes(),
        0o644,
    )?;

    repo::replace_dir(&tmp, &opts.out)?;
    cleanup.0 = None;
    fs::rename(&cache_tmp, &cache_beside).context("keeping the repository cache")?;
    repo::refresh_cache(&opts.out.join("repo"), &cache_beside, &opts.key)?;

    if let Some(tar) = &opts.tar {
        write_tar(&opts.out, tar, opts.time, opts.progress)?;
    }
    Ok(BuildSummary {
        out: opts.out.clone(),
        tar: opts.tar.clone(),
        cluster: plan.cluster.clone(),
        hosts: plan.hosts.len(),
        files: tree.len() + 2,
        bytes,
        repository: repo_summary,
        secrets: opts.fixed_secrets.is_none().then(|| opts.secrets.clone()),
        secrets_created,
        fingerprint: opts.key.fingerprint(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The mode a file gets in a bundle: executables 0755, private files
/// 0600, the rest 0644.
pub fn policy_mode(mode: u32) -> u32 {
    if mode & 0o100 != 0 {
        0o755
    } else if mode & 0o077 == 0 {
        0o600
    } else {
        0o644
    }
}

/// `MODES` text: `<octal mode>  <path>` per file, sorted like SHA256SUMS.
pub fn render_modes(modes: &BTreeMap<String, u32>) -> String {
    let mut s = String::new();
    for (path, mode) in modes {
        let _ = writeln!(s, "{mode:04o}  {path}");
    }
    s
}

/// The files a bundle tar starts with, in this order: what verify needs
/// before it can judge the rest.
pub const HEAD: [&str; 5] = [
    SUMS,
    SUMS_SIG,
    sign::PUBLIC_GPG_FILE,
    sign::PUBLIC_ASC_FILE,
    MODES,
];

/// The order of a bundle tar's entries for these files: the head, then the
/// rest sorted, each directory once, right before its first entry.
pub fn canonical_order(files: &BTreeSet<String>) -> Vec<(String, tarform::Kind)> {
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    let head = HEAD
        .iter()
        .map(|h| h.to_string())
        .filter(|h| files.contains(h));
    let rest = files
        .iter()
        .filter(|p| !HEAD.contains(&p.as_str()))
        .cloned();
    for path in head.chain(rest) {
        let mut parents = Vec::new();
        let mut p = Path::new(&path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            parents.push(d.to_string_lossy().into_owned());
            p = d.parent();
        }
        for d in parents.into_iter().rev() {
            if dirs.insert(d.clone()) {
                out.push((d, tarform::Kind::Dir));
            }
        }
        out.push((path, tarform::Kind::File));
    }
    out
}

/// Writes the bundle directory as one tar in [`tarform`]'s form (entries in
/// [`canonical_order`], mtime `time`, modes from `MODES`), gzip compressed
/// (one member) when `file` ends in `.gz`. Written beside and renamed.
pub fn write_tar(dir: &Path, file: &Path, time: i64, progress: bool) -> Result<()> {
    let tree = list_tree(dir)?;
    let modes_text = fs::read_to_string(dir.join(MODES))
        .with_context(|| format!("reading {}", dir.join(MODES).display()))?;
    let mut problems = Vec::new();
    let modes = parse_modes(&modes_text, &mut problems);
    if let Some(p) = problems.first() {
        bail!("{}: {}: {}", dir.display(), p.path, p.detail);
    }
    let sizes: BTreeMap<String, u64> = tree.iter().cloned().collect();
    let total = tree.iter().map(|t| t.1).sum();
    let bar = progress_bar(progress, total, "writing the tar");
    let tmp = file.with_file_name(format!(
        ".{}.airlock-tmp",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    let out = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, out);
    let gz = file.extension().is_some_and(|e| e == "gz" || e == "tgz");
    let sink: Box<dyn Write> = if gz {
        Box::new(
            flate2::GzBuilder::new()
                .mtime(0)
                .write(out, flate2::Compression::fast()),
        )
    } else {
        Box::new(out)
    };
    let mut tw = tarform::TarWriter::new(sink, time.max(0) as u64);
    let files: BTreeSet<String> = sizes.keys().cloned().collect();
    let result = (|| -> Result<()> {
        for (rel, kind) in canonical_order(&files) {
            if kind == tarform::Kind::Dir {
                tw.dir(&rel)?;
                continue;
            }
            let mode = match rel.as_str() {
                SUMS | SUMS_SIG => 0o644,
                _ => *modes
                    .get(&rel)
                    .with_context(|| format!("{rel} is not in {MODES}"))?,
            };
            let path = dir.join(&rel);
            let f = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            tw.file(&rel, mode, sizes[&rel], bar.wrap_read(f))
                .with_context(|| format!("adding {rel}"))?;
        }
        let mut sink = tw.finish()?;
        sink.flush()?;
        drop(sink);
        Ok(())
    })();
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    fs::rename(&tmp, file).with_context(|| format!("renaming {} into place", file.display()))?;
    Ok(())
}

/// One thing wrong with a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `modified`, `missing`, `extra`, `unreadable`, `unsafe`, `signature`,
    /// `manifest`, `form` (the tar is not in the one form a bundle has),
    /// `mode` (wider than MODES allows).
    pub kind: String,
    pub path: String,
    pub detail: String,
}

/// The result of `airlock verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    /// `good`, or why not.
    pub signature: String,
    pub signer: Option<String>,
    /// When the manifest was signed (seconds since the epoch).
    pub signed_at: Option<i64>,
    /// Checked with the bundle's own keyring (proves consistency, not origin).
    pub own_keyring: bool,
    pub files_checked: usize,
    pub bytes: u64,
    pub problems: Vec<Finding>,
}

fn finding(kind: &str, path: &str, detail: impl Into<String>) -> Finding {
    Finding {
        kind: kind.into(),
        path: path.into(),
        detail: detail.into(),
    }
}

/// Checks a manifest path: relative, no `..`, nothing odd (no control
/// characters, which would forge lines in SHA256SUMS).
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Parses `<field>  <path>` lines (SHA256SUMS, MODES); malformed lines,
/// unsafe paths and a path given twice become findings.
fn parse_listing<T>(
    file: &str,
    text: &str,
    problems: &mut Vec<Finding>,
    field: impl Fn(&str) -> Option<T>,
    form: &str,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let parsed = line
            .split_once("  ")
            .and_then(|(f, p)| field(f).map(|v| (v, p)));
        match parsed {
            Some((v, p)) if safe_path(p) => {
                if out.insert(p.to_string(), v).is_some() {
                    problems.push(finding(
                        "manifest",
                        p,
                        format!("{file} lists it twice (line {}): sha256sum -c and airlock would disagree", i + 1),
                    ));
                }
            }
            Some((_, p)) => problems.push(finding(
                "unsafe",
                p,
                format!("{file} line {} names a path outside the bundle", i + 1),
            )),
            None => problems.push(finding(
                "manifest",
                file,
                format!("line {} is not \"{form}\"", i + 1),
            )),
        }
    }
    out
}

/// Parses a `SHA256SUMS` text: the listing and what is wrong with it.
pub fn parse_manifest(text: &str) -> (BTreeMap<String, String>, Vec<Finding>) {
    let mut problems = Vec::new();
    let m = parse_sums(text, &mut problems);
    (m, problems)
}

/// Parses SHA256SUMS.
fn parse_sums(text: &str, problems: &mut Vec<Finding>) -> BTreeMap<String, String> {
    parse_listing(
        SUMS,
        text,
        problems,
        |h| {
            (h.len() == 64
                && h.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
            .then(|| h.to_string())
        },
        "<sha256>  <path>",
    )
}

/// Parses MODES.
fn parse_modes(text: &str, problems: &mut Vec<Finding>) -> BTreeMap<String, u32> {
    parse_listing(
        MODES,
        text,
        problems,
        |m| {
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| [0o600, 0o644, 0o755].contains(m))
        },
        "<0600|0644|0755>  <path>",
    )
}

/// Checks the signature of the manifest.
fn check_signature(
    sums: &[u8],
    sig: Option<&[u8]>,
    keyring: &Keyring,
    problems: &mut Vec<Finding>,
) -> (String, Option<sign::Verified>) {
    match sig {
        None => {
            problems.push(finding(
                "signature",
                SUMS_SIG,
                "missing: the manifest is not signed",
            ));
            ("missing".into(), None)
        }
        Some(sig) => match keyring.verify_detached(sums, sig) {
            Ok(v) => ("good".into(), Some(v)),
            Err(e) => {
                problems.push(finding(
                    "signature",
                    SUMS_SIG,
                    format!("does not verify: {e:#}"),
                ));
                ("bad".into(), None)
            }
        },
    }
}

/// Compares what was found with the manifest.
fn compare(
    manifest: &BTreeMap<String, String>,
    found: &BTreeMap<String, Result<String, String>>,
    problems: &mut Vec<Finding>,
) {
    for (p, want) in manifest {
        match found.get(p) {
            None => problems.push(finding(
                "missing",
                p,
                "listed in SHA256SUMS, not in the bundle",
            )),
            Some(Err(e)) => problems.push(finding("unreadable", p, e.clone())),
            Some(Ok(got)) if got != want => problems.push(finding(
                "modified",
                p,
                format!("sha256 {got}, SHA256SUMS says {want}"),
            )),
            Some(Ok(_)) => {}
        }
    }
    for p in found.keys() {
        if !manifest.contains_key(p) && p != SUMS && p != SUMS_SIG {
            problems.push(finding("extra", p, "in the bundle, not in SHA256SUMS"));
        }
    }
}

/// The manifest, its signature and the modes, checked: what both forms of
/// verify need before they look at the files.
struct Listing {
    manifest: BTreeMap<String, String>,
    modes: BTreeMap<String, u32>,
    signature: String,
    verified: Option<sign::Verified>,
}

impl Listing {
    /// Nothing read (the tar stopped before its manifest).
    fn empty() -> Listing {
        Listing {
            manifest: BTreeMap::new(),
            modes: BTreeMap::new(),
            signature: "not checked".into(),
            verified: None,
        }
    }
}

fn read_listing(
    sums: &[u8],
    sig: Option<&[u8]>,
    modes: Option<&[u8]>,
    keyring: &Keyring,
    problems: &mut Vec<Finding>,
) -> Listing {
    let (signature, verified) = check_signature(sums, sig, keyring, problems);
    let manifest = parse_sums(&String::from_utf8_lossy(sums), problems);
    let modes = match modes {
        Some(m) => parse_modes(&String::from_utf8_lossy(m), problems),
        None => {
            problems.push(finding(
                "missing",
                MODES,
                "the bundle has no MODES (the modes its files must not exceed); it was made by an older airlock: build it again",
            ));
            BTreeMap::new()
        }
    };
    for p in manifest.keys() {
        if !modes.contains_key(p) && !modes.is_empty() {
            problems.push(finding(
                "manifest",
                p,
                "listed in SHA256SUMS but not in MODES",
            ));
        }
    }
    Listing {
        manifest,
        modes,
        signature,
        verified,
    }
}

fn keyring_for(given: Option<&Path>, own: Option<&[u8]>, label: &str) -> Result<Keyring> {
    match (given, own) {
        (Some(k), _) => Keyring::load(k),
        (None, Some(k)) => Keyring::from_bytes(k, label)
            .context("reading the bundle's own keyring (pass --keyring)"),
        (None, None) => bail!("{label} is missing: pass --keyring"),
    }
}

fn report(listing: Listing, own: bool, files: usize, bytes: u64, problems: Vec<Finding>) -> Report {
    Report {
        ok: problems.is_empty(),
        signature: listing.signature,
        signer: listing.verified.as_ref().map(|v| v.fingerprint.clone()),
        signed_at: listing.verified.as_ref().map(|v| v.created),
        own_keyring: own,
        files_checked: files,
        bytes,
        problems,
    }
}

/// The directories a manifest implies (every parent of a listed file).
fn implied_dirs<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for p in paths {
        let mut d = Path::new(p).parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            dirs.insert(x.to_string_lossy().into_owned());
            d = x.parent();
        }
    }
    dirs
}

/// A file's mode against what MODES allows, in the directory form: no
/// set-id or sticky bit, no write for group or others, and a private file
/// (0600) readable by nobody else.
fn mode_problem(path: &str, mode: u32, allowed: u32) -> Option<Finding> {
    let mode = mode & 0o7777;
    let wider = mode & 0o7000 != 0
        || mode & 0o022 & !allowed != 0
        || (allowed & 0o077 == 0 && mode & 0o077 != 0);
    wider.then(|| {
        finding(
            "mode",
            path,
            format!("mode {mode:04o} is wider than MODES allows ({allowed:04o})"),
        )
    })
}

/// `airlock verify` on a directory.
pub fn verify_dir(dir: &Path, keyring: Option<&Path>, progress: bool) -> Result<Report> {
    let sums = fs::read(dir.join(SUMS)).with_context(|| {
        format!(
            "reading {}: is {} a bundle?",
            dir.join(SUMS).display(),
            dir.display()
        )
    })?;
    let sig = fs::read(dir.join(SUMS_SIG)).ok();
    let modes = fs::read(dir.join(MODES)).ok();
    let own = keyring.is_none();
    let own_key = fs::read(dir.join(sign::PUBLIC_GPG_FILE)).ok();
    let keyring = keyring_for(keyring, own_key.as_deref(), sign::PUBLIC_GPG_FILE)?;
    let mut problems = Vec::new();
    let listing = read_listing(
        &sums,
        sig.as_deref(),
        modes.as_deref(),
        &keyring,
        &mut problems,
    );
    let dirs = implied_dirs(listing.manifest.keys());

    // Everything present; links and oddities reported, never followed.
    let mut present: Vec<(String, u64)> = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                let p = err
                    .path()
                    .and_then(|p| p.strip_prefix(dir).ok())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                problems.push(finding("unreadable", &p, err.to_string()));
                continue;
            }
        };
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let mode = e.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
        if e.file_type().is_dir() {
            if mode & 0o7022 != 0 {
                let shown = if rel.is_empty() { "." } else { rel.as_str() };
                problems.push(finding(
                    "mode",
                    shown,
                    format!(
                        "directory mode {:04o}: writable by others or with special bits",
                        mode & 0o7777
                    ),
                ));
            }
            if !rel.is_empty() && !dirs.contains(&rel) {
                problems.push(finding(
                    "extra",
                    &rel,
                    "a directory no file of SHA256SUMS is in",
                ));
            }
            continue;
        }
        if e.file_type().is_symlink() {
            problems.push(finding(
                "unsafe",
                &rel,
                "a symbolic link; bundles hold none (not followed)",
            ));
            continue;
        }
        if !e.file_type().is_file() {
            problems.push(finding("unsafe", &rel, "not a regular file"));
            continue;
        }
        let allowed = match rel.as_str() {
            SUMS | SUMS_SIG => Some(0o644),
            _ => listing.modes.get(&rel).copied(),
        };
        if let Some(allowed) = allowed
            && let Some(f) = mode_problem(&rel, mode, allowed)
        {
            problems.push(f);
        }
        present.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
    }
    let todo: Vec<(PathBuf, u64)> = present.iter().map(|(p, n)| (dir.join(p), *n)).collect();
    let hashed = hash_parallel(&todo, progress, "verifying");
    let mut found = BTreeMap::new();
    let mut bytes = 0;
    for ((p, _), r) in present.iter().zip(hashed) {
        found.insert(
            p.clone(),
            r.map(|(h, n)| {
                bytes += n;
                h
            })
            .map_err(|e| format!("{e:#}")),
        );
    }
    compare(&listing.manifest, &found, &mut problems);
    let files = found.len();
    Ok(report(listing, own, files, bytes, problems))
}

/// The most bytes verify keeps of a head file (the manifest, its signature,
/// the keys, the modes).
const HEAD_LIMIT: u64 = 64 << 20;

/// `airlock verify` on a tar (or .tar.gz), read as a stream, never
/// extracted, in the one form `airlock build` writes ([`tarform`]).
pub fn verify_tar(file: &Path, keyring: Option<&Path>, progress: bool) -> Result<Report> {
    let label = file.display().to_string();
    let keyring = keyring.map(Keyring::load).transpose()?;
    let f = fs::File::open(file).with_context(|| format!("opening {label}"))?;
    let total = f.metadata()?.len();
    let bar = progress_bar(progress, total, "verifying");
    let buffered = std::io::BufReader::with_capacity(1 << 20, bar.wrap_read(f));
    let report = verify_tar_stream(buffered, keyring.as_ref(), &label);
    bar.finish_and_clear();
    report
}

/// [`verify_tar`] on a stream (`label` names it in findings); without a
/// keyring, the tar's own.
pub fn verify_tar_stream<R: std::io::BufRead>(
    mut input: R,
    keyring: Option<&Keyring>,
    label: &str,
) -> Result<Report> {
    let gz = input
        .fill_buf()
        .with_context(|| format!("reading {label}"))?
        .starts_with(&[0x1f, 0x8b]);
    let mut problems = Vec::new();
    let result = if gz {
        let decoder = flate2::bufread::GzDecoder::new(input);
        // airlock's gzip header: no name, comment or extra field, time 0,
        // system "unknown" (flate2's). Anything else was made by another tool.
        let header_ok = decoder.header().is_none_or(|h| {
            h.filename().is_none()
                && h.comment().is_none()
                && h.extra().is_none()
                && h.mtime() == 0
                && h.operating_system() == 255
        });
        if !header_ok {
            problems.push(finding(
                "form",
                label,
                "a gzip header airlock does not write (a name, comment, extra field, time or system): verify the uncompressed tar instead",
            ));
        }
        let mut tr = tarform::TarReader::new(decoder);
        let r = read_bundle_tar(&mut tr, keyring, label, &mut problems);
        let decoder = tr.into_inner();
        let mut inner = decoder.into_inner();
        let rest = inner.fill_buf().map(|b| !b.is_empty());
        if problems.iter().all(|p| p.kind != "form") && !matches!(rest, Ok(false)) {
            problems.push(finding(
                "form",
                label,
                "bytes after the gzip member (a second member or garbage: gzip -d would read on)",
            ));
        }
        r
    } else {
        let mut tr = tarform::TarReader::new(input);
        read_bundle_tar(&mut tr, keyring, label, &mut problems)
    };
    let (listing, own, files, bytes) = result?;
    Ok(report(listing, own, files, bytes, problems))
}

/// Reads a bundle tar entry by entry: the head first (manifest, signature,
/// keys, modes), then every other entry in the canonical order, each with
/// the mode MODES gives it.
fn read_bundle_tar<R: Read>(
    tr: &mut tarform::TarReader<R>,
    keyring: Option<&Keyring>,
    label: &str,
    problems: &mut Vec<Finding>,
) -> Result<(Listing, bool, usize, u64)> {
    let mut found: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    let mut head: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let form = |problems: &mut Vec<Finding>, e: tarform::FormError| {
        problems.push(finding("form", label, e.to_string()));
    };
    // The head, in order.
    for want in HEAD {
        let stop = |problems: &mut Vec<Finding>, f: Finding| {
            problems.push(f);
            Ok((Listing::empty(), keyring.is_none(), 0, 0))
        };
        let entry = match tr.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                return stop(
                    problems,
                    finding("form", label, format!("the tar ends before {want}")),
                );
            }
            Err(e) => return stop(problems, finding("form", label, e.to_string())),
        };
        if entry.path != want || entry.kind != tarform::Kind::File {
            return stop(
                problems,
                finding(
                    "form",
                    &entry.path,
                    format!(
                        "at byte {}: a bundle tar starts with {}; this entry is not {want}",
                        entry.offset,
                        HEAD.join(", ")
                    ),
                ),
            );
        }
        if entry.mode != 0o644 || entry.size > HEAD_LIMIT {
            return stop(
                problems,
                finding(
                    "form",
                    want,
                    format!(
                        "at byte {}: mode {:04o} and {} bytes; the head files are 0644 and small",
                        entry.offset, entry.mode, entry.size
                    ),
                ),
            );
        }
        let mut data = Vec::with_capacity(entry.size as usize);
        loop {
            match tr.read_data(&mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) => {
                    form(problems, e);
                    return Ok((Listing::empty(), keyring.is_none(), found.len(), bytes));
                }
            }
        }
        bytes += data.len() as u64;
        found.insert(want.to_string(), Ok(hex(&sha2::Sha256::digest(&data))));
        head.insert(want, data);
    }
    let own = keyring.is_none();
    let own_keyring;
    let keyring = match keyring {
        Some(k) => k,
        None => {
            own_keyring = keyring_for(
                None,
                head.get(sign::PUBLIC_GPG_FILE).map(Vec::as_slice),
                &format!("{label}:{}", sign::PUBLIC_GPG_FILE),
            )?;
            &own_keyring
        }
    };
    let Some(sums) = head.get(SUMS) else {
        problems.push(finding("missing", SUMS, "the tar holds no manifest"));
        return Ok((Listing::empty(), own, found.len(), bytes));
    };
    let listing = read_listing(
        sums,
        head.get(SUMS_SIG).map(Vec::as_slice),
        head.get(MODES).map(Vec::as_slice),
        keyring,
        problems,
    );
    if problems.iter().any(|p| p.kind == "form") {
        return Ok((listing, own, found.len(), bytes));
    }
    // The rest, in the one order the manifest gives.
    let mut files: BTreeSet<String> = listing.manifest.keys().cloned().collect();
    files.insert(SUMS.into());
    files.insert(SUMS_SIG.into());
    let expected = canonical_order(&files);
    let skip = expected
        .iter()
        .position(|(p, _)| p == MODES)
        .map_or(HEAD.len(), |i| i + 1);
    for (want, kind) in &expected[skip..] {
        let entry = match tr.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                problems.push(finding("missing", want, "the tar ends before it"));
                return Ok((listing, own, found.len(), bytes));
            }
            Err(e) => {
                form(problems, e);
                return Ok((listing, own, found.len(), bytes));
            }
        };
        if &entry.path != want || entry.kind != *kind {
            let what = if found.contains_key(&entry.path) {
                "a second entry for a path already read"
            } else {
                "not the entry the manifest puts here"
            };
            problems.push(finding(
                "form",
                &entry.path,
                format!(
                    "at byte {}: {what} (expected {want}): refused, nothing after it is read",
                    entry.offset
                ),
            ));
            return Ok((listing, own, found.len(), bytes));
        }
        let allowed = match kind {
            tarform::Kind::Dir => 0o755,
            tarform::Kind::File => listing.modes.get(want).copied().unwrap_or(0o644),
        };
        if entry.mode != allowed {
            problems.push(finding(
                "mode",
                want,
                format!(
                    "at byte {}: mode {:04o} in the tar, MODES says {allowed:04o}",
                    entry.offset, entry.mode
                ),
            ));
        }
        if *kind == tarform::Kind::Dir {
            continue;
        }
        let mut h = sha2::Sha256::new();
        let res = loop {
            match tr.read_data(&mut buf) {
                Ok(0) => break Ok(hex(&h.finalize())),
                Ok(n) => {
                    h.update(&buf[..n]);
                    bytes += n as u64;
                }
                Err(e) => {
                    form(problems, e);
                    return Ok((listing, own, found.len(), bytes));
                }
            }
        };
        found.insert(want.clone(), res);
    }
    match tr.next_entry() {
        Ok(None) => {}
        Ok(Some(e)) if found.contains_key(&e.path) => problems.push(finding(
            "form",
            &e.path,
            format!(
                "at byte {}: a second entry for a path already read (GNU tar would keep this one)",
                e.offset
            ),
        )),
        Ok(Some(e)) => problems.push(finding(
            "extra",
            &e.path,
            format!(
                "at byte {}: an entry after the last file SHA256SUMS lists",
                e.offset
            ),
        )),
        Err(e) => form(problems, e),
    }
    compare(&listing.manifest, &found, problems);
    Ok((listing, own, found.len(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_must_stay_inside() {
        assert!(safe_path("repo/pool/main/x.deb"));
        for bad in ["/etc/passwd", "../x", "a/../b", "a//b", "", "a\\b", "./a"] {
            assert!(!safe_path(bad), "{bad}");
        }
    }

    #[test]
    fn sums_parse_and_report_bad_lines() {
        let h = "a".repeat(64);
        let text = format!("{h}  ok/file\n{h}  ../escape\nnonsense\n");
        let mut problems = Vec::new();
        let m = parse_sums(&text, &mut problems);
        assert_eq!(m.len(), 1);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].kind, "unsafe");
        assert_eq!(problems[1].kind, "manifest");
    }

    #[test]
    fn tar_modes_are_fixed() {
        assert_eq!(policy_mode(0o100755), 0o755);
        assert_eq!(policy_mode(0o100600), 0o600);
        assert_eq!(policy_mode(0o100664), 0o644);
    }
}
