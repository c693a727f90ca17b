//! The bundle a prepared VM keeps, and `airlock-firstboot update`, which
//! moves it on with a delta.
//!
//! ```text
//! /opt/airlock/bundles/<sha256 of its SHA256SUMS>/   repo/, vendor/, SHA256SUMS(.gpg), MODES, key
//! /opt/airlock/current -> bundles/<sha256>           the one switch
//! /opt/airlock/repo    -> current/repo               (apt's source, /opt/main, /opt/devel)
//! /opt/airlock/vendor  -> current/vendor
//! ```
//!
//! `prepare` puts the first bundle there. `update` makes the next one
//! beside it from a delta and the kept one (whose files it keeps are hard
//! links, so an update needs room for what the delta carries), verifies it against the new
//! signed manifest with the key the VM already trusts, makes its files
//! durable, and only then renames the `current` link: a power cut leaves
//! `current` on the old bundle, whole, or on the new one, whole. What the
//! old bundle held is removed after the switch (or by the next update).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::shared::delta;
use crate::shared::keyring::{Keyring, PUBLIC_GPG_FILE, Signatures};
use crate::shared::manifest::{MODES, RUNNER, SUMS, SUMS_SIG, Trust, parse_manifest};
use crate::shared::paths;
use crate::shared::staging::Staging;
use crate::shared::volumes::sha256;
use crate::shared::writer::{RootWriter, Writer, create_dirs};
use crate::vm::engine::under;
use crate::vm::prepare::{Modes, copy_tree, relative_target, replace_with_symlink};

/// What a VM keeps of a bundle besides its manifest and signature: the
/// repository, the vendor disc, the modes, the archive key and the
/// runner. Payloads and seeds hold every host's secrets: clones do not
/// keep them.
pub const KEPT: [&str; 5] = ["repo/", "vendor/", MODES, PUBLIC_GPG_FILE, RUNNER];

/// The links into the current bundle, and what they point at.
const LINKS: [(&str, &str); 2] = [(paths::REPO_ROOT, "repo"), (paths::VENDOR_DIR, "vendor")];

/// The bundle a VM keeps.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The sha256 of its `SHA256SUMS` (the directory's name).
    pub hash: String,
    pub dir: PathBuf,
}

/// The directory of the kept bundle whose manifest hashes to `hash`.
fn bundle_dir(root: &Path, hash: &str) -> PathBuf {
    under(root, paths::BUNDLES).join(hash)
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The bundle `current` points at; None when there is no `current` link
/// (a VM prepared by an older runner, or not prepared). A link to
/// something else, or a manifest that does not hash to its name, is an
/// error naming it.
pub fn current(root: &Path) -> Result<Option<Kept>> {
    let link = under(root, paths::CURRENT_BUNDLE);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "reading the link {}: it should point at bundles/<sha256>",
                    paths::CURRENT_BUNDLE
                )
            });
        }
    };
    let hash = target
        .strip_prefix("bundles")
        .ok()
        .and_then(|h| h.to_str())
        .filter(|h| is_hash(h))
        .with_context(|| {
            format!(
                "{} points at {}, not at bundles/<sha256>: it was changed by hand; prepare the VM again",
                paths::CURRENT_BUNDLE,
                target.display()
            )
        })?
        .to_string();
    let dir = bundle_dir(root, &hash);
    let sums = fs::read(dir.join(SUMS))
        .with_context(|| format!("reading the kept bundle's manifest in {}", dir.display()))?;
    if sha256(&sums) != hash {
        bail!(
            "{}: its sha256 is {}, not the {hash} its directory is named by: the kept bundle was changed; prepare the VM again",
            dir.join(SUMS).display(),
            sha256(&sums)
        );
    }
    Ok(Some(Kept { hash, dir }))
}

/// `prepare`: keeps what a VM uses of the verified bundle `bundle` in
/// `/opt/airlock/bundles/<sha256>`, makes it current and links the
/// repository and vendor paths into it.
pub fn keep_bundle(root: &Path, bundle: &Path) -> Result<Vec<String>> {
    let sums = fs::read(bundle.join(SUMS))
        .with_context(|| format!("reading {}", bundle.join(SUMS).display()))?;
    let hash = sha256(&sums);
    let dir = bundle_dir(root, &hash);
    create_dirs(&under(root, paths::BUNDLES))?;
    let stage = Staging::beside(&dir)?;
    readable(stage.path())?;
    let repo = copy_tree(
        &bundle.join("repo"),
        &stage.path().join("repo"),
        Modes::Public,
    )?;
    let vendor = copy_tree(
        &bundle.join("vendor"),
        &stage.path().join("vendor"),
        Modes::Public,
    )?;
    let mut w = RootWriter::new(stage.path());
    for name in [SUMS, SUMS_SIG, MODES, PUBLIC_GPG_FILE, RUNNER] {
        let from = bundle.join(name);
        if from.is_file() {
            let bytes = fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            let mode = if name == RUNNER { 0o755 } else { 0o644 };
            w.write(name, &bytes, mode)?;
        }
    }
    sync_tree(stage.path())?;
    stage.replace(&dir)?;
    // The kept bundle's rename reaches the disk before `current` names it.
    sync_dir(&under(root, paths::BUNDLES))?;
    switch_to(root, &hash)?;
    let mut done = vec![
        format!(
            "copied the signed repository to {} ({repo} files)",
            paths::REPO_ROOT
        ),
        format!(
            "copied the vendor disc to {} ({vendor} files)",
            paths::VENDOR_DIR
        ),
    ];
    done.extend(link_paths(root)?);
    remove_others(root, &hash)?;
    done.push(format!(
        "kept them with the bundle's signed manifest in {}/{hash} ({} points there; `airlock-firstboot update` moves it on with a delta)",
        paths::BUNDLES,
        paths::CURRENT_BUNDLE
    ));
    Ok(done)
}

/// Points `current` at the kept bundle `hash`: one rename of a link.
fn switch_to(root: &Path, hash: &str) -> Result<()> {
    let link = under(root, paths::CURRENT_BUNDLE);
    let want = relative_target(paths::CURRENT_BUNDLE, &format!("{}/{hash}", paths::BUNDLES));
    replace_with_symlink(&link, &want)
        .with_context(|| format!("pointing {} at {}", paths::CURRENT_BUNDLE, want.display()))?;
    sync_dir(link.parent().expect("an absolute path has a parent"))
}

/// Links the repository and vendor paths into `current`. A directory
/// there (a VM prepared by an older runner) is moved aside, replaced by
/// the link and removed.
fn link_paths(root: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (path, part) in LINKS {
        let link = under(root, path);
        let want = relative_target(path, &format!("{}/{part}", paths::CURRENT_BUNDLE));
        if fs::read_link(&link).is_ok_and(|t| t == want) {
            continue;
        }
        let is_dir = fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir());
        let aside = link.with_file_name(format!(".{part}.airlock-old-{}", std::process::id()));
        if is_dir {
            fs::rename(&link, &aside)
                .with_context(|| format!("moving the old copy {path} aside"))?;
        }
        replace_with_symlink(&link, &want)
            .with_context(|| format!("linking {path} to {}", want.display()))?;
        if is_dir {
            fs::remove_dir_all(&aside)
                .with_context(|| format!("removing the old copy {}", aside.display()))?;
        }
        done.push(format!("linked {path} -> {}", want.display()));
    }
    Ok(done)
}

/// Removes everything in `bundles/` but the bundle `keep`: the old
/// bundle after a switch, and what an interrupted run left. Returns how
/// many entries went.
fn remove_others(root: &Path, keep: &str) -> Result<usize> {
    let dir = under(root, paths::BUNDLES);
    let mut n = 0;
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_name() == keep {
            continue;
        }
        let p = e.path();
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
        n += 1;
    }
    Ok(n)
}

/// A kept bundle's top directory is 0755 whatever the umask: apt's `_apt`
/// user reads the repository in it.
fn readable(dir: &Path) -> Result<()> {
    crate::shared::writer::set_mode(dir, 0o755)
}

/// Every file and directory under `dir` on the disk, so that a rename
/// after it never exposes a file a power cut emptied.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .contents_first(true)
    {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        if e.file_type().is_file() || e.file_type().is_dir() {
            sync_path(e.path())?;
        }
    }
    Ok(())
}

fn sync_path(p: &Path) -> Result<()> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {} to the disk", p.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    sync_path(dir)
}

/// A package of the repository: `repo/pool/…/NAME_VERSION_ARCH.deb`.
fn package_of(path: &str) -> Option<(String, String)> {
    let file = path.strip_prefix("repo/pool/")?.rsplit('/').next()?;
    let stem = file.strip_suffix(".deb")?;
    let mut parts = stem.splitn(3, '_');
    let (name, version, _arch) = (parts.next()?, parts.next()?, parts.next()?);
    Some((name.to_string(), version.replace("%3a", ":")))
}

/// What an update changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Changes {
    /// Package name → (versions gone, versions come).
    pub packages: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// Files of the kept part added, removed, with other contents.
    pub files_added: usize,
    pub files_removed: usize,
    pub files_changed: usize,
    /// Files of the bundle a VM does not keep that changed (the recipe,
    /// seeds, payloads): update does not apply them.
    pub elsewhere: Vec<String>,
}

impl Changes {
    /// Between the manifests `old` and `new`.
    pub fn between(old: &str, new: &str) -> Changes {
        let (old, _) = parse_manifest(old);
        let (new, _) = parse_manifest(new);
        let keep = Some(&KEPT[..]);
        let mut c = Changes::default();
        let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for p in paths {
            let (o, n) = (old.get(p), new.get(p));
            if o == n {
                continue;
            }
            if !delta::kept(p, keep) {
                c.elsewhere.push(p.clone());
                continue;
            }
            match (o, n) {
                (None, _) => c.files_added += 1,
                (_, None) => c.files_removed += 1,
                _ => c.files_changed += 1,
            }
            if o.is_none() != n.is_none()
                && let Some((name, version)) = package_of(p)
            {
                let entry = c.packages.entry(name).or_default();
                match o {
                    Some(_) => entry.0.push(version),
                    None => entry.1.push(version),
                }
            }
        }
        c
    }

    /// The files of [`Changes::elsewhere`] in short: a top-level file by
    /// its name, a directory as `payloads/ (50 files)`.
    pub fn elsewhere_short(&self) -> String {
        let mut by_top: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.elsewhere {
            let top = p.split_once('/').map_or(p.as_str(), |(t, _)| t);
            *by_top.entry(top).or_default() += 1;
        }
        by_top
            .into_iter()
            .map(|(top, n)| match self.elsewhere.iter().any(|p| p == top) {
                true => top.to_string(),
                false => format!("{top}/ ({n} file{})", if n == 1 { "" } else { "s" }),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line per package: `+ NAME VERSION`, `- NAME VERSION`, `NAME OLD -> NEW`.
    pub fn package_lines(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(
                |(name, (gone, come))| match (gone.is_empty(), come.is_empty()) {
                    (true, _) => format!("+ {name} {}", come.join(", ")),
                    (_, true) => format!("- {name} {}", gone.join(", ")),
                    _ => format!("{name} {} -> {}", gone.join(", "), come.join(", ")),
                },
            )
            .collect()
    }
}

/// What `update` did.
#[derive(Debug, Clone, Serialize)]
pub struct Updated {
    /// The sha256 of the manifest of the bundle the VM had, and has now.
    pub old: String,
    pub new: String,
    /// It already had the new bundle: nothing was changed.
    pub already: bool,
    pub changes: Changes,
    /// Files taken from the delta and from the kept bundle.
    pub from_delta: usize,
    pub from_kept: usize,
    /// The keys this VM trusts now (fingerprint and first user id), for
    /// apt and for the next update.
    pub trusted: Vec<String>,
    /// The new bundle's keyring replaced the one this VM trusted.
    pub trust_changed: bool,
    /// The new bundle's runner replaced the installed one.
    pub runner_replaced: bool,
    /// What went wrong after the switch that the update does not depend on
    /// (an old bundle left in `bundles/`, removed by the next update).
    pub warnings: Vec<String>,
}

/// `airlock-firstboot update --bundle DELTA`: see the module's text.
/// `given` is the delta's directory or its tar, unpacked first beside the
/// kept bundles (and removed after), or its volumes, put together there
/// ([`delta::open`]; `more` may add the missing ones).
pub fn update(
    root: &Path,
    given: &[PathBuf],
    progress: bool,
    more: &mut dyn FnMut(&mut crate::shared::volumes::Assembly) -> Result<()>,
) -> Result<Updated> {
    let Some(kept) = current(root)? else {
        bail!(
            "this VM keeps no bundle ({} is missing): it was prepared by an older airlock-firstboot or not at all; prepare a reference VM from the whole new bundle (`airlock apply` makes it at the site)",
            paths::CURRENT_BUNDLE
        );
    };
    // What a killed or cut-off run left beside the kept bundle (an unpacked
    // delta, a half-made bundle) goes first: this run needs its room.
    let mut warnings = cleanup_warnings(root, &kept.hash);
    // An update already made, or one for another bundle, is told before
    // anything is unpacked or another disc asked for.
    let named = named_by_head(root, &kept, given)?;
    if let Some((want, new)) = &named
        && let Some(done) = settled(root, &kept, &given[0], want, new, &mut warnings)?
    {
        return Ok(done);
    }
    let opened = open_delta(root, &kept, given, named.is_some(), progress, more)?;
    let (delta_dir, delta) = (opened.dir(), opened.name.as_path());
    // What the head said is what `apply` checks against the signed
    // manifest; volumes that named nothing are judged once put together.
    let (want, new) = match named {
        Some(n) => n,
        None => {
            let (want, new) = delta::base_and_new(delta_dir, delta)?;
            if let Some(done) = settled(root, &kept, delta, &want, &new, &mut warnings)? {
                return Ok(done);
            }
            (want, new)
        }
    };
    debug_assert_eq!(want, kept.hash, "settled refuses another base");
    let keyring = trusted_keyring(root)?;
    let out = bundle_dir(root, &new);
    let keep = keep_for(&kept.dir, delta_dir);
    let trust = Trust::keyring(keyring.clone());
    let applied = delta::apply_kept(&opened, &kept.dir, &out, &trust, &keep, progress)?;
    if !applied.ok {
        let signed = applied.signed.as_ref();
        return Err(match signed.and_then(|s| foreign_only(s, &keyring)) {
            Some(why) => {
                anyhow::Error::new(Refused(format!("the delta {} {why}", delta.display())))
            }
            None => refused(delta, &applied),
        });
    }
    readable(&out)?;
    sync_tree(&out)?;
    sync_dir(&under(root, paths::BUNDLES))?;
    let text = |d: &Path| fs::read_to_string(d.join(SUMS)).unwrap_or_default();
    let changes = Changes::between(&text(&kept.dir), &text(&out));
    let adopted = match adopt(root, &out) {
        Ok(a) => a,
        Err(e) => {
            let _ = fs::remove_dir_all(&out);
            return Err(e);
        }
    };
    // The adopted keyring and runner reach the disk before the switch:
    // after a cut, the switch must never survive them.
    let durable = [paths::TRUSTED_KEYRING, paths::RUNNER]
        .iter()
        .filter_map(|p| under(root, p).parent().map(Path::to_path_buf))
        .try_for_each(|dir| sync_dir(&dir));
    if let Err(e) = durable.and_then(|()| switch_to(root, &new)) {
        adopted.undo(root);
        return Err(e);
    }
    link_after_switch(root, &new)?;
    warnings.extend(cleanup_warnings(root, &new));
    Ok(Updated {
        old: kept.hash,
        new,
        already: false,
        changes,
        from_delta: applied.from_delta,
        from_kept: applied.from_base,
        trusted: adopted.trusted,
        trust_changed: adopted.trust_changed,
        runner_replaced: adopted.runner_replaced,
        warnings,
    })
}

/// The paths apt reads linked to `current`, once it names the bundle
/// `new`: failing, the update is not done, and saying so names the switch
/// that already happened.
fn link_after_switch(root: &Path, new: &str) -> Result<()> {
    link_paths(root).map(|_| ()).with_context(|| {
        format!(
            "{} names the new bundle {new}, but the paths apt reads could not be linked to it: run the same update again to finish",
            paths::CURRENT_BUNDLE
        )
    })
}

/// The old bundles removed; what could not be is a warning (the next
/// update removes it), not a failed update.
fn cleanup_warnings(root: &Path, keep: &str) -> Vec<String> {
    match remove_others(root, keep) {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!(
            "{e:#}: it stays in {} until the next update removes it",
            paths::BUNDLES
        )],
    }
}

/// What a delta (named `delta`) that applies to `want` and makes `new`
/// means for this VM's kept bundle: already made (the switch's leftovers
/// finished: `Some`), for another bundle (refused, naming both), or to be
/// applied (`None`).
fn settled(
    root: &Path,
    kept: &Kept,
    delta: &Path,
    want: &str,
    new: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Updated>> {
    if kept.hash == new {
        // Finishes what a run stopped after its switch left undone.
        link_after_switch(root, new)?;
        warnings.extend(cleanup_warnings(root, new));
        let trusted = trusted_keyring(root)
            .map(|k| key_names(&k))
            .unwrap_or_default();
        return Ok(Some(Updated {
            old: new.to_string(),
            new: new.to_string(),
            already: true,
            changes: Changes::default(),
            from_delta: 0,
            from_kept: 0,
            trusted,
            trust_changed: false,
            runner_replaced: false,
            warnings: std::mem::take(warnings),
        }));
    }
    if kept.hash != want {
        bail!(
            "{}; nothing was changed. Give the delta built against this VM's bundle (`airlock build --base` with that bundle), or apply the deltas in between first",
            delta::wrong_base(
                delta,
                want,
                &format!("this VM's bundle ({})", kept.dir.join(SUMS).display()),
                &kept.hash
            )
        );
    }
    Ok(None)
}

/// The base and the new bundle a delta names in its head (a tar's first
/// entries, a directory's files, the first volume), or None when its
/// volumes name none. A refusal needs no proof; "already at" from volumes
/// needs the first one to verify with the keys this VM trusts (a tar's or
/// directory's head is read as `apply` reads it: unchecked, it only ever
/// stops an update).
fn named_by_head(root: &Path, kept: &Kept, given: &[PathBuf]) -> Result<Option<(String, String)>> {
    Ok(match given {
        [one] if crate::shared::volumes::given_volumes(given)?.is_none() => {
            refuse_not_a_delta(one)?;
            Some(delta::base_and_new(one, one)?)
        }
        _ => delta::volumes_base_and_new(given)
            .filter(|(_, new)| *new != kept.hash || first_volume_vouches(root, given, new)),
    })
}

/// Whether the first of the volumes `given` verifies alone with the keys
/// this VM trusts and its signed table names `new` as the whole bundle
/// they make.
fn first_volume_vouches(root: &Path, given: &[PathBuf], new: &str) -> bool {
    let (Ok(Some(dirs)), Ok(keyring)) = (
        crate::shared::volumes::given_volumes(given),
        trusted_keyring(root),
    ) else {
        return false;
    };
    crate::shared::volumes::verify_volume(&dirs[0], &Trust::keyring(keyring), false)
        .is_ok_and(|v| v.report.ok && v.table.is_some_and(|t| t.whole == new))
}

/// Refuses what is not a delta (a whole bundle's tar, from its head, or
/// its directory), saying what to do instead.
fn refuse_not_a_delta(given: &Path) -> Result<()> {
    if delta::has_base(given)? {
        return Ok(());
    }
    bail!(
        "{}: not a delta (no {}): update takes the directory, tar or volumes `airlock build --base` wrote; a whole bundle is prepared on a new reference VM (`airlock-firstboot prepare`)",
        given.display(),
        delta::BASE
    )
}

/// The delta as given ([`delta::open`]). `named`: its head already named
/// this VM's bundle as its base (checked by [`settled`]); its volumes are
/// then checked as they come with the keys this VM trusts, others with
/// each volume's own keys and their base checked once the first is in (a
/// wrong base is named as such; a whole bundle's volumes are refused as
/// not a delta). A volume that does not verify is refused.
fn open_delta(
    root: &Path,
    kept: &Kept,
    given: &[PathBuf],
    named: bool,
    progress: bool,
    more: &mut dyn FnMut(&mut crate::shared::volumes::Assembly) -> Result<()>,
) -> Result<delta::Given> {
    let trusted = trusted_keyring(root)
        .ok()
        .map(Trust::keyring)
        .filter(|_| named);
    let opened = delta::open(
        given,
        &under(root, paths::BUNDLES).join("delta"),
        trusted.as_ref(),
        (!named).then_some(kept.dir.as_path()),
        progress,
        more,
    )
    .map_err(|e| match e.is::<crate::shared::volumes::Unverified>() {
        true => anyhow::Error::new(Refused(format!(
            "{e:#}; nothing was changed, {} still points at the bundle this VM had",
            paths::CURRENT_BUNDLE
        ))),
        false => e,
    })?;
    Ok(opened)
}

/// The keyring this VM trusts (apt's, and what `update` verifies with).
fn trusted_keyring(root: &Path) -> Result<Keyring> {
    let path = under(root, paths::TRUSTED_KEYRING);
    Keyring::load(&path)
        .with_context(|| format!("reading the archive key this VM trusts, {}", path.display()))
}

/// The keys of a keyring as the output names them: `FINGERPRINT "user id"`.
fn key_names(keyring: &Keyring) -> Vec<String> {
    keyring
        .keys()
        .into_iter()
        .map(|k| match k.user_id {
            Some(u) => format!("{} \"{u}\"", k.fingerprint),
            None => k.fingerprint,
        })
        .collect()
}

/// What this VM keeps of the new bundle: [`KEPT`], but the runner only
/// when the kept bundle has it or the delta carries it (a VM prepared
/// before bundles kept their runner has it in neither when it did not
/// change).
fn keep_for(kept_dir: &Path, delta_dir: &Path) -> Vec<&'static str> {
    let has_runner = kept_dir.join(RUNNER).is_file() || delta_dir.join(RUNNER).is_file();
    KEPT.into_iter()
        .filter(|p| *p != RUNNER || has_runner)
        .collect()
}

/// Why a delta whose manifest only keys this VM does not trust signed
/// (`signed`, as checked with the keys it trusts, `trusted`) is refused,
/// naming both; None when that is not why (a bad signature by a trusted
/// key, or a malformed one, is named by the delta's own check).
fn foreign_only(signed: &Signatures, trusted: &Keyring) -> Option<String> {
    if !signed.good.is_empty() || signed.unknown.is_empty() {
        return None;
    }
    Some(format!(
        "does not verify with the keys this VM trusts: SIGNATURE {SUMS_SIG}: signed by {} only, and this VM trusts {} ({}): no key it trusts signed it; nothing was changed. A new signing key reaches a VM through a bundle signed by the old key and the new one (`airlock build --key OLD --key NEW`): update to that bundle first",
        signed.unknown.join(", "),
        key_names(trusted).join(", "),
        paths::TRUSTED_KEYRING
    ))
}

/// What [`adopt`] put in place, and what was there before (to put back
/// when the switch fails).
struct Adopted {
    trusted: Vec<String>,
    trust_changed: bool,
    runner_replaced: bool,
    /// Each file replaced, its bytes before (None: it was not there) and mode.
    before: Vec<(&'static str, Option<Vec<u8>>, u32)>,
}

impl Adopted {
    /// Puts back what [`adopt`] replaced (best effort: the switch already failed).
    fn undo(&self, root: &Path) {
        let mut w = RootWriter::new(root);
        for (path, bytes, mode) in &self.before {
            let _ = match bytes {
                Some(b) => w.write(rel(path), b, *mode).map(|_| ()),
                None => fs::remove_file(under(root, path)).map_err(Into::into),
            };
        }
    }
}

/// Before the switch, with the new bundle `out` verified: its keyring
/// becomes the one this VM trusts (once it verifies the bundle's own
/// signed manifest and every InRelease of its repository, which apt
/// checks with it), and its runner replaces a different installed one.
/// Each written beside and renamed: a running runner keeps its old file.
/// The keys are trusted before the switch, so a cut after the switch never
/// leaves a bundle its trusted keys cannot read (update would then say
/// "already at" and not adopt them). A cut before it leaves the old bundle
/// with the new keyring, which still reads it when, as in a rollover, a
/// key signed both (`airlock build` ships exactly its signers' keys); the
/// same update run again completes.
fn adopt(root: &Path, out: &Path) -> Result<Adopted> {
    let keyring_bytes = fs::read(out.join(PUBLIC_GPG_FILE))
        .with_context(|| format!("reading {}", out.join(PUBLIC_GPG_FILE).display()))?;
    let keyring = own_keyring(out, &keyring_bytes)?;
    let runner = match out.join(RUNNER) {
        p if p.is_file() => Some(fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
        _ => None,
    };
    let mut adopted = Adopted {
        trusted: key_names(&keyring),
        trust_changed: false,
        runner_replaced: false,
        before: Vec::new(),
    };
    let mut w = RootWriter::new(root);
    let old = fs::read(under(root, paths::TRUSTED_KEYRING)).ok();
    adopted.before.push((paths::TRUSTED_KEYRING, old, 0o644));
    adopted.trust_changed = w.write(rel(paths::TRUSTED_KEYRING), &keyring_bytes, 0o644)?;
    if let Some(bin) = runner {
        let old = fs::read(under(root, paths::RUNNER)).ok();
        if old.as_deref() != Some(&bin[..]) {
            adopted.before.push((paths::RUNNER, old, 0o755));
            match w.write(rel(paths::RUNNER), &bin, 0o755) {
                Ok(_) => adopted.runner_replaced = true,
                Err(e) => {
                    adopted.undo(root);
                    return Err(e);
                }
            }
        }
    }
    Ok(adopted)
}

/// The new bundle's keyring, once it verifies the bundle's signed
/// manifest and every `repo/dists/*/InRelease`: trusting a keyring that
/// does not would leave apt, or the next update, unable to read what this
/// one installs. Refused otherwise.
fn own_keyring(out: &Path, bytes: &[u8]) -> Result<Keyring> {
    let label = format!("the new bundle's {PUBLIC_GPG_FILE}");
    let keyring = Keyring::from_bytes(bytes, &label)?;
    let mut signed = vec![(SUMS.to_string(), out.join(SUMS))];
    let dists = out.join("repo/dists");
    if let Ok(rd) = fs::read_dir(&dists) {
        for e in rd.flatten() {
            let p = e.path().join("InRelease");
            if p.is_file() {
                let name = format!("repo/dists/{}/InRelease", e.file_name().to_string_lossy());
                signed.push((name, p));
            }
        }
    }
    for (name, path) in signed {
        let read = || fs::read(&path).with_context(|| format!("reading {}", path.display()));
        let checked = match name.as_str() {
            SUMS => keyring
                .verify_detached(
                    &read()?,
                    &fs::read(out.join(SUMS_SIG))
                        .with_context(|| format!("reading {}", out.join(SUMS_SIG).display()))?,
                )
                .map(|_| ()),
            _ => keyring
                .verify_cleartext(&String::from_utf8_lossy(&read()?))
                .map(|_| ()),
        };
        if let Err(e) = checked {
            return Err(anyhow::Error::new(Refused(format!(
                "the new bundle's {PUBLIC_GPG_FILE} ({}) does not verify its own {name}: {e:#}; trusting it would leave apt or the next update unable to read this bundle, so nothing was changed ({} still points at the bundle this VM had). Rebuild the bundle with its keys (`airlock build --key …`)",
                key_names(&keyring).join(", "),
                paths::CURRENT_BUNDLE
            ))));
        }
    }
    Ok(keyring)
}

fn rel(p: &str) -> &str {
    p.trim_start_matches('/')
}

/// The delta did not make a bundle that verifies: every problem, up to a
/// few, and that nothing changed.
fn refused(delta_dir: &Path, applied: &delta::Applied) -> anyhow::Error {
    let first: Vec<String> = applied
        .problems
        .iter()
        .take(5)
        .map(|p| {
            format!(
                "{} {}: {}",
                p.kind.as_str().to_uppercase(),
                p.path,
                p.detail
            )
        })
        .collect();
    anyhow::Error::new(Refused(format!(
        "the delta {} does not make a bundle that verifies with the key this VM trusts ({} problem(s)): {}; nothing was changed, {} still points at the bundle this VM had",
        delta_dir.display(),
        applied.problems.len(),
        first.join("; "),
        paths::CURRENT_BUNDLE
    )))
}

/// The delta was refused (exit status 1, not 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_is_named_by_its_pool_file() {
        assert_eq!(
            package_of("repo/pool/main/a/airlock-demo-base/airlock-demo-base_1.1-1_amd64.deb"),
            Some(("airlock-demo-base".into(), "1.1-1".into()))
        );
        assert_eq!(
            package_of("repo/pool/main/l/libx/libx_1%3a2.0-1_amd64.deb"),
            Some(("libx".into(), "1:2.0-1".into()))
        );
        assert_eq!(package_of("repo/dists/1.7_x86-64/Release"), None);
        assert_eq!(package_of("vendor/pool/x_1_amd64.deb"), None);
    }

    #[test]
    fn the_runner_is_kept_when_the_kept_bundle_or_the_delta_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, delta) = (dir.path().join("kept"), dir.path().join("delta"));
        fs::create_dir_all(kept.join("bin")).unwrap();
        fs::create_dir_all(delta.join("bin")).unwrap();
        let without: Vec<&str> = KEPT.into_iter().filter(|p| *p != RUNNER).collect();
        assert_eq!(keep_for(&kept, &delta), without);
        fs::write(delta.join(RUNNER), "new").unwrap();
        assert_eq!(keep_for(&kept, &delta), KEPT);
        fs::remove_file(delta.join(RUNNER)).unwrap();
        fs::write(kept.join(RUNNER), "old").unwrap();
        assert_eq!(keep_for(&kept, &delta), KEPT);
    }

    #[test]
    fn changes_name_upgrades_additions_removals_and_what_update_leaves() {
        let h = |c: char| c.to_string().repeat(64);
        let old = format!(
            "{}  repo/pool/main/a/a_1.0-1_amd64.deb\n{}  repo/pool/main/d/d_1.0-1_all.deb\n{}  recipe.toml\n{}  repo/dists/s/Release\n",
            h('1'),
            h('2'),
            h('3'),
            h('4')
        );
        let new = format!(
            "{}  repo/pool/main/a/a_1.1-1_amd64.deb\n{}  repo/pool/main/e/e_1.0-1_amd64.deb\n{}  recipe.toml\n{}  repo/dists/s/Release\n",
            h('5'),
            h('6'),
            h('7'),
            h('8')
        );
        let c = Changes::between(&old, &new);
        assert_eq!(
            c.package_lines(),
            ["a 1.0-1 -> 1.1-1", "- d 1.0-1", "+ e 1.0-1"]
        );
        assert_eq!((c.files_added, c.files_removed, c.files_changed), (2, 2, 1));
        assert_eq!(c.elsewhere, ["recipe.toml"]);
        let c = Changes {
            elsewhere: vec![
                "payloads/a/x".into(),
                "payloads/b/y".into(),
                "recipe.toml".into(),
                "seeds/a.iso".into(),
            ],
            ..Changes::default()
        };
        assert_eq!(
            c.elsewhere_short(),
            "payloads/ (2 files), recipe.toml, seeds/ (1 file)"
        );
    }
}
