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
