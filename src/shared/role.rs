//! The role file, `/etc/airlock/role.toml`: what one host needs to know.
//!
//! The builder writes it into each seed and payload; `airlock-firstboot`
//! reads it on the VM. Its types are its own (not the plan's), so renaming
//! a field of the builder's plan cannot change the on-VM format; a change
//! here is a new `version`. `tests/fixtures/role-v1.toml` pins version 1.
//! It holds no secret: the DB password and private keys are separate 0600
//! files whose paths are in [`crate::shared::paths`].

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Version of the role file format.
pub const ROLE_FILE_VERSION: u32 = 1;

/// What a VM becomes (`host[].role` in the recipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// PostgreSQL primary; holds the VIP while healthy.
    DbMaster,
    /// PostgreSQL streaming standby of the master.
    DbReplica,
    /// The dispatcher that runs `docker swarm init`.
    Leader,
    /// A dispatcher that joins the leader's swarm as a manager.
    Manager,
}

impl Role {
    /// The spelling used in the recipe.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::DbMaster => "db-master",
            Role::DbReplica => "db-replica",
            Role::Leader => "leader",
            Role::Manager => "manager",
        }
    }

    /// Leader and managers run Space Dispatcher.
    pub fn is_dispatcher(self) -> bool {
        matches!(self, Role::Leader | Role::Manager)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `database.failover`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failover {
    /// The standby is promoted when it takes the VIP; a returning old master
    /// never takes it back (both peers `state BACKUP` + `nopreempt`).
    #[default]
    Promote,
    /// The article's behaviour: the VIP moves to a read-only standby
    /// (MASTER 255 / BACKUP 200), nothing is promoted.
    VipOnly,
}

/// `database.vrrp`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VrrpMode {
    /// VRRP adverts to 224.0.0.18 (keepalived's default).
    #[default]
    Multicast,
    /// Adverts sent straight to the peer, for networks that drop multicast.
    Unicast,
}

/// One PostgreSQL server (pair mode) or the only one (single mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseMode {
    /// Master + replica behind a keepalived virtual IP.
    Pair,
    /// One master, no replica, no VIP: dispatchers use the master's address.
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    Master,
    Backup,
}

impl fmt::Display for VrrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
        })
    }
}

/// Another host, by name and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// This host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    pub fqdn: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    /// The NIC, by name (used when `mac` is absent).
    pub interface: String,
    /// Lower case, colon separated.
    pub mac: Option<String>,
    /// Lower case.
    pub uuid: Option<String>,
    pub vrrp: Option<Vrrp>,
    pub postgres: Option<Postgres>,
    pub dispatcher: Option<Dispatcher>,
}

/// This host's keepalived instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub state: VrrpState,
    pub priority: u8,
    pub nopreempt: bool,
    pub virtual_router_id: u8,
    pub vip: Ipv4Addr,
    pub prefix: u8,
    pub interface: String,
    pub peer: Peer,
    pub unicast: bool,
    /// Promote the local standby when this host takes the VIP.
    pub promote: bool,
}

/// This host's PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    pub major: u32,
    pub port: u16,
    pub data_dir: String,
    /// The one DB user (vendor installer, dispatchers, replication).
    pub user: String,
    /// Set on the replica: whom it streams from.
    pub replicate_from: Option<Peer>,
    pub slot: Option<String>,
    /// Addresses allowed to replicate from this host (pg_hba).
    pub replication_peers: Vec<Ipv4Addr>,
}

/// This host's Space Dispatcher settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatcher {
    pub db_host: Ipv4Addr,
    pub db_port: u16,
    pub db_user: String,
    pub leader: Peer,
    /// For managers: where the swarm join token comes from.
    pub token_source: Option<String>,
}

/// Another host of the cluster, for `/etc/hosts` and messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub name: String,
    pub fqdn: String,
    pub ip: Ipv4Addr,
    pub role: Role,
}

/// The cluster's repository on the VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    pub suite: String,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// Where the signed repository is on each VM.
    pub root: String,
    /// The paths the vendor installer uses; each points at `root`.
    pub vendor_paths: Vec<String>,
    /// The keyring that makes apt trust the repository.
    pub trusted_keyring: String,
}

/// The cluster's database, as every host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub mode: DatabaseMode,
    /// The address and port the dispatchers connect to.
    pub endpoint: Ipv4Addr,
    pub port: u16,
    pub vip: Option<Ipv4Addr>,
    pub virtual_router_id: Option<u8>,
    pub postgresql: u32,
    pub user: String,
    pub failover: Failover,
    pub vrrp: VrrpMode,
    pub master: String,
    pub replica: Option<String>,
}

/// The swarm, as every host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swarm {
    pub leader: String,
    pub leader_ip: Ipv4Addr,
    pub managers: Vec<String>,
    pub port: u16,
    /// How managers obtain the join token (it cannot be preset).
    pub token_source: String,
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
    pub host: Host,
    /// Every host of the cluster.
    pub hosts: Vec<HostEntry>,
    pub repository: Repository,
    pub database: Database,
    pub swarm: Swarm,
    /// Where the vendor disc's files are on the VM (`install.sh` in it).
    pub vendor_dir: String,
}

impl RoleFile {
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

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = include_str!("../../tests/fixtures/role-v1.toml");

    #[test]
    fn version_1_reads_and_writes_back_byte_for_byte() {
        let rf = RoleFile::parse(V1, "role-v1.toml").unwrap();
        assert_eq!(rf.host.role, Role::DbReplica);
        assert_eq!(rf.database.failover, Failover::Promote);
        assert_eq!(rf.to_toml().unwrap(), V1);
    }

    #[test]
    fn another_version_or_an_unknown_key_is_refused() {
        let v2 = V1.replace("\nversion = 1\n", "\nversion = 2\n");
        let e = RoleFile::parse(&v2, "r.toml").unwrap_err().to_string();
        assert!(e.contains("role file version 2 is not 1"), "{e}");
        let extra = V1.replace("\nversion = 1\n", "\nversion = 1\ncolour = \"red\"\n");
        let e = format!("{:#}", RoleFile::parse(&extra, "r.toml").unwrap_err());
        assert!(e.contains("unknown field `colour`"), "{e}");
    }
}
