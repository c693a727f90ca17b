//! The resolved per-host plan: every value each host will use.
//!
//! The plan is the single source every later part renders from. The VRRP
//! router id, the replication user and the repository paths exist once here,
//! so the article's three inconsistencies (two router ids, a replication user
//! that differs from the one pg_basebackup uses, a missing `/opt/devel`)
//! cannot be expressed. Resolving never touches the disk except to report
//! media paths that do not exist.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::build::recipe::{KeyPath, Location, Recipe, Source};
pub use crate::shared::role::{DatabaseMode, Failover, Role, VrrpMode, VrrpState};

pub use crate::shared::paths::{
    REPLICATION_SLOT, REPO_LABEL, REPO_ROOT, TOKEN_USER, TRUSTED_KEYRING, VENDOR_DIR,
    VENDOR_REPO_PATHS,
};

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
    pub vendor: Option<PathBuf>,
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

/// Collects problems with their locations.
struct Checker<'a> {
    source: &'a Source,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Records a problem; its location is found later, for all at once.
    fn push(&mut self, severity: Severity, key: &str, message: String) {
        self.problems.push(Problem {
            severity,
            file: self.source.path.clone(),
            location: None,
            key: key.to_string(),
            message,
        });
    }

    /// Every problem with its file location (one parse of the recipe).
    fn located(self) -> Vec<Problem> {
        let paths: Vec<KeyPath> = self
            .problems
            .iter()
            .map(|p| KeyPath::parse(&p.key))
            .collect();
        let locations = self.source.locate_all(&paths);
        self.problems
            .into_iter()
            .zip(locations)
            .map(|(p, location)| Problem { location, ..p })
            .collect()
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, key, message.into());
    }
}

/// Why `s` is not a network interface name as the clones' configuration
/// files can carry it (netplan/cloud-init YAML, ifupdown, keepalived.conf):
/// 1 to 15 letters, digits, `_`, `.` or `-`, starting with a letter or
/// digit. Linux allows more, but nothing else names a NIC in practice, and
/// each of `*{#"'$` means something in one of those files.
pub fn interface_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 15 {
        return Some("1 to 15 characters");
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("it must start with a letter or digit");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Some("only letters, digits, '_', '.' and '-'");
    }
    None
}

/// Why `s` is not an RFC 1123 label, if it is not.
pub fn label_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 63 {
        return Some(format!("is {} characters long; at most 63", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Some(format!("contains {c:?}; use letters, digits and '-' only"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("starts or ends with '-'".into());
    }
    None
}

/// `52:54:00:AB:CD:EF` or `52-54-00-ab-cd-ef` → `52:54:00:ab:cd:ef`.
pub fn normalise_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// An SMBIOS UUID, `8-4-4-4-12` hex digits → lower case.
pub fn normalise_uuid(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lens == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit())))
    .then(|| s.to_ascii_lowercase())
}

fn pg_identifier_problem(s: &str) -> Option<String> {
    let ok_first = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_first || !ok_rest || s.len() > 63 {
        return Some(format!(
            "{s:?} is not a plain PostgreSQL name: use 1 to 63 lower-case letters, digits or '_', not starting with a digit"
        ));
    }
    if s == "postgres" {
        return Some(
            "`postgres` is PostgreSQL's own superuser; choose a separate user for Space Dispatcher"
                .into(),
        );
    }
    None
}

/// Resolves a parsed recipe into the plan, checking everything across fields.
/// Every problem is collected; the plan is given only when there is no error.
pub fn resolve(recipe: &Recipe, source: &Source, media: MediaCheck) -> Outcome {
    let mut c = Checker {
        source,
        problems: Vec::new(),
    };

    // --- cluster --------------------------------------------------------
    if let Some(why) = label_problem(&recipe.cluster.name) {
        c.error(
            "cluster.name",
            format!("{:?} is not a valid name: it {why}", recipe.cluster.name),
        );
    }
    let domain = recipe.cluster.domain.trim_end_matches('.').to_string();
    if domain.is_empty() {
        c.error(
            "cluster.domain",
            "is empty; give the hosts' DNS domain, e.g. \"vdi.example.local\"",
        );
    }
    for label in domain.split('.').filter(|_| !domain.is_empty()) {
        if let Some(why) = label_problem(label) {
            c.error(
                "cluster.domain",
                format!("label {label:?} of {domain:?} {why}"),
            );
            break;
        }
    }

    // --- network --------------------------------------------------------
    let net = recipe.network.cidr;
    let network = net.network();
    let broadcast = net.broadcast();
    if net.addr() != network {
        c.error(
            "network.cidr",
            format!(
                "{net} has host bits set; the network is {}",
                ipnet::Ipv4Net::new(network, net.prefix_len()).unwrap_or(net)
            ),
        );
    }
    if net.prefix_len() > 30 {
        c.error(
            "network.cidr",
            format!(
                "/{} leaves no room for the hosts; use /30 or wider",
                net.prefix_len()
            ),
        );
    }
    let special = |ip: Ipv4Addr| ip == network || ip == broadcast;
    let gw = recipe.network.gateway;
    if !net.contains(&gw) {
        c.error("network.gateway", format!("{gw} is outside {net}"));
    } else if special(gw) {
        c.error(
            "network.gateway",
            format!("{gw} is the network or broadcast address of {net}"),
        );
    }
    let iface = &recipe.network.interface;
    if let Some(why) = interface_problem(iface) {
        c.error(
            "network.interface",
            format!("{iface:?} is not a Linux interface name: {why}"),
        );
    }

    // --- hosts ------------------------------------------------------------
    if recipe.hosts.is_empty() {
        c.error(
            "host",
            "no [[host]] tables; add the DB servers and dispatchers",
        );
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut ips: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut macs: BTreeMap<String, usize> = BTreeMap::new();
    let mut uuids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, h) in recipe.hosts.iter().enumerate() {
        let at = |k: &str| format!("host[{i}].{k}");
        if let Some(why) = label_problem(&h.name) {
            c.error(
                &at("name"),
                format!("{:?} is not a valid hostname: it {why}", h.name),
            );
        }
        let fqdn_len = h.name.len() + 1 + domain.len();
        if fqdn_len > 253 {
            c.error(
                &at("name"),
                format!("the FQDN would be {fqdn_len} characters; at most 253"),
            );
        }
        if let Some(first) = names.insert(h.name.to_ascii_lowercase(), i) {
            c.error(
                &at("name"),
                format!("{:?} is also the name of host[{first}]", h.name),
            );
        }
        if let Some(first) = ips.insert(h.ip, i) {
            c.error(
                &at("ip"),
                format!(
                    "{} ({}) is also the address of host[{first}] ({})",
                    h.ip, h.name, recipe.hosts[first].name
                ),
            );
        }
        if !net.contains(&h.ip) {
            c.error(&at("ip"), format!("{} ({}) is outside {net}", h.ip, h.name));
        } else if special(h.ip) {
            c.error(
                &at("ip"),
                format!(
                    "{} ({}) is the network or broadcast address of {net}",
                    h.ip, h.name
                ),
            );
        } else if h.ip == gw {
            c.error(
                &at("ip"),
                format!("{} ({}) is the gateway's address", h.ip, h.name),
            );
        }
        if let Some(mac) = &h.mac {
            match normalise_mac(mac) {
                None => c.error(
                    &at("mac"),
                    format!("{mac:?} ({}) is not a MAC address; write six hex pairs, e.g. \"52:54:00:12:34:56\"", h.name),
                ),
                Some(m) => {
                    let first_octet = u8::from_str_radix(&m[..2], 16).unwrap_or(0);
                    if first_octet & 1 == 1 {
                        c.error(
                            &at("mac"),
                            format!("{mac} ({}) is a multicast address; a NIC needs a unicast MAC", h.name),
                        );
                    }
                    if let Some(first) = macs.insert(m, i) {
                        c.error(
                            &at("mac"),
                            format!("{mac} ({}) is also the MAC of host[{first}] ({}); each clone needs its own", h.name, recipe.hosts[first].name),
                        );
                    }
                }
            }
        }
        if let Some(uuid) = &h.uuid {
            match normalise_uuid(uuid) {
                None => c.error(
                    &at("uuid"),
                    format!(
                        "{uuid:?} ({}) is not an SMBIOS UUID (8-4-4-4-12 hex digits)",
                        h.name
                    ),
                ),
                Some(u) => {
                    if let Some(first) = uuids.insert(u, i) {
                        c.error(
                            &at("uuid"),
                            format!(
                                "{uuid} ({}) is also the UUID of host[{first}] ({})",
                                h.name, recipe.hosts[first].name
                            ),
                        );
                    }
                }
            }
        }
    }

    let with_role = |role: Role| -> Vec<usize> {
        recipe
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.role == role)
            .map(|(i, _)| i)
            .collect()
    };
    let masters = with_role(Role::DbMaster);
    let replicas = with_role(Role::DbReplica);
    let leaders = with_role(Role::Leader);
    let managers = with_role(Role::Manager);

    // --- roles ------------------------------------------------------------
    match masters.len() {
        0 => c.error(
            "host",
            "no host has role \"db-master\"; the cluster needs exactly one",
        ),
        1 => {}
        _ => {
            for &i in &masters[1..] {
                c.error(
                    &format!("host[{i}].role"),
                    format!(
                        "{} is a second db-master (host[{}] {} is the first); there is exactly one, the other DB server is \"db-replica\"",
                        recipe.hosts[i].name, masters[0], recipe.hosts[masters[0]].name
                    ),
                );
            }
        }
    }
    for &i in replicas.iter().skip(1) {
        c.error(
            &format!("host[{i}].role"),
            format!(
                "{} is a second db-replica (host[{}] {} is the first); airlock runs one master and at most one replica",
                recipe.hosts[i].name, replicas[0], recipe.hosts[replicas[0]].name
            ),
        );
    }
    match leaders.len() {
        0 => c.error(
            "host",
            "no host has role \"leader\"; one dispatcher must be the swarm leader",
        ),
        1 => {}
        _ => {
            for &i in &leaders[1..] {
                c.error(
                    &format!("host[{i}].role"),
                    format!(
                        "{} is a second leader (host[{}] {} is the first); the other dispatchers are \"manager\"",
                        recipe.hosts[i].name, leaders[0], recipe.hosts[leaders[0]].name
                    ),
                );
            }
        }
    }
    let dispatchers = leaders.len() + managers.len();
    if dispatchers > 0 && (dispatchers % 2 == 0 || dispatchers > MAX_DISPATCHERS) {
        let key = managers
            .last()
            .or(leaders.last())
            .map(|i| format!("host[{i}].role"))
            .unwrap_or_else(|| "host".into());
        let why = if dispatchers > MAX_DISPATCHERS {
            format!("the vendor supports at most {MAX_DISPATCHERS}")
        } else {
            "an even number cannot keep a Raft majority when half are lost".into()
        };
        c.error(
            &key,
            format!(
                "{dispatchers} dispatchers (leader + managers); use an odd number from 1 to {MAX_DISPATCHERS}: {why}"
            ),
        );
    }

    // --- database -----------------------------------------------------------
    let db = &recipe.database;
    let pair = !replicas.is_empty();
    if !KNOWN_POSTGRESQL.contains(&db.postgresql) {
        c.error(
            "database.postgresql",
            format!(
                "PostgreSQL {} is not known to airlock; use one of {} (Astra SE 1.7 ships 11)",
                db.postgresql,
                KNOWN_POSTGRESQL.map(|v| v.to_string()).join(", ")
            ),
        );
    }
    if db.port == 0 {
        c.error(
            "database.port",
            "0 is not a port; PostgreSQL's default is 5432",
        );
    }
    if let Some(why) = pg_identifier_problem(&db.user) {
        c.error("database.user", why);
    }
    let mut vrid = None;
    if pair {
        match db.virtual_router_id {
            None => c.error(
                "database",
                "missing field `virtual_router_id`: a db-replica needs keepalived; choose a router id 1..=255 not used by another VRRP group on this network",
            ),
            Some(v) if !(1..=255).contains(&v) => c.error(
                "database.virtual_router_id",
                format!("{v} is out of range; VRRP router ids are 1..=255"),
            ),
            Some(v) => vrid = u8::try_from(v).ok(),
        }
        match db.vip {
            None => c.error(
                "database",
                "missing field `vip`: a db-replica needs the virtual IP the dispatchers connect to",
            ),
            Some(vip) => {
                if !net.contains(&vip) {
                    c.error("database.vip", format!("{vip} is outside {net}"));
                } else if special(vip) {
                    c.error(
                        "database.vip",
                        format!("{vip} is the network or broadcast address of {net}"),
                    );
                } else if vip == gw {
                    c.error("database.vip", format!("{vip} is the gateway's address"));
                } else if let Some(&i) = ips.get(&vip) {
                    c.error(
                        "database.vip",
                        format!("{vip} is the address of host[{i}] ({}); the VIP must be a free address", recipe.hosts[i].name),
                    );
                }
            }
        }
    } else if !masters.is_empty() {
        if db.vip.is_some() {
            c.error(
                "database.vip",
                "set, but there is no db-replica: in single-DB mode the dispatchers use the master's own address; remove `vip` or add a db-replica host",
            );
        }
        if db.virtual_router_id.is_some() {
            c.error(
                "database.virtual_router_id",
                "set, but there is no db-replica, so no keepalived; remove it or add a db-replica host",
            );
        }
    }

    // --- repository ---------------------------------------------------------
    let repo = &recipe.repository;
    let word_problem =
        |s: &str| s.is_empty() || s.chars().any(|ch| ch == '/' || ch.is_whitespace());
    if word_problem(&repo.suite) {
        c.error(
            "repository.suite",
            format!("{:?} is not a suite name (no '/' or spaces)", repo.suite),
        );
    }
    if repo.components.is_empty() {
        c.error(
            "repository.components",
            "is empty; Astra discs use \"main\", \"contrib\", \"non-free\"",
        );
    }
    for (i, comp) in repo.components.iter().enumerate() {
        if word_problem(comp) {
            c.error(
                &format!("repository.components[{i}]"),
                format!("{comp:?} is not a component name"),
            );
        }
    }
    if repo.architectures.is_empty() {
        c.error(
            "repository.architectures",
            "is empty; Astra SE 1.7 is \"amd64\"",
        );
    }
    for (i, arch) in repo.architectures.iter().enumerate() {
        if word_problem(arch) || arch == "all" {
            c.error(
                &format!("repository.architectures[{i}]"),
                format!("{arch:?} is not a machine architecture (\"all\" packages are listed under each one)"),
            );
        }
    }

    // --- media and files ----------------------------------------------------
    let base = source.base_dir();
    let resolve_path = |p: &PathBuf| {
        if p.is_absolute() || base == std::path::Path::new(".") {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let media_plan = MediaPlan {
        main: recipe.media.main.as_ref().map(resolve_path),
        devel: recipe.media.devel.as_ref().map(resolve_path),
        vendor: recipe.media.vendor.as_ref().map(resolve_path),
    };
    let severity = match media {
        MediaCheck::Warn | MediaCheck::Ignore => Severity::Warning,
        MediaCheck::Require => Severity::Error,
    };
    let media_checks = if media == MediaCheck::Ignore {
        Vec::new()
    } else {
        vec![
            (
                "media.main",
                &media_plan.main,
                "the Astra SE 1.7 main disc",
                true,
            ),
            (
                "media.devel",
                &media_plan.devel,
                "the Astra SE 1.7 devel disc",
                false,
            ),
            (
                "media.vendor",
                &media_plan.vendor,
                "the Space Dispatcher disc",
                true,
            ),
        ]
    };
    for (key, path, what, required) in media_checks {
        match path {
            Some(p) if !p.exists() => c.push(
                severity,
                key,
                format!("{} ({what}) does not exist; give an .iso file or a directory holding pool/ and dists/", p.display()),
            ),
            None if required => c.push(
                severity,
                key,
                format!("not set; `airlock build` needs {what} (an .iso file or a directory)"),
            ),
            _ => {}
        }
    }
    let password_file = db.password_file.as_ref().map(resolve_path);
    if let Some(p) = &password_file
        && !p.is_file()
    {
        c.push(
            severity,
            "database.password_file",
            format!("{} does not exist; create it (one line, mode 0600) or remove the key to have a password generated", p.display()),
        );
    }

    let has_errors = c.problems.iter().any(|p| p.severity == Severity::Error);
    let plan = if has_errors {
        None
    } else {
        Some(build_plan(recipe, &domain, vrid, media_plan, password_file))
    };
    let mut problems = c.located();
    problems.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.severity),
            p.location.map(|l| (l.line, l.column)),
        )
    });
    Outcome { plan, problems }
}

/// Builds the plan from a recipe that passed every check.
fn build_plan(
    recipe: &Recipe,
    domain: &str,
    vrid: Option<u8>,
    media: MediaPlan,
    password_file: Option<PathBuf>,
) -> Plan {
    let db = &recipe.database;
    let net = recipe.network.cidr;
    let find = |role: Role| recipe.hosts.iter().find(|h| h.role == role);
    let peer = |h: &crate::build::recipe::Host| PeerRef {
        name: h.name.clone(),
        ip: h.ip,
    };
    let master = find(Role::DbMaster).expect("checked: one db-master");
    let replica = find(Role::DbReplica);
    let leader = find(Role::Leader).expect("checked: one leader");
    let major = db.postgresql as u32;
    let endpoint = db.vip.filter(|_| replica.is_some()).unwrap_or(master.ip);
    let token_source = format!("ssh {TOKEN_USER}@{}", leader.ip);
    let search = vec![domain.to_string()];

    let hosts = recipe
        .hosts
        .iter()
        .map(|h| {
            let other_db = match h.role {
                Role::DbMaster => replica,
                Role::DbReplica => Some(master),
                _ => None,
            };
            let vrrp = match (other_db, db.vip, vrid) {
                (Some(other), Some(vip), Some(vrid)) => {
                    let is_master = h.role == Role::DbMaster;
                    let (state, priority, nopreempt) = match db.failover {
                        Failover::VipOnly if is_master => (VrrpState::Master, 255, false),
                        Failover::VipOnly => (VrrpState::Backup, 200, false),
                        Failover::Promote => {
                            (VrrpState::Backup, if is_master { 150 } else { 100 }, true)
                        }
                    };
                    Some(VrrpPlan {
                        state,
                        priority,
                        nopreempt,
                        virtual_router_id: vrid,
                        vip,
                        prefix: net.prefix_len(),
                        interface: recipe.network.interface.clone(),
                        peer: peer(other),
                        unicast: db.vrrp == VrrpMode::Unicast,
                        promote: db.failover == Failover::Promote,
                    })
                }
                _ => None,
            };
            let postgres = matches!(h.role, Role::DbMaster | Role::DbReplica).then(|| {
                let is_replica = h.role == Role::DbReplica;
                PostgresPlan {
                    major,
                    port: db.port,
                    data_dir: format!("/var/lib/postgresql/{major}/main"),
                    user: db.user.clone(),
                    replicate_from: is_replica.then(|| peer(master)),
                    slot: is_replica.then(|| REPLICATION_SLOT.to_string()),
                    replication_peers: other_db.map(|o| vec![o.ip]).unwrap_or_default(),
                }
            });
            let dispatcher = h.role.is_dispatcher().then(|| DispatcherPlan {
                db_host: endpoint,
                db_port: db.port,
                db_user: db.user.clone(),
                leader: peer(leader),
                token_source: (h.role == Role::Manager).then(|| token_source.clone()),
            });
            HostPlan {
                name: h.name.clone(),
                fqdn: format!("{}.{domain}", h.name),
                role: h.role,
                ip: h.ip,
                prefix: net.prefix_len(),
                gateway: recipe.network.gateway,
                dns: recipe.network.dns.clone(),
                search: search.clone(),
                interface: recipe.network.interface.clone(),
                mac: h.mac.as_deref().and_then(normalise_mac),
                uuid: h.uuid.as_deref().and_then(normalise_uuid),
                vrrp,
                postgres,
                dispatcher,
            }
        })
        .collect();

    Plan {
        cluster: recipe.cluster.name.clone(),
        domain: domain.to_string(),
        network: NetworkPlan {
            network: net.network(),
            prefix: net.prefix_len(),
            gateway: recipe.network.gateway,
            dns: recipe.network.dns.clone(),
            search,
            interface: recipe.network.interface.clone(),
        },
        repository: RepositoryPlan {
            suite: recipe.repository.suite.clone(),
            components: recipe.repository.components.clone(),
            architectures: recipe.repository.architectures.clone(),
            root: REPO_ROOT.to_string(),
            vendor_paths: VENDOR_REPO_PATHS.map(String::from).to_vec(),
            trusted_keyring: TRUSTED_KEYRING.to_string(),
        },
        database: DatabasePlan {
            mode: if replica.is_some() {
                DatabaseMode::Pair
            } else {
                DatabaseMode::Single
            },
            endpoint,
            port: db.port,
            vip: db.vip.filter(|_| replica.is_some()),
            virtual_router_id: vrid,
            postgresql: major,
            user: db.user.clone(),
            failover: db.failover,
            vrrp: db.vrrp,
            master: master.name.clone(),
            replica: replica.map(|r| r.name.clone()),
            password_file,
        },
        swarm: SwarmPlan {
            leader: leader.name.clone(),
            leader_ip: leader.ip,
            managers: recipe
                .hosts
                .iter()
                .filter(|h| h.role == Role::Manager)
                .map(|h| h.name.clone())
                .collect(),
            port: SWARM_PORT,
            token_source,
        },
        media,
        hosts,
    }
}

impl Plan {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The plan as a table a person reads (what `airlock plan` prints).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let db = &self.database;
        let n = &self.network;
        let dns = if n.dns.is_empty() {
            "none".to_string()
        } else {
            join(&n.dns, ", ")
        };
        let _ = writeln!(
            out,
            "Cluster {} ({}), {} hosts",
            self.cluster,
            self.domain,
            self.hosts.len()
        );
        let _ = writeln!(
            out,
            "Network  {}/{} via {}, DNS {dns}, NIC {}",
            n.network, n.prefix, n.gateway, n.interface
        );
        match db.mode {
            DatabaseMode::Pair => {
                let _ = writeln!(
                    out,
                    "Database pair {} + {}, VIP {}:{} (VRRP router id {}, {}), PostgreSQL {}, user {}, failover {}",
                    db.master,
                    db.replica.as_deref().unwrap_or("-"),
                    db.endpoint,
                    db.port,
                    db.virtual_router_id
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    match db.vrrp {
                        VrrpMode::Multicast => "multicast",
                        VrrpMode::Unicast => "unicast",
                    },
                    db.postgresql,
                    db.user,
                    match db.failover {
                        Failover::Promote =>
                            "promote (the standby is promoted; the old master does not take the VIP back)",
                        Failover::VipOnly => "vip-only (the VIP moves to a read-only standby)",
                    }
                );
            }
            DatabaseMode::Single => {
                let _ = writeln!(
                    out,
                    "Database single server {} at {}:{} (no replica, no VIP), PostgreSQL {}, user {}",
                    db.master, db.endpoint, db.port, db.postgresql, db.user
                );
            }
        }
        let r = &self.repository;
        let _ = writeln!(
            out,
            "Repo     suite {} ({}; {}) at {}, also {} for the vendor installer",
            r.suite,
            r.components.join(" "),
            r.architectures.join(" "),
            r.root,
            r.vendor_paths.join(" and ")
        );
        let _ = writeln!(
            out,
            "Swarm    leader {} ({}:{}), {} manager(s); managers fetch the join token with `{}`",
            self.swarm.leader,
            self.swarm.leader_ip,
            self.swarm.port,
            self.swarm.managers.len(),
            self.swarm.token_source
        );
        out.push('\n');

        let header = ["HOST", "ROLE", "ADDRESS", "FQDN", "VRRP", "DETAILS"];
        let rows: Vec<[String; 6]> = self
            .hosts
            .iter()
            .map(|h| {
                let vrrp = h
                    .vrrp
                    .as_ref()
                    .map(|v| {
                        format!(
                            "{} {}{}",
                            v.state,
                            v.priority,
                            if v.nopreempt { " nopreempt" } else { "" }
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                [
                    h.name.clone(),
                    h.role.to_string(),
                    format!("{}/{}", h.ip, h.prefix),
                    h.fqdn.clone(),
                    vrrp,
                    host_details(h),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[&str]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(cell);
                } else {
                    let _ = write!(s, "{cell:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&header);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
        out
    }
}

fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

fn host_details(h: &HostPlan) -> String {
    let mut parts = Vec::new();
    if let Some(pg) = &h.postgres {
        match &pg.replicate_from {
            Some(src) => parts.push(format!(
                "streams from {} ({}) as {}, slot {}",
                src.name,
                src.ip,
                pg.user,
                pg.slot.as_deref().unwrap_or("-")
            )),
            None => parts.push(format!("PostgreSQL {} primary, user {}", pg.major, pg.user)),
        }
        if !pg.replication_peers.is_empty() {
            parts.push(format!(
                "pg_hba replication: {}/32",
                join(&pg.replication_peers, "/32, ")
            ));
        }
    }
    if let Some(v) = &h.vrrp {
        parts.push(format!(
            "VIP {} router id {} peer {}{}{}",
            v.vip,
            v.virtual_router_id,
            v.peer.ip,
            if v.unicast { " (unicast)" } else { "" },
            if v.promote {
                ", promotes on takeover"
            } else {
                ""
            }
        ));
    }
    if let Some(d) = &h.dispatcher {
        match &d.token_source {
            None => parts.push(format!("swarm init, DB {}:{}", d.db_host, d.db_port)),
            Some(src) => parts.push(format!(
                "joins {} with token from `{src}`, DB {}:{}",
                d.leader.name, d.db_host, d.db_port
            )),
        }
    }
    if let Some(mac) = &h.mac {
        parts.push(format!("MAC {mac}"));
    }
    parts.join("; ")
}
