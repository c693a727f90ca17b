//! The deliverable: one directory (and optionally one tar) holding the signed
//! repository, the vendor disc, every VM's seed and payload, the runner and a
//! signed `SHA256SUMS` that `sha256sum -c` and `gpgv` check on their own.
//!
//! ```text
//! SHA256SUMS            every other file, sorted, "<hex>  <path>"
//! SHA256SUMS.gpg        detached OpenPGP signature of SHA256SUMS (one per key)
//! archive-keyring.gpg   the public keys (and .asc)
//! repo/                 the signed apt repository
//! vendor/               the vendor disc's files
//! seeds/ payloads/ inventory.toml
//! bin/airlock-firstboot
//! recipe.toml           the resolved recipe
//! README.txt            what to do at the site
//! sbom.cdx.json         CycloneDX SBOM: every package with its disc, both programs with their crates
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::check;
use crate::build::cloudinit;
use crate::build::media::Medium;
use crate::build::plan::{MediaCheck, Plan};
use crate::build::recipe::{self, Recipe};
use crate::build::repo;
use crate::build::secrets::Secrets;
use crate::build::seed;
use crate::build::sign::{self, Signers};
use crate::shared::staging::Staging;
use crate::shared::writer::{RootWriter, Writer};

mod readme;
mod tar;

pub use crate::shared::manifest::{
    Finding, MODES, Report, SUMS, SUMS_SIG, Trust, hash_parallel, parse_manifest, policy_mode,
    safe_path, verify_dir, verify_tar, verify_tar_stream,
};
pub use readme::site_readme;
pub use tar::{gzip_named, list_tree, render_modes, render_sums, write_tar};

/// What `airlock build` needs besides the recipe.
pub struct BuildOptions {
    pub recipe: PathBuf,
    pub out: PathBuf,
    /// The signing keys, in signing order.
    pub key: Signers,
    /// Where the keys were read from (never inside `out`).
    pub key_paths: Vec<PathBuf>,
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
    /// Cut the bundle into volumes of at most this many bytes
    /// (`out/volumes/NN/`, each verifying alone).
    pub volume_size: Option<u64>,
    /// With `volume_size`: each volume also as an ISO image.
    pub iso: bool,
    /// Write to `out` only what this earlier bundle (a directory, tar,
    /// volumes or its `SHA256SUMS`) lacks: a delta.
    pub base: Option<PathBuf>,
    /// Write only `tar`, streaming the packages from the discs into it
    /// (`out` is then the tar's path: what is staged goes beside it).
    pub no_dir: bool,
    /// Build even when apt could not install some role's packages from
    /// the repository (the completeness check's problems are reported).
    pub allow_incomplete: bool,
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
    /// The first signing key's fingerprint (the only one's, with one key).
    pub fingerprint: String,
    /// Every signing key's fingerprint, in signing order.
    pub fingerprints: Vec<String>,
    /// The volumes, when the bundle was cut into volumes.
    pub volumes: Option<crate::build::volumes::Summary>,
    /// What the delta holds, when `out` is a delta (`--base`).
    pub delta: Option<crate::build::delta::Summary>,
    /// Whether apt can install every role's packages (`airlock check`).
    pub completeness: crate::build::check::Report,
    pub seconds: f64,
    /// What became of an earlier build of `out` that was interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

/// The recipe as the bundle keeps it: defaults filled in, media reduced to
/// their file names (the build machine's paths mean nothing at the site).
pub fn resolved_recipe(recipe: &Recipe) -> Result<String> {
    let mut r = recipe.clone();
    let name_only = |p: &Option<PathBuf>| p.as_ref().and_then(|p| p.file_name()).map(PathBuf::from);
    r.media.main = name_only(&r.media.main);
    r.media.devel = name_only(&r.media.devel);
    r.media.updates = r
        .media
        .updates
        .iter()
        .map(|p| p.file_name().map_or_else(|| p.clone(), PathBuf::from))
        .collect();
    r.media.vendor = name_only(&r.media.vendor);
    r.media.base_status = name_only(&r.media.base_status);
    r.database.password_file = None;
    Ok(format!(
        "# The recipe this bundle was built from, with every default filled in.\n# Media are named by file only; the DB password is in the payloads, not here.\n{}",
        toml::to_string(&r)?
    ))
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
    for p in &plan.media.updates {
        inputs.push(("update disc", p.as_path()));
    }
    if let Some(s) = &opts.source_tar {
        inputs.push(("source tarball", s.as_path()));
    }
    for k in &opts.key_paths {
        inputs.push(("signing key", k.as_path()));
    }
    if let Some(b) = &opts.base {
        // (--no-dir with --base is refused by the command line.)
        inputs.push(("base", b.as_path()));
    }
    if opts.tar.is_some() && opts.volume_size.is_some() {
        bail!(
            "--tar and --volume-size together: a volume is a directory to burn or copy as it is (one tar would have to be split); give one of them"
        );
    }
    if opts.no_dir {
        return crate::build::outdir::check_file(&opts.out, "--tar", &inputs);
    }
    let also: Vec<(&str, &Path)> = opts.tar.iter().map(|t| ("--tar", t.as_path())).collect();
    crate::build::outdir::check(
        &opts.out,
        crate::build::outdir::Kind::Bundle,
        &inputs,
        &also,
    )
}

/// `airlock build`: the recipe checked, the bundle assembled in a staging
/// directory beside `--out`, signed, and moved into place.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary> {
    let (recipe, plan) = load_plan(&opts.recipe)?;
    build_planned(opts, &recipe, &plan)
}

/// [`build`] from the recipe at `opts.recipe` already resolved to `plan`
/// (with every media file required).
pub fn build_planned(opts: &BuildOptions, recipe: &Recipe, plan: &Plan) -> Result<BuildSummary> {
    let started = std::time::Instant::now();
    let recovered = crate::build::takeover::recover(&opts.out)?;
    check_output(opts, plan)?;
    let base = opts
        .base
        .as_deref()
        .map(crate::build::delta::Base::read)
        .transpose()?;
    let runner = read_runner(opts)?;
    let (secrets, secrets_created) = load_secrets(opts, plan)?;
    let staging = Staging::beside(&opts.out)?;
    let cache = RepoCache::beside(&opts.out)?;
    let (only, closure_base) = subset(opts, recipe, plan)?.unzip();
    let mut repository = build_repository(opts, plan, staging.path(), &cache, base.as_ref(), only)?;
    let completeness = check_completeness(opts, recipe, plan, &mut repository, closure_base)?;
    let mut w = RootWriter::new(staging.path());
    let payloads = cloudinit::render_all(plan, &secrets)?;
    seed::write_all(&mut w, plan, &payloads, opts.time)?;
    copy_vendor_disc(plan, staging.path())?;
    write_fixed_files(&mut w, opts, recipe, plan, &runner)?;
    write_sbom(&mut w, plan, &repository, &runner, opts.time)?;
    copy_source_tar(opts, staging.path())?;
    let outside = outside_files(staging.path(), opts, &repository)?;
    // One listing serves MODES and SHA256SUMS (MODES joins it once written).
    let mut tree = bundle_tree(staging.path(), &outside)?;
    let modes_len = write_modes(&mut w, staging.path(), &outside, &tree)?;
    tree.push((MODES.to_string(), modes_len));
    tree.sort();
    let (files, bytes) = write_manifest(&mut w, staging.path(), &tree, &repository, opts)?;
    let mut summary = BuildSummary {
        out: opts.out.clone(),
        tar: opts.tar.clone(),
        cluster: plan.cluster.clone(),
        hosts: plan.hosts.len(),
        files,
        bytes,
        repository: repository.clone(),
        secrets: opts.fixed_secrets.is_none().then(|| opts.secrets.clone()),
        secrets_created,
        fingerprint: opts.key.fingerprints()[0].clone(),
        fingerprints: opts.key.fingerprints(),
        volumes: None,
        delta: None,
        completeness,
        seconds: 0.0,
        recovered,
    };
    if let Some(base) = &base {
        // The whole bundle was only the delta's source: it goes, and so
        // does the cache made for it (it would vouch for a partial pool).
        let delta =
            crate::build::delta::write(staging.path(), base, &opts.out, &opts.key, opts.time)?;
        if let Some(tar) = &opts.tar {
            // `apply` and `airlock-firstboot update` take it as they take
            // the directory.
            write_tar(&opts.out, tar, opts.time, opts.progress)?;
        }
        let _ = fs::remove_file(&cache.fresh);
        drop(staging);
        if let Some(d) = &base.dir {
            // The base's cache still vouches for what was linked from it
            // (best effort: without it the next delta reads the discs).
            let cache = RepoCache::kept_beside(d)?;
            let linked = &summary.repository.linked;
            let _ = repo::refresh_linked(&d.join("repo"), &cache, &opts.key, linked);
        }
        summary.volumes = split_volumes(opts, plan)?;
        summary.delta = Some(delta);
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if opts.no_dir {
        let discs = repository_discs(plan);
        stream_tar(staging.path(), &outside, &discs, &repository, opts)?;
        cache.keep_for_tar()?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let moved = commit(staging, &opts.out, &repository, &outside)?;
    cache.keep(&opts.out, &opts.key, moved)?;
    if let Some(tar) = &opts.tar {
        write_tar(&opts.out, tar, opts.time, opts.progress)?;
    }
    let volumes = split_volumes(opts, plan)?;
    repository.out = opts.out.join("repo");
    summary.repository = repository;
    summary.volumes = volumes;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `--volume-size`: the bundle or delta at `--out` cut into volumes (and
/// `--iso`, their images).
fn split_volumes(
    opts: &BuildOptions,
    plan: &Plan,
) -> Result<Option<crate::build::volumes::Summary>> {
    let Some(size) = opts.volume_size else {
        return Ok(None);
    };
    let mut v = crate::build::volumes::split(&opts.out, size, &plan.cluster, &opts.key, opts.time)?;
    if opts.iso {
        v.images = crate::build::volumes::write_images(&opts.out, &v, &plan.cluster, opts.time)?;
    }
    Ok(Some(v))
}

/// The recipe and its plan; every error of the plan refuses the build.
fn load_plan(path: &Path) -> Result<(Recipe, Plan)> {
    let (recipe, source) = recipe::load(path)?;
    let outcome = crate::build::plan::resolve(&recipe, &source, MediaCheck::Require);
    let errors: Vec<String> = outcome.errors().map(|p| p.to_string()).collect();
    if !errors.is_empty() {
        bail!(
            "the recipe is not ready for a build:\n  {}",
            errors.join("\n  ")
        );
    }
    Ok((recipe, outcome.plan.expect("no errors, so a plan")))
}

/// The runner's bytes, checked for Astra's glibc when asked.
fn read_runner(opts: &BuildOptions) -> Result<Vec<u8>> {
    let meta = fs::metadata(&opts.runner).with_context(|| {
        format!(
            "the runner {} is missing: build it (cargo build --release) or pass --runner",
            opts.runner.display()
        )
    })?;
    if !meta.is_file() {
        bail!("the runner {} is not a file", opts.runner.display());
    }
    let runner =
        fs::read(&opts.runner).with_context(|| format!("reading {}", opts.runner.display()))?;
    if opts.check_glibc {
        crate::build::elfcheck::check_runner(&opts.runner, &runner)?;
    }
    Ok(runner)
}

/// The site's secrets (created on the first build), with the DB password
/// from `password_file` when the recipe names one.
fn load_secrets(opts: &BuildOptions, plan: &Plan) -> Result<(Secrets, bool)> {
    let hosts = plan.ssh_hosts();
    let (secrets, created) = match &opts.fixed_secrets {
        Some(s) => {
            // Fixed secrets (the demo) get fixed keys for what they lack.
            use rand::SeedableRng as _;
            let mut s = s.clone();
            let mut rng = rand_chacha::ChaCha20Rng::from_seed(*b"airlock-fixed-secrets-INSECURE-0");
            s.complete(&plan.cluster, &hosts, &mut rng)?;
            (s, false)
        }
        None => Secrets::load_or_create(&opts.secrets, &plan.cluster, &hosts)?,
    };
    let secrets = match &plan.database.password_file {
        Some(f) => secrets.with_password_file(f)?,
        None => secrets,
    };
    Ok((secrets, created))
}

/// The repository's rebuild cache. It names build-machine inodes and times,
/// so it lives beside the bundle, not in it (the bundle must be
/// reproducible); the new one waits in `fresh` until the bundle is in place.
struct RepoCache {
    kept: PathBuf,
    fresh: PathBuf,
}

impl RepoCache {
    fn beside(out: &Path) -> Result<RepoCache> {
        let kept = RepoCache::kept_beside(out)?;
        let fresh = kept.with_extension("json.new");
        Ok(RepoCache { kept, fresh })
    }

    /// Where the cache of the bundle at `out` is kept.
    fn kept_beside(out: &Path) -> Result<PathBuf> {
        let name = out
            .file_name()
            .with_context(|| format!("{}: the output must name a directory", out.display()))?
            .to_string_lossy();
        Ok(out.with_file_name(format!(".{name}.airlock-repo-cache.json")))
    }

    /// Moves the new cache into place, sealed for the repository at its
    /// final path: read and sealed again when the pool was taken over file
    /// by file (each move changes a file's status-change time); a
    /// directory moved whole leaves every file's identity as it was.
    fn keep(&self, out: &Path, key: &Signers, moved: Moved) -> Result<()> {
        fs::rename(&self.fresh, &self.kept).context("keeping the repository cache")?;
        match moved {
            Moved::Whole => Ok(()),
            Moved::FileByFile => repo::refresh_cache(&out.join("repo"), &self.kept, key),
        }
    }
}

impl RepoCache {
    /// Keeps the new cache of a `--no-dir` tar as it was sealed: it names
    /// no pool files, only what each package's control is.
    fn keep_for_tar(&self) -> Result<()> {
        fs::rename(&self.fresh, &self.kept).context("keeping the repository cache")
    }
}

impl Drop for RepoCache {
    /// A build that fails (or writes no directory) keeps no new cache.
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.fresh);
    }
}

/// The signed repository from the main, devel and update discs, reusing
/// the previous bundle's pool files where the cache vouches for them: the
/// bundle at `--out`, or for a delta the base when it is a bundle
/// directory (its cache is only read).
fn build_repository(
    opts: &BuildOptions,
    plan: &Plan,
    staging: &Path,
    cache: &RepoCache,
    base: Option<&crate::build::delta::Base>,
    only: Option<std::collections::BTreeSet<String>>,
) -> Result<repo::Summary> {
    let discs = repository_discs(plan);
    let (old_repo, old_cache) = match base {
        None => (opts.out.join("repo"), cache.kept.clone()),
        Some(b) => match &b.dir {
            Some(d) => (d.join("repo"), RepoCache::kept_beside(d)?),
            None => (PathBuf::new(), PathBuf::new()),
        },
    };
    let summary = repo::build(
        &repo::Options {
            discs,
            out: staging.join("repo"),
            suite: plan.repository.suite.clone(),
            components: plan.repository.components.clone(),
            architectures: plan.repository.architectures.clone(),
            allow_unlisted: false,
            disc_keyring: None,
            time: opts.time,
            progress: opts.progress,
            jobs: 0,
            // --no-dir keeps no pool: its cache (beside the tar) gives
            // only each package's control.
            previous: (old_repo.is_dir() && !opts.no_dir).then_some(old_repo),
            previous_cache: old_cache.is_file().then_some(old_cache),
            // A base is only read; the bundle at --out is ours to take over.
            adopt: base.is_none(),
            peek: opts.no_dir,
            only,
        },
        &opts.key,
    )?;
    fs::rename(staging.join("repo").join(repo::CACHE_FILE), &cache.fresh)
        .context("moving the repository cache out of the bundle")?;
    Ok(summary)
}

/// The repository's discs in the order its summary counts them: main,
/// devel, the update discs.
fn repository_discs(plan: &Plan) -> Vec<(String, PathBuf)> {
    let media = &plan.media;
    repo::source_discs(
        media
            .main
            .as_deref()
            .expect("checked by MediaCheck::Require"),
        media.devel.as_deref(),
        &media.updates,
    )
}

/// `--no-dir`: the tar from the staged files and, for the pool, straight
/// from the discs, each package checked against the signed manifest as it
/// is copied.
fn stream_tar(
    staging: &Path,
    outside: &BTreeMap<String, Outside>,
    discs: &[(String, PathBuf)],
    repository: &repo::Summary,
    opts: &BuildOptions,
) -> Result<()> {
    let media = discs
        .iter()
        .map(|(role, path)| Medium::open(path).with_context(|| format!("reading the {role} disc")))
        .collect::<Result<Vec<_>>>()?;
    let hashes: BTreeMap<&str, &str> = repository
        .pool_hashes
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    let mut entries = BTreeMap::new();
    for (rel, size) in list_tree(staging)? {
        entries.insert(rel.clone(), (size, tar::Source::File(staging.join(rel))));
    }
    for (rel, o) in outside {
        let Outside::OnDisc { disc, size } = o else {
            continue;
        };
        let pool_path = rel
            .strip_prefix("repo/")
            .expect("pool files are under repo/");
        let medium = &media[*disc];
        let file = medium
            .find(pool_path)
            .with_context(|| format!("{}: {pool_path} is gone from the disc", medium.label))?;
        let sha256 = hashes[pool_path];
        entries.insert(
            rel.clone(),
            (
                *size,
                tar::Source::Disc {
                    medium,
                    file,
                    sha256,
                    control: repository.pool_control.get(pool_path),
                    unchanged: repository.pool_unchanged.contains(pool_path)
                        && medium.image_identity().is_some()
                        && medium.image_identity() == repository.disc_images[*disc].as_deref(),
                },
            ),
        );
    }
    let tar = opts.tar.as_ref().expect("--no-dir requires --tar");
    tar::write_tar_entries(&entries, staging, tar, opts.time, opts.progress)
}

/// With `repository.subset = "closure"`: the pool files the roles need,
/// resolved over the discs' own indexes before any package is read; an
/// incomplete closure is refused unless `allow_incomplete`.
fn subset(
    opts: &BuildOptions,
    recipe: &Recipe,
    plan: &Plan,
) -> Result<Option<(std::collections::BTreeSet<String>, check::Installed)>> {
    if recipe.repository.subset == crate::build::recipe::Subset::All {
        return Ok(None);
    }
    let (paths, installed, report) = check::closure_paths(recipe, plan)?;
    if !report.ok && !opts.allow_incomplete {
        return Err(check::refuse(&report, &opts.recipe));
    }
    Ok(Some((paths, installed)))
}

/// The completeness check over the controls the repository build read;
/// an incomplete bundle is refused (the staging directory and the new
/// cache go when they drop) unless `allow_incomplete`.
/// `installed`: the base a closure subset was resolved against (it is
/// not in the subset); without one it is read as `airlock check` does.
fn check_completeness(
    opts: &BuildOptions,
    recipe: &Recipe,
    plan: &Plan,
    repository: &mut repo::Summary,
    installed: Option<check::Installed>,
) -> Result<check::Report> {
    let catalog = std::mem::take(&mut repository.catalog);
    let packages = check::catalog_packages(&catalog)?;
    let installed = match installed {
        Some(i) => i,
        None => check::installed_base(&catalog, &packages, check::read_base(plan)?.as_ref())?,
    };
    drop(catalog);
    let report = check::evaluate(recipe, plan, packages, &installed)?;
    if !report.ok && !opts.allow_incomplete {
        return Err(check::refuse(&report, &opts.recipe));
    }
    Ok(report)
}

/// The vendor disc's files under `vendor/`, scripts executable.
fn copy_vendor_disc(plan: &Plan, staging: &Path) -> Result<()> {
    let path = plan
        .media
        .vendor
        .as_ref()
        .expect("checked by MediaCheck::Require");
    let vendor = Medium::open_any(path).context("reading the vendor disc")?;
    if vendor.find("install.sh").is_none() {
        bail!(
            "{}: no install.sh at the top of the vendor disc; is media.vendor the Space Dispatcher disc?",
            vendor.label
        );
    }
    let mut buf = vec![0u8; 1 << 20];
    for f in vendor.files() {
        let dest = staging.join("vendor").join(&f.path);
        fs::create_dir_all(dest.parent().expect("has a parent"))?;
        let mut out =
            fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        vendor.stream(f, &mut buf, |chunk| Ok(out.write_all(chunk)?))?;
        let mode = if f.path.ends_with(".sh") {
            0o755
        } else {
            0o644
        };
        crate::shared::writer::set_mode(&dest, mode)?;
    }
    Ok(())
}

/// The runner, the public keys, the resolved recipe and the site README.
fn write_fixed_files(
    w: &mut RootWriter,
    opts: &BuildOptions,
    recipe: &Recipe,
    plan: &Plan,
    runner: &[u8],
) -> Result<()> {
    w.write(crate::shared::manifest::RUNNER, runner, 0o755)?;
    w.write(sign::PUBLIC_GPG_FILE, &opts.key.public_binary()?, 0o644)?;
    w.write(
        sign::PUBLIC_ASC_FILE,
        opts.key.public_armored()?.as_bytes(),
        0o644,
    )?;
    w.write("recipe.toml", resolved_recipe(recipe)?.as_bytes(), 0o644)?;
    let readme = site_readme(plan, &opts.key.fingerprints());
    w.write("README.txt", readme.as_bytes(), 0o644)?;
    Ok(())
}

/// `sbom.cdx.json`: every package with the disc it came from, and both
/// programs with their crates.
fn write_sbom(
    w: &mut RootWriter,
    plan: &Plan,
    repository: &repo::Summary,
    runner: &[u8],
    time: i64,
) -> Result<()> {
    use sha2::Digest as _;
    let media = &plan.media;
    let main = media
        .main
        .as_deref()
        .expect("checked by MediaCheck::Require");
    let discs: Vec<(String, String)> =
        repo::source_discs(main, media.devel.as_deref(), &media.updates)
            .into_iter()
            .map(|(role, path)| {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                (role, name)
            })
            .collect();
    let runner_sha256 = crate::shared::hex(&sha2::Sha256::digest(runner));
    let text = crate::build::sbom::render(&crate::build::sbom::Inputs {
        cluster: &plan.cluster,
        discs: &discs,
        debs: &repository.debs,
        runner_sha256: &runner_sha256,
        time,
    })?;
    w.write(crate::build::sbom::SBOM_FILE, text.as_bytes(), 0o644)?;
    Ok(())
}

/// airlock's own source with its vendored crates, when given.
fn copy_source_tar(opts: &BuildOptions, staging: &Path) -> Result<()> {
    let Some(src) = &opts.source_tar else {
        return Ok(());
    };
    let dest = staging.join("source/airlock-src.tar");
    fs::create_dir_all(dest.parent().expect("has a parent"))?;
    fs::copy(src, &dest).with_context(|| {
        format!(
            "copying the source tarball {} (make it with `just vendor`)",
            src.display()
        )
    })?;
    crate::shared::writer::set_mode(&dest, 0o644)?;
    Ok(())
}

/// A bundle file that is not in the staging directory.
#[derive(Debug)]
enum Outside {
    /// A pool file the repository kept from the previous bundle at `--out`
    /// without linking it into the staged one: it joins at the commit.
    Adopted(PathBuf),
    /// With `--no-dir`: a package that goes from its disc (counted in
    /// [`repository_discs`]' order) straight into the tar.
    OnDisc { disc: usize, size: u64 },
}

/// The bundle's files that are not staged, by path in the bundle.
fn outside_files(
    staging: &Path,
    opts: &BuildOptions,
    repository: &repo::Summary,
) -> Result<BTreeMap<String, Outside>> {
    let mut outside = BTreeMap::new();
    for (p, &(disc, size)) in &repository.pool_origin {
        let rel = format!("repo/{p}");
        if opts.no_dir {
            outside.insert(rel, Outside::OnDisc { disc, size });
        } else if !staging.join(&rel).exists() {
            let path = opts.out.join(&rel);
            outside.insert(rel, Outside::Adopted(path));
        }
    }
    Ok(outside)
}

/// The staged files and the outside ones: (path in the bundle, size).
fn bundle_tree(staging: &Path, outside: &BTreeMap<String, Outside>) -> Result<Vec<(String, u64)>> {
    let mut tree = list_tree(staging)?;
    for (rel, o) in outside {
        let size = match o {
            Outside::OnDisc { size, .. } => *size,
            Outside::Adopted(path) => {
                let meta = fs::symlink_metadata(path)
                    .with_context(|| format!("the previous bundle's {}", path.display()))?;
                if !meta.is_file() {
                    bail!("{}: not a regular file", path.display());
                }
                meta.len()
            }
        };
        tree.push((rel.clone(), size));
    }
    tree.sort();
    Ok(tree)
}

/// The staged bundle in place of the one at `out`, taking over its pool
/// when files of it were adopted (see `takeover`).
fn commit(
    staging: Staging,
    out: &Path,
    repository: &repo::Summary,
    outside: &BTreeMap<String, Outside>,
) -> Result<Moved> {
    if outside.is_empty() {
        staging.replace(out)?;
        return Ok(Moved::Whole);
    }
    let wanted = repository
        .pool_hashes
        .iter()
        .map(|(p, _)| format!("repo/{p}"))
        .collect();
    crate::build::takeover::commit(staging, out, "repo/pool", wanted)?;
    Ok(Moved::FileByFile)
}

/// How [`commit`] put the new bundle in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// The staging directory renamed: its files are as they were.
    Whole,
    /// The old pool's files moved into it one by one.
    FileByFile,
}

/// MODES: every file's mode (of `tree`, the bundle's files), set exactly
/// to the policy. Returns MODES' size.
fn write_modes(
    w: &mut RootWriter,
    staging: &Path,
    outside: &BTreeMap<String, Outside>,
    tree: &[(String, u64)],
) -> Result<u64> {
    let mut modes = BTreeMap::new();
    for (p, _) in tree {
        let p = p.clone();
        if !safe_path(&p) {
            bail!(
                "{p:?}: a file name with a control character or an odd component; it would forge lines in SHA256SUMS (rename it on the disc it comes from)"
            );
        }
        let path = match outside.get(&p) {
            // Written into the tar as the policy says.
            Some(Outside::OnDisc { .. }) => {
                modes.insert(p, 0o644);
                continue;
            }
            Some(Outside::Adopted(path)) => path.clone(),
            None => staging.join(&p),
        };
        let have = fs::metadata(&path)?.permissions().mode() & 0o7777;
        let mode = policy_mode(have);
        if have != mode {
            crate::shared::writer::set_mode(&path, mode)?;
        }
        modes.insert(p, mode);
    }
    modes.insert(MODES.to_string(), 0o644);
    let text = render_modes(&modes);
    w.write(MODES, text.as_bytes(), 0o644)?;
    Ok(text.len() as u64)
}

/// SHA256SUMS and its signature. Pool files were hashed while the
/// repository was built; the rest is hashed here. Returns the number of
/// files in the bundle and the bytes the manifest covers. `tree`: the
/// bundle's files (path, size) but the manifest and its signature, sorted.
fn write_manifest(
    w: &mut RootWriter,
    staging: &Path,
    tree: &[(String, u64)],
    repository: &repo::Summary,
    opts: &BuildOptions,
) -> Result<(usize, u64)> {
    let known: BTreeMap<String, String> = repository
        .pool_hashes
        .iter()
        .map(|(p, h)| (format!("repo/{p}"), h.clone()))
        .collect();
    let todo: Vec<(PathBuf, u64)> = tree
        .iter()
        .filter(|(p, _)| !known.contains_key(p))
        .map(|(p, n)| (staging.join(p), *n))
        .collect();
    let mut hashed = hash_parallel(&todo, opts.progress, "hashing the bundle").into_iter();
    let mut sums = BTreeMap::new();
    for (p, _) in tree {
        let h = match known.get(p) {
            Some(h) => h.clone(),
            None => hashed.next().expect("one result per file")?.0,
        };
        sums.insert(p.clone(), h);
    }
    let sums_text = render_sums(&sums);
    w.write(SUMS, sums_text.as_bytes(), 0o644)?;
    let signature = opts.key.detached_armored(sums_text.as_bytes(), opts.time)?;
    w.write(SUMS_SIG, signature.as_bytes(), 0o644)?;
    let bytes = tree.iter().map(|(_, n)| n).sum();
    Ok((tree.len() + 2, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::keyring::{PUBLIC_ASC_FILE, PUBLIC_GPG_FILE};
    use crate::shared::tarform::TarWriter;

    /// A tar in the form with the head files only, `sums` as SHA256SUMS.
    fn head_only_tar(sums: &str) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 1_800_000_000);
        for (name, body) in [
            (SUMS, sums),
            (SUMS_SIG, "sig"),
            (PUBLIC_GPG_FILE, "key"),
            (PUBLIC_ASC_FILE, "key"),
            (MODES, ""),
        ] {
            w.file(name, 0o644, body.len() as u64, body.as_bytes())
                .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn a_manifest_that_leaves_out_a_head_file_is_refused_not_a_panic() {
        // Found while splitting read_bundle_tar: a manifest without MODES
        // made verify index past the end of its list of expected entries.
        let keyring = Trust::keyring(crate::build::demo::demo_key().unwrap().keyring());
        let sig_only = format!("{}  {SUMS_SIG}\n", "a".repeat(64));
        for sums in ["", sig_only.as_str()] {
            let r = verify_tar_stream(&head_only_tar(sums)[..], &keyring, "t.tar").unwrap();
            assert!(!r.ok, "{sums:?}: {r:?}");
        }
    }
}
