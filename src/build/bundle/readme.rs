//! README.txt: the site procedure for a bundle's recipe, step by step.

use std::fmt::Write as _;

use crate::build::plan::Plan;
use crate::shared::role::Role;

/// README.txt: the site procedure for this recipe.
pub fn site_readme(plan: &Plan, fingerprints: &[String]) -> String {
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
        "1. Check the bundle before you use it (stock tools only; run in this directory):\n\n    sha256sum -c --quiet SHA256SUMS && echo all files intact\n    gpgv --keyring ./archive-keyring.gpg SHA256SUMS.gpg SHA256SUMS\n\n   Or: airlock verify . --keyring /path/to/independently/delivered/archive-keyring.gpg\n   The keyring inside the bundle only proves the bundle is consistent; compare\n   {} with the one{} you were given separately:\n\n    {}\n",
        if fingerprints.len() == 1 {
            "its fingerprint"
        } else {
            "the fingerprints of its keys"
        },
        if fingerprints.len() == 1 { "" } else { "s" },
        fingerprints.join("\n    ")
    );
    if fingerprints.len() > 1 {
        let _ = writeln!(
            s,
            "   This bundle is signed by {} keys, and archive-keyring.gpg holds them all.\n   A site that trusts one of them checks it with that key alone:\n\n    airlock verify . --keyring /path/to/that/archive-keyring.gpg\n\n   (gpgv with one key's keyring prints \"Good signature\" for it, and exits 2\n   for the signatures it has no key for.) A two-person rule, every key:\n\n    airlock verify . --keyring K1.gpg --keyring K2.gpg --require-signers 2\n",
            fingerprints.len()
        );
    }
    let _ = writeln!(
        s,
        "2. Prepare the reference VM once (Astra Linux SE 1.7, 2 vCPU, 4 GiB, 30 GiB,\n   one virtio NIC), with this bundle mounted or copied at /media/airlock:\n\n    sudo /media/airlock/bin/airlock-firstboot prepare --bundle /media/airlock\n\n   It copies the repository to /opt/airlock/repo (also /opt/main and /opt/devel\n   for the vendor installer) and the inventory with every VM's payload to\n   /opt/airlock, trusts the archive key, installs the runner and its service\n   (it runs at every boot), and seals the VM for cloning: the image's machine\n   id and SSH host keys are recorded so that no clone keeps them. Then shut it\n   down and clone it {} times; do not boot it again before cloning (if you do,\n   the clones still replace its ids, but cloud-init sees it as an instance).\n",
        plan.hosts.len()
    );
    s.push_str(&merged_discs(plan));
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

/// The paragraph naming the discs the repository was merged from, in merge
/// order, by file name only (the build machine's paths mean nothing at the
/// site).
fn merged_discs(plan: &Plan) -> String {
    let discs: String = plan
        .media
        .sources()
        .into_iter()
        .filter_map(|(role, path)| {
            let name = path?.file_name()?.to_string_lossy().into_owned();
            Some(format!("    {role:<8} {name}\n"))
        })
        .collect();
    format!(
        "   The repository merges these discs, in this order (every version is kept;\n   apt installs the newest):\n\n{discs}\n"
    )
}
