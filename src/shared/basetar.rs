//! A bundle tar (`airlock build --tar`, plain or gzip) as the base of a
//! delta, never extracted whole: its head (the manifest, signature, keys,
//! MODES, which a bundle tar starts with) is read first, then the files the
//! new bundle takes from it are copied out in one pass over the tar, read
//! as [`crate::shared::tarform`] reads it (anything outside the one form
//! is refused).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::shared::manifest::{HEAD, HEAD_LIMIT, SUMS};
use crate::shared::tarform::{Kind, open_file as open, read_leading};
use crate::shared::writer::{create_dirs, set_mode};

/// A bundle tar, its head read.
#[derive(Debug, Clone)]
pub struct TarBase {
    pub path: PathBuf,
    /// The head files it starts with (`SHA256SUMS` first, always).
    pub head: BTreeMap<String, Vec<u8>>,
}

impl TarBase {
    /// Reads the head of the bundle tar at `path`.
    pub fn read_head(path: &Path) -> Result<TarBase> {
        let label = path.display().to_string();
        let head = read_leading(&mut open(path)?, &HEAD, HEAD_LIMIT, &label)?;
        if !head.contains_key(SUMS) {
            bail!(
                "{label}: a bundle tar starts with {SUMS}; this one does not (give the bundle `airlock build --tar` wrote, or its directory)"
            );
        }
        Ok(TarBase {
            path: path.to_path_buf(),
            head,
        })
    }

    /// Copies the tar's files `wanted` names (its path → the paths under
    /// `to` it goes to, each with its mode) in one pass; returns the bytes
    /// each was. A wanted file the tar does not hold as a file is an error.
    pub fn extract(
        &self,
        wanted: &BTreeMap<String, Vec<(String, u32)>>,
        to: &Path,
    ) -> Result<BTreeMap<String, u64>> {
        let label = self.path.display().to_string();
        let mut tr = open(&self.path)?;
        let mut done = BTreeMap::new();
        let mut buf = vec![0u8; 1 << 20];
        while done.len() < wanted.len() {
            let Some(e) = tr
                .next_entry()
                .map_err(|e| anyhow::anyhow!("{label}: {e}"))?
            else {
                break;
            };
            let Some(dests) = wanted.get(&e.path).filter(|_| e.kind == Kind::File) else {
                continue;
            };
            let (first, mode) = &dests[0];
            let out = to.join(first);
            create_dirs(out.parent().expect("under the output"))?;
            let mut f =
                fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut n = 0u64;
            loop {
                let k = tr
                    .read_data(&mut buf)
                    .map_err(|err| anyhow::anyhow!("{label}: {}: {err}", e.path))?;
                if k == 0 {
                    break;
                }
                f.write_all(&buf[..k])
                    .with_context(|| format!("writing {}", out.display()))?;
                n += k as u64;
            }
            drop(f);
            set_mode(&out, *mode)?;
            for (other, mode) in &dests[1..] {
                let dest = to.join(other);
                create_dirs(dest.parent().expect("under the output"))?;
                fs::copy(&out, &dest)
                    .with_context(|| format!("copying {} to {}", out.display(), dest.display()))?;
                set_mode(&dest, *mode)?;
            }
            done.insert(e.path, n);
        }
        if let Some(missing) = wanted.keys().find(|p| !done.contains_key(*p)) {
            bail!(
                "{label}: its {SUMS} lists {missing}, but the tar holds no such file: the base tar is damaged; check it with `airlock verify {label}`"
            );
        }
        Ok(done)
    }
}
