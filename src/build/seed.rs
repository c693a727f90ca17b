//! `airlock bake`: every host's payload directory and NoCloud seed image
//! (volume label `cidata`), plus `inventory.toml` mapping hosts to MACs,
//! SMBIOS UUIDs and seeds.

use anyhow::Result;

use crate::build::cloudinit::Payload;
use crate::build::plan::Plan;
use crate::shared::writer::Writer;

pub use crate::shared::inventory::{Inventory, InventoryHost};
pub use crate::shared::paths::{SEED_LABEL, SEED_PAYLOAD_TAR};

/// The inventory of a bake: each payload's host, addresses and files.
pub fn inventory(plan: &Plan, payloads: &[Payload]) -> Inventory {
    Inventory {
        cluster: plan.cluster.clone(),
        hosts: payloads
            .iter()
            .map(|p| InventoryHost {
                name: p.host.clone(),
                role: p.role.host.role,
                ip: p.role.host.ip,
                mac: p.role.host.mac.clone(),
                uuid: p.role.host.uuid.clone(),
                instance_id: p.role.instance_id.clone(),
                seed: format!("seeds/{}.iso", p.host),
                payload: format!("payloads/{}", p.host),
            })
            .collect(),
    }
}

/// The payload's files as a deterministic tar (paths relative to /).
pub fn payload_tar(p: &Payload, epoch: i64) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut files: Vec<&crate::build::cloudinit::VmFile> = p.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(f.mode);
        h.set_mtime(epoch.max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(f.content.len() as u64);
        b.append_data(&mut h, f.path.trim_start_matches('/'), f.content.as_bytes())?;
    }
    Ok(b.into_inner()?)
}

/// The seed image of one host.
pub fn seed_image(p: &Payload, epoch: i64) -> Result<Vec<u8>> {
    let tar = payload_tar(p, epoch)?;
    crate::build::isowrite::write_image(
        SEED_LABEL,
        &[
            ("user-data", p.user_data.as_bytes()),
            ("meta-data", p.meta_data.as_bytes()),
            ("network-config", p.network_config.as_bytes()),
            (SEED_PAYLOAD_TAR, &tar),
        ],
        epoch,
    )
}

/// Writes `payloads/<host>/…`, `seeds/<host>.iso` and `inventory.toml`.
/// Files holding secrets (and the seeds, which carry them) are 0600.
pub fn write_all(w: &mut dyn Writer, plan: &Plan, payloads: &[Payload], epoch: i64) -> Result<()> {
    for p in payloads {
        let dir = format!("payloads/{}", p.host);
        w.write(&format!("{dir}/user-data"), p.user_data.as_bytes(), 0o600)?;
        w.write(&format!("{dir}/meta-data"), p.meta_data.as_bytes(), 0o644)?;
        w.write(
            &format!("{dir}/network-config"),
            p.network_config.as_bytes(),
            0o644,
        )?;
        for f in &p.files {
            let rel = format!("{dir}/rootfs{}", f.path);
            w.write(&rel, f.content.as_bytes(), f.mode)?;
        }
        w.write(
            &format!("seeds/{}.iso", p.host),
            &seed_image(p, epoch)?,
            0o600,
        )?;
    }
    w.write(
        "inventory.toml",
        inventory(plan, payloads).to_toml()?.as_bytes(),
        0o644,
    )?;
    Ok(())
}
