//! The role file, `/etc/airlock/role.toml`: one host's slice of the plan.
//!
//! The builder writes it into each seed; `airlock-firstboot` reads it on the
//! VM. Both use these types, so they cannot disagree on its shape. It holds
//! no secret: the DB password and private keys are separate 0600 files whose
//! paths are given here.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::plan::{DatabasePlan, HostPlan, Plan, RepositoryPlan, SwarmPlan};
use crate::recipe::Role;

/// Version of the role file format.
pub const ROLE_FILE_VERSION: u32 = 1;

/// Where things are on a VM.
pub mod paths {
    /// The role file.
    pub const ROLE_FILE: &str = "/etc/airlock/role.toml";
    /// The DB password, one line, 0600 (db hosts and the leader).
    pub const DB_PASSWORD: &str = "/etc/airlock/db-password";
    /// keepalived.conf as rendered; the runner installs it into /etc/keepalived.
    pub const KEEPALIVED_CONF: &str = "/etc/airlock/keepalived.conf";
    /// keepalived's scripts (root-owned directory, for enable_script_security).
    pub const KEEPALIVED_SCRIPTS: &str = "/etc/airlock/keepalived";
    /// The replication lines to add to pg_hba.conf.
    pub const PG_HBA_LINES: &str = "/etc/airlock/pg_hba.airlock";
    /// apt sources for the local repository (with signed-by).
    pub const APT_SOURCES: &str = "/etc/apt/sources.list.d/airlock.list";
    /// The runner's journal of steps.
    pub const JOURNAL: &str = "/var/lib/airlock/journal";
    /// The swarm join token, root only (leader).
    pub const TOKEN_FILE: &str = "/var/lib/airlock/swarm-manager-token";
    /// authorized_keys of the token user on the leader.
    pub const TOKEN_AUTHORIZED_KEYS: &str = "/etc/airlock/ssh/token_authorized_keys";
    /// The managers' client key for fetching the token (0600).
    pub const TOKEN_CLIENT_KEY: &str = "/etc/airlock/ssh/token_client_key";
    /// The leader's host key, pinned on managers.
    pub const LEADER_KNOWN_HOSTS: &str = "/etc/airlock/ssh/leader_known_hosts";
    /// The runner binary on the VM.
    pub const RUNNER: &str = "/usr/local/sbin/airlock-firstboot";
    /// Its systemd unit.
    pub const UNIT: &str = "/etc/systemd/system/airlock-firstboot.service";
    /// The unit's link that starts it at every boot.
    pub const UNIT_WANTS: &str =
        "/etc/systemd/system/multi-user.target.wants/airlock-firstboot.service";
    /// apt settings for the cluster's repository (a VM clock behind the build).
    pub const APT_CONF: &str = "/etc/apt/apt.conf.d/50airlock";
    /// The static address, written by the runner when cloud-init did not
    /// configure this instance (Astra SE 1.7 uses ifupdown).
    pub const IFUPDOWN_FILE: &str = "/etc/network/interfaces.d/airlock";
    /// The instance id cloud-init applied last.
    pub const CLOUD_INSTANCE_ID: &str = "/var/lib/cloud/data/instance-id";
    /// The prepared image's own identity (machine ids, SSH host keys), which
    /// no clone may keep.
    pub const IMAGE_IDENTITY: &str = "/var/lib/airlock/image-identity.json";
    /// The bundle's inventory and payloads on a prepared image, for clones
    /// that boot without a seed.
    pub const PREPARED_INVENTORY: &str = "/opt/airlock/inventory.toml";
    pub const PREPARED_PAYLOADS: &str = "/opt/airlock/payloads";
    /// PostgreSQL's start guard, a drop-in for every cluster's unit.
    pub const PG_GUARD_DROPIN: &str =
        "/etc/systemd/system/postgresql@.service.d/airlock-guard.conf";
    /// Written by the start guard: this server was kept read-only because its
    /// peer is the primary.
    pub const FENCED: &str = "/var/lib/airlock/fenced.json";
    /// 1 while the local PostgreSQL is down, 0 while it runs: written by
    /// its unit (the drop-in), watched by keepalived (inotify), so the VIP
    /// leaves a dead server at once instead of after a health check.
    pub const PG_DOWN: &str = "/var/lib/airlock/postgresql-down";
    /// Written by keepalived's notify script when it promoted this server.
    pub const PROMOTED: &str = "/var/lib/airlock/promoted";
}

/// Another host of the cluster, for `/etc/hosts` and messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub fqdn: String,
    pub ip: Ipv4Addr,
    pub role: Role,
}

/// `/etc/airlock/role.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    pub version: u32,
    pub cluster: String,
    pub domain: String,
    /// An id that changes whenever anything this host uses changes.
    pub instance_id: String,
    /// This host.
    pub host: HostPlan,
    /// Every host of the cluster.
    pub hosts: Vec<HostEntry>,
    pub repository: RepositoryPlan,
    pub database: DatabasePlan,
    pub swarm: SwarmPlan,
    /// Where the vendor disc's files are on the VM (`install.sh` in it).
    pub vendor_dir: String,
}

impl RoleFile {
    /// This host's role file, from the plan.
    pub fn new(plan: &Plan, host: &HostPlan, instance_id: String) -> RoleFile {
        let mut database = plan.database.clone();
        // The recipe's path means nothing on the VM.
        database.password_file = None;
        RoleFile {
            version: ROLE_FILE_VERSION,
            cluster: plan.cluster.clone(),
            domain: plan.domain.clone(),
            instance_id,
            host: host.clone(),
            hosts: plan
                .hosts
                .iter()
                .map(|h| HostEntry {
                    name: h.name.clone(),
                    fqdn: h.fqdn.clone(),
                    ip: h.ip,
                    role: h.role,
                })
                .collect(),
            repository: plan.repository.clone(),
            database,
            swarm: plan.swarm.clone(),
            vendor_dir: crate::plan::VENDOR_DIR.to_string(),
        }
    }

    /// As TOML text.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self).context("writing the role file")?;
        Ok(format!(
            "# airlock role file for {} ({}) of cluster {}. Written by `airlock bake`;\n# read by airlock-firstboot. Do not edit: rebuild the bundle instead.\n{body}",
            self.host.name, self.host.role, self.cluster
        ))
    }

    /// Parses a role file's text.
    pub fn parse(text: &str, origin: &str) -> Result<RoleFile> {
        let rf: RoleFile =
            toml::from_str(text).with_context(|| format!("reading the role file {origin}"))?;
        if rf.version != ROLE_FILE_VERSION {
            bail!(
                "{origin}: role file version {} is not {ROLE_FILE_VERSION}; use the airlock-firstboot from the same bundle",
                rf.version
            );
        }
        Ok(rf)
    }

    /// Reads a role file from disk.
    pub fn load(path: &Path) -> Result<RoleFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the role file {}", path.display()))?;
        RoleFile::parse(&text, &path.display().to_string())
    }
}
