//! The role file, `/etc/airlock/role.toml`: what one host needs to know.
//!
//! The builder writes it into each seed and payload; `airlock-firstboot`
//! reads it on the VM. Its types are its own (not the plan's), so renaming
//! a field of the builder's plan cannot change the on-VM format; a change
//! here is a new `version`. `tests/fixtures/role-v2.toml` pins version 2 and
//! `role-v1.toml` that version 1 still reads.
//! It holds no secret: the DB password and private keys are separate 0600
//! files whose paths are in [`crate::shared::paths`].

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Version of the role file format. Version 2 added `database.rejoin` and
/// `database.synchronous`; a version 1 file reads with their defaults.
pub const ROLE_FILE_VERSION: u32 = 2;

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

/// `database.rejoin`: what a former primary does when it finds its peer
/// promoted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rejoin {
    /// It stays read-only and says so; a person runs `airlock-firstboot
    /// rejoin` once they have decided its unreplicated writes may go.
    #[default]
    Manual,
    /// It re-joins by itself as a standby of the new primary (its old data
    /// directory is kept aside).
    Auto,
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
    /// What a former primary does when its peer was promoted (version 2).
    #[serde(default)]
    pub rejoin: Rejoin,
    /// Commits wait for the standby (version 2); the primary degrades to
    /// asynchronous while the standby is gone.
    #[serde(default)]
    pub synchronous: bool,
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
        if !(1..=ROLE_FILE_VERSION).contains(&rf.version) {
            bail!(
                "{origin}: role file version {} is newer than this runner reads (1 to {ROLE_FILE_VERSION}); use the airlock-firstboot from the same bundle",
                rf.version
            );
        }
        if rf.version == 1 && (rf.database.rejoin != Rejoin::Manual || rf.database.synchronous) {
            bail!(
                "{origin}: database.rejoin and database.synchronous need role file version 2; the file says version 1"
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
    const V2: &str = include_str!("../../tests/fixtures/role-v2.toml");

    #[test]
    fn version_2_reads_and_writes_back_byte_for_byte() {
        let rf = RoleFile::parse(V2, "role-v2.toml").unwrap();
        assert_eq!(rf.host.role, Role::DbReplica);
        assert_eq!(rf.database.failover, Failover::Promote);
        assert_eq!(rf.database.rejoin, Rejoin::Auto);
        assert!(rf.database.synchronous);
        assert_eq!(rf.to_toml().unwrap(), V2);
    }

    #[test]
    fn version_1_still_reads_with_the_version_2_defaults() {
        let rf = RoleFile::parse(V1, "role-v1.toml").unwrap();
        assert_eq!(rf.version, 1);
        assert_eq!(rf.database.rejoin, Rejoin::Manual);
        assert!(!rf.database.synchronous);
        let v2 = RoleFile::parse(V2, "role-v2.toml").unwrap();
        assert_eq!(rf.host, v2.host);
        assert_eq!(rf.hosts, v2.hosts);
        let bad = V2.replace("\nversion = 2\n", "\nversion = 1\n");
        let e = RoleFile::parse(&bad, "r.toml").unwrap_err().to_string();
        assert!(e.contains("need role file version 2"), "{e}");
    }

    #[test]
    fn a_newer_version_or_an_unknown_key_is_refused() {
        let v3 = V2.replace("\nversion = 2\n", "\nversion = 3\n");
        let e = RoleFile::parse(&v3, "r.toml").unwrap_err().to_string();
        assert!(e.contains("role file version 3 is newer"), "{e}");
        let extra = V2.replace("\nversion = 2\n", "\nversion = 2\ncolour = \"red\"\n");
        let e = format!("{:#}", RoleFile::parse(&extra, "r.toml").unwrap_err());
        assert!(e.contains("unknown field `colour`"), "{e}");
    }
}
