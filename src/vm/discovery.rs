//! Who is this VM? In order: the role file cloud-init wrote from the seed;
//! the `cidata` seed disc read directly (no mount) when cloud-init is absent;
//! this VM's entry in the bundle's inventory by a NIC's MAC or the SMBIOS
//! UUID (the inventory `prepare` left on the image, or `--bundle`). The
//! seed's or the inventory's files are put in place as cloud-init would.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::shared::paths;
use crate::shared::writer::{RootWriter, Writer};
use crate::vm::engine::under;
use crate::vm::prepare::ImageIdentity;

/// The NICs of this VM: (name, MAC in lower case), sorted by name.
pub fn interfaces(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(under(root, "/sys/class/net")) {
        for e in rd.flatten() {
            if let Ok(m) = fs::read_to_string(e.path().join("address")) {
                let m = m.trim().to_ascii_lowercase();
                if m.len() == 17 && m != "00:00:00:00:00:00" {
                    out.push((e.file_name().to_string_lossy().into_owned(), m));
                }
            }
        }
    }
    out.sort();
    out
}

/// Finds this VM's role file (see the module's documentation) and returns
/// its path; the files of a seed or inventory entry are in place after.
pub fn find_role(root: &Path, role_file: Option<&Path>, bundle: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = role_file {
        return Ok(p.to_path_buf());
    }
    let default = under(root, paths::ROLE_FILE);
    if default.is_file() {
        return Ok(default);
    }
    if let Some(seed) = find_seed(root) {
        eprintln!(
            "airlock-firstboot: no role file; reading the seed {} directly",
            seed.display()
        );
        apply_seed(root, &seed)?;
        if default.is_file() {
            return Ok(default);
        }
    }
    let (base, prepared) = match bundle {
        Some(b) => (b.to_path_buf(), false),
        None => (under(root, "/opt/airlock"), true),
    };
    let inventory = base.join("inventory.toml");
    if !inventory.is_file() {
        return Err(no_identity(root, &default, bundle));
    }
    if let Err(e) = from_inventory(root, &base, &inventory) {
        if prepared {
            record_reference_ids(root);
        }
        return Err(e);
    }
    if prepared {
        // Every clone got every host's payload; this one needs only its own,
        // now in place. The others' secrets go.
        let payloads = under(root, paths::PREPARED_PAYLOADS);
        fs::remove_dir_all(&payloads)
            .with_context(|| format!("removing {}", payloads.display()))?;
    }
    Ok(default)
}

/// No identity: a clear error.
fn no_identity(root: &Path, default: &Path, bundle: Option<&Path>) -> anyhow::Error {
    if bundle.is_none() {
        record_reference_ids(root);
    }
    anyhow::anyhow!(
        "no role file at {}, no cidata seed disc, and no inventory to find this VM in: boot the clone with its seed, or give it a MAC or SMBIOS UUID the bundle's inventory names (prepare copies the inventory to {}); `--bundle DIR` names another bundle",
        default.display(),
        paths::PREPARED_INVENTORY
    )
}

/// A prepared image with no identity is the reference VM, booted again
/// after `prepare`: its (new) ids are recorded, so clones made from it now
/// replace them too.
fn record_reference_ids(root: &Path) {
    if !under(root, paths::IMAGE_IDENTITY).is_file() {
        return;
    }
    let mut image = ImageIdentity::load(root);
    if image.merge(ImageIdentity::current(root)) && image.save(root).is_ok() {
        eprintln!(
            "airlock-firstboot: this looks like the prepared reference VM, booted again: recorded its machine id and SSH host keys so that its clones replace them"
        );
    }
}

/// This VM's entry in `inventory` (by MAC or SMBIOS UUID); its payload's
/// files are put in place, as cloud-init would have.
fn from_inventory(root: &Path, base: &Path, inventory: &Path) -> Result<()> {
    let inv = crate::shared::inventory::Inventory::parse(
        &fs::read_to_string(inventory)
            .with_context(|| format!("reading {}", inventory.display()))?,
    )
    .with_context(|| format!("reading {}", inventory.display()))?;
    let macs: Vec<String> = interfaces(root).into_iter().map(|(_, m)| m).collect();
    let uuid = fs::read_to_string(under(root, "/sys/class/dmi/id/product_uuid"))
        .map(|u| u.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let host = inv
        .hosts
        .iter()
        .find(|h| {
            h.mac.as_ref().is_some_and(|m| macs.contains(m))
                || h.uuid.as_ref().is_some_and(|u| !uuid.is_empty() && *u == uuid)
        })
        .with_context(|| {
            format!(
                "{} has no host with this VM's MAC ({}) or SMBIOS UUID ({}); add `mac` or `uuid` to the recipe's host, or boot with the seed",
                inventory.display(),
                if macs.is_empty() { "none found".to_string() } else { macs.join(", ") },
                if uuid.is_empty() { "unknown" } else { &uuid }
            )
        })?;
    eprintln!(
        "airlock-firstboot: this VM is {} ({}) by the inventory",
        host.name, host.role
    );
    let rootfs = base.join(&host.payload).join("rootfs");
    if !rootfs.is_dir() {
        bail!(
            "{} is missing: the payload of {} must be there",
            rootfs.display(),
            host.name
        );
    }
    let mut w = RootWriter::new(root);
    let mut role_file = None;
    for e in walkdir::WalkDir::new(&rootfs).sort_by_file_name() {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(&rootfs).expect("under rootfs");
        use std::os::unix::fs::PermissionsExt;
        let mode = e.metadata()?.permissions().mode() & 0o777;
        let bytes = fs::read(e.path())?;
        // The role file last: once it is there, the VM has its identity.
        if rel == Path::new(paths::ROLE_FILE.trim_start_matches('/')) {
            role_file = Some((bytes, mode));
            continue;
        }
        w.write(&rel.to_string_lossy(), &bytes, mode)?;
    }
    let (bytes, mode) =
        role_file.with_context(|| format!("{} has no {}", rootfs.display(), paths::ROLE_FILE))?;
    w.write(paths::ROLE_FILE.trim_start_matches('/'), &bytes, mode)?;
    Ok(())
}

/// The seed disc (label `cidata`): udev's by-label link, else the first
/// block device whose ISO 9660 volume id is `cidata`.
fn find_seed(root: &Path) -> Option<PathBuf> {
    let by_label = under(root, "/dev/disk/by-label/cidata");
    if by_label.exists() {
        return Some(by_label);
    }
    let blocks = fs::read_dir(under(root, "/sys/class/block")).ok()?;
    let mut names: Vec<String> = blocks
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| under(root, &format!("/dev/{n}")))
        .find(|dev| {
            use std::io::{Read, Seek, SeekFrom};
            let Ok(mut f) = fs::File::open(dev) else {
                return false;
            };
            let mut pvd = [0u8; 72];
            f.seek(SeekFrom::Start(16 * 2048)).is_ok()
                && f.read_exact(&mut pvd).is_ok()
                && &pvd[1..6] == b"CD001"
                && String::from_utf8_lossy(&pvd[40..72]).trim() == paths::SEED_LABEL
        })
}

/// Puts the files of the seed's payload tar in place (what cloud-init's
/// write_files would have done), reading the ISO directly: no mount.
fn apply_seed(root: &Path, seed: &Path) -> Result<()> {
    let file =
        fs::File::open(seed).with_context(|| format!("opening the seed {}", seed.display()))?;
    let len = file
        .metadata()
        .ok()
        .map(|m| m.len())
        .filter(|l| *l > 0)
        .unwrap_or(u64::MAX);
    let medium_files = crate::shared::iso::list_files(&file, len)
        .with_context(|| format!("reading the seed {}", seed.display()))?;
    let entry = medium_files
        .iter()
        .find(|f| f.path == paths::SEED_PAYLOAD_TAR)
        .with_context(|| {
            format!(
                "the seed {} has no {}: it was made by an older airlock; attach the seed of this bundle",
                seed.display(),
                paths::SEED_PAYLOAD_TAR
            )
        })?;
    let mut bytes = Vec::with_capacity(entry.size.min(64 << 20) as usize);
    if let crate::shared::iso::Location::Extents(ext) = &entry.location {
        use std::os::unix::fs::FileExt;
        for &(off, n) in ext {
            let start = bytes.len();
            bytes.resize(start + n as usize, 0);
            file.read_exact_at(&mut bytes[start..], off)
                .with_context(|| format!("reading the seed {}", seed.display()))?;
        }
    }
    let mut w = RootWriter::new(root);
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut role_file = None;
    for e in archive.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        let mode = e.header().mode()? & 0o777;
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut content)?;
        if path == paths::ROLE_FILE.trim_start_matches('/') {
            role_file = Some((content, mode));
            continue;
        }
        // check_rel refuses absolute paths and '..'.
        w.write(&path, &content, mode)
            .with_context(|| format!("putting {path} from the seed in place"))?;
    }
    if let Some((content, mode)) = role_file {
        w.write(paths::ROLE_FILE.trim_start_matches('/'), &content, mode)?;
    }
    Ok(())
}
