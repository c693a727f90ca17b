//! The resolved per-host plan: every value each host will use.
//!
//! The plan is the single source every later part renders from. The VRRP
//! router id, the replication user and the repository paths exist once here,
//! so the article's three inconsistencies (two router ids, a replication user
//! that differs from the one pg_basebackup uses, a missing `/opt/devel`)
//! cannot be expressed. Resolving never touches the disk except to report
//! media paths that do not exist.
//!
//! This file holds the plan's types and [`resolve`], which runs the checks
//! (`checks.rs`, one phase per recipe section) and, when none fails,
//! assembles the plan (`assembly.rs`); `table.rs` prints it for a person.

mod assembly;
mod checks;
mod table;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::build::recipe::{Location, Recipe, Source};
pub use crate::shared::role::{DatabaseMode, Failover, Rejoin, Role, VrrpMode, VrrpState};

pub use crate::shared::paths::{
    REPLICATION_SLOT, REPO_LABEL, REPO_ROOT, TOKEN_USER, TRUSTED_KEYRING, VENDOR_DIR,
    VENDOR_REPO_PATHS,
};
pub use checks::{interface_problem, label_problem, normalise_mac, normalise_uuid};

/// Docker Swarm's cluster management port.
pub const SWARM_PORT: u16 = 2377;
/// PostgreSQL majors airlock knows how to drive (Astra SE 1.7 ships 11).
pub const KNOWN_POSTGRESQL: [i64; 7] = [11, 12, 13, 14, 15, 16, 17];
/// Swarm's Raft needs a majority; the vendor supports at most 7 dispatchers.
pub const MAX_DISPATCHERS: usize = 7;

/// How strictly to treat media paths that do not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaCheck {
    /// `plan`: report them as warnings.
    Warn,
    /// `build`: they are errors.
    Require,
    /// `bake`: media are not used; say nothing.
    Ignore,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One thing wrong with a recipe, pointing at the field or host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// The recipe file.
    pub file: PathBuf,
    /// Where the offending value (or its table) is written.
    pub location: Option<Location>,
    /// Key path, e.g. `host[2].ip`.
    pub key: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, ": {level}: {}: {}", self.key, self.message)
    }
}

/// The result of resolving a recipe: a plan when there is no error, and every
/// problem found (errors and warnings) either way.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Option<Plan>,
    pub problems: Vec<Problem>,
}

impl Outcome {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }
}

/// The whole resolved cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub cluster: String,
    pub domain: String,
    pub network: NetworkPlan,
    pub repository: RepositoryPlan,
    pub database: DatabasePlan,
    pub swarm: SwarmPlan,
    pub media: MediaPlan,
    /// In recipe order.
    pub hosts: Vec<HostPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPlan {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryPlan {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabasePlan {
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
    pub rejoin: Rejoin,
    pub synchronous: bool,
    /// Given by the recipe; otherwise the password is generated at build time.
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmPlan {
    pub leader: String,
    pub leader_ip: Ipv4Addr,
    pub managers: Vec<String>,
    pub port: u16,
    /// How managers obtain the join token (it cannot be preset).
    pub token_source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaPlan {
    pub main: Option<PathBuf>,
    pub devel: Option<PathBuf>,
    /// Update discs, merged after main and devel in this order.
    #[serde(default)]
    pub updates: Vec<PathBuf>,
    pub vendor: Option<PathBuf>,
    /// The reference VM's dpkg status file (`media.base_status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_status: Option<PathBuf>,
}

impl MediaPlan {
    /// The discs the repository is merged from, with their roles, in merge
    /// order: `main` (None when the recipe does not name it), `devel` when
    /// given, `update1`, `update2`, …
    pub fn sources(&self) -> Vec<(String, Option<&PathBuf>)> {
        let mut sources = vec![("main".to_string(), self.main.as_ref())];
        if let Some(d) = &self.devel {
            sources.push(("devel".to_string(), Some(d)));
        }
        for (n, u) in self.updates.iter().enumerate() {
            sources.push((crate::build::repo::update_role(n), Some(u)));
        }
        sources
    }
}

/// Another host, by name and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRef {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Everything one VM will use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPlan {
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
    pub vrrp: Option<VrrpPlan>,
    pub postgres: Option<PostgresPlan>,
    pub dispatcher: Option<DispatcherPlan>,
}

/// This host's keepalived instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VrrpPlan {
    pub state: VrrpState,
    pub priority: u8,
    pub nopreempt: bool,
    pub virtual_router_id: u8,
    pub vip: Ipv4Addr,
    pub prefix: u8,
    pub interface: String,
    pub peer: PeerRef,
    pub unicast: bool,
    /// Promote the local standby when this host takes the VIP.
    pub promote: bool,
}

/// This host's PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresPlan {
    pub major: u32,
    pub port: u16,
    pub data_dir: String,
    /// The one DB user (vendor installer, dispatchers, replication).
    pub user: String,
    /// Set on the replica: whom it streams from.
    pub replicate_from: Option<PeerRef>,
    pub slot: Option<String>,
    /// Addresses allowed to replicate from this host (pg_hba).
    pub replication_peers: Vec<Ipv4Addr>,
}

/// This host's Space Dispatcher settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatcherPlan {
    pub db_host: Ipv4Addr,
    pub db_port: u16,
    pub db_user: String,
    pub leader: PeerRef,
    /// For managers: where the swarm join token comes from.
    pub token_source: Option<String>,
}

/// Resolves a parsed recipe into the plan, checking everything across fields.
/// Every problem is collected; the plan is given only when there is no error.
pub fn resolve(recipe: &Recipe, source: &Source, media: MediaCheck) -> Outcome {
    let mut c = checks::Checker::new(source);
    let domain = checks::cluster(&mut c, recipe);
    let subnet = checks::network(&mut c, recipe);
    let addresses = checks::hosts(&mut c, recipe, &domain, &subnet);
    let roles = checks::roles(&mut c, recipe);
    let vrid = checks::database(&mut c, recipe, &subnet, &roles, &addresses);
    checks::repository(&mut c, &recipe.repository);
    checks::packages(&mut c, &recipe.packages);
    let files = checks::files(&mut c, recipe, source, media);

    let plan = (!c.has_errors())
        .then(|| assembly::build_plan(recipe, &domain, vrid, files.media, files.password_file));
    Outcome {
        plan,
        problems: c.report(),
    }
}

impl Plan {
    /// Every host by name, and whether it is the swarm leader (whose SSH
    /// host key the secrets keep apart).
    pub fn ssh_hosts(&self) -> Vec<(&str, bool)> {
        self.hosts
            .iter()
            .map(|h| (h.name.as_str(), h.role == Role::Leader))
            .collect()
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
