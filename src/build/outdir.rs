//! What `--out` may be: a build replaces its output directory whole, so an
//! existing one must be an earlier output of the same kind, and it must not
//! hold (or be) anything the build reads. Otherwise the signing key, the
//! secrets or the discs would be deleted by a typo.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// What kind of output a directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `airlock repo build`: `dists/`, `pool/` and its cache.
    Repository,
    /// `airlock build`: a bundle with its signed manifest.
    Bundle,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Repository => "repository",
            Kind::Bundle => "bundle",
        }
    }

    /// `dir` looks like an earlier output of this kind.
    fn recognises(self, dir: &Path) -> bool {
        match self {
            Kind::Repository => {
                dir.join(crate::build::repo::CACHE_FILE).is_file()
                    || (dir.join("dists").is_dir() && dir.join("pool").is_dir())
            }
            Kind::Bundle => {
                (dir.join(crate::build::bundle::SUMS).is_file()
                    && dir.join(crate::build::bundle::SUMS_SIG).is_file())
                    || crate::shared::volumes::volume_dirs(dir).is_some()
            }
        }
    }
}

/// `p` made absolute and resolved as far as it exists (the rest appended),
/// so a path that does not exist yet can be compared too.
fn resolved(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
}

/// Refuses an `--out` that would lose something: an existing directory that
/// is not an earlier output of `kind` (empty is fine), or one that is, holds
/// or lies inside an input. `inputs` are what the build reads (discs, key,
/// recipe, secrets…), `also` are other outputs that must not be inside it
/// (`--tar`).
pub fn check(
    out: &Path,
    kind: Kind,
    inputs: &[(&str, &Path)],
    also: &[(&str, &Path)],
) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {}: exists and is not a directory", out.display());
        }
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !kind.recognises(out) {
            bail!(
                "--out {}: the directory exists and is not an earlier airlock {}; a build replaces its output whole, so it would be deleted. Choose a new directory, or move this one away yourself",
                out.display(),
                kind.name()
            );
        }
    }
    let o = resolved(out);
    for (what, input) in inputs {
        let i = resolved(input);
        if i == o || i.starts_with(&o) {
            bail!(
                "--out {}: it holds the {what} {} that the build reads; the build would replace it. Choose another output directory",
                out.display(),
                input.display()
            );
        }
        if o.starts_with(&i) {
            bail!(
                "--out {}: it lies inside the {what} {}, which the build reads; choose an output outside it",
                out.display(),
                input.display()
            );
        }
    }
    for (what, other) in also {
        if resolved(other).starts_with(&o) {
            bail!(
                "{what} {} is inside --out {}, which the build replaces; put it beside the directory",
                other.display(),
                out.display()
            );
        }
    }
    Ok(())
}

/// Refuses an output file (`flag`, such as `--tar` with `--no-dir`) that
/// is, or lies inside, an input the build reads.
pub fn check_file(file: &Path, flag: &str, inputs: &[(&str, &Path)]) -> Result<()> {
    if file.is_dir() {
        bail!(
            "{flag} {}: is a directory; name the tar file to write",
            file.display()
        );
    }
    let f = resolved(file);
    for (what, input) in inputs {
        let i = resolved(input);
        if f == i || f.starts_with(&i) {
            bail!(
                "{flag} {}: it is, or lies inside, the {what} {} that the build reads; write the tar elsewhere",
                file.display(),
                input.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_that_would_lose_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("keys")).unwrap();
        std::fs::write(site.join("keys/signing-key.asc"), "k").unwrap();
        std::fs::write(site.join("recipe.toml"), "r").unwrap();
        let key = site.join("keys/signing-key.asc");
        let inputs = [("signing key", key.as_path())];
        // The site directory itself: not a bundle, and it holds the key.
        let e = check(&site, Kind::Bundle, &inputs, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an earlier airlock bundle"), "{e}");
        // A new directory inside a disc directory.
        let disc = dir.path().join("main");
        std::fs::create_dir_all(disc.join("pool")).unwrap();
        let e = check(
            &disc.join("repo"),
            Kind::Repository,
            &[("main disc", disc.as_path())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("inside the main disc"), "{e}");
        // --tar inside --out.
        let out = dir.path().join("bundle");
        let tar = out.join("b.tar");
        let e = check(&out, Kind::Bundle, &[], &[("--tar", tar.as_path())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is inside --out"), "{e}");
        // A fresh directory beside: fine; an earlier bundle: fine.
        check(&out, Kind::Bundle, &inputs, &[]).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("SHA256SUMS"), "").unwrap();
        std::fs::write(out.join("SHA256SUMS.gpg"), "").unwrap();
        check(&out, Kind::Bundle, &inputs, &[]).unwrap();
    }
}
