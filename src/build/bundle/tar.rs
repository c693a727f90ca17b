//! Writing a bundle as one tar in the form verify accepts, and the listing
//! files (`SHA256SUMS`, `MODES`) of a bundle directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::shared::manifest::{self, MODES, SUMS, SUMS_SIG, canonical_order};
use crate::shared::par::progress_bar;
use crate::shared::tarform;

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

/// `MODES` text: `<octal mode>  <path>` per file, sorted like SHA256SUMS.
pub fn render_modes(modes: &BTreeMap<String, u32>) -> String {
    let mut s = String::new();
    for (path, mode) in modes {
        let _ = writeln!(s, "{mode:04o}  {path}");
    }
    s
}

/// Writes the bundle directory as one tar in [`tarform`]'s form (entries in
/// [`canonical_order`], mtime `time`, modes from `MODES`), gzip compressed
/// (one member) when `file` ends in `.gz`. Written beside and renamed.
pub fn write_tar(dir: &Path, file: &Path, time: i64, progress: bool) -> Result<()> {
    let tree = list_tree(dir)?;
    let modes_text = fs::read_to_string(dir.join(MODES))
        .with_context(|| format!("reading {}", dir.join(MODES).display()))?;
    let mut problems = Vec::new();
    let modes = manifest::parse_modes(&modes_text, &mut problems);
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
