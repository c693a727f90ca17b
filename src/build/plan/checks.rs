//! The checks `resolve` runs on a recipe, one phase per section: cluster,
//! network, hosts, roles, database, repository, media and files.
//!
//! Every phase records its problems on a [`Checker`] in the order the
//! sections are written; the checker locates them all in one parse of the
//! recipe at the end. Duplicates (names, addresses, MACs, UUIDs) are found
//! with maps in one pass over the hosts: nothing here compares every host
//! with every other, so a recipe with tens of thousands of hosts stays fast.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use super::{KNOWN_POSTGRESQL, MAX_DISPATCHERS, MediaCheck, MediaPlan, Problem, Role, Severity};
use crate::build::recipe::{Database, Host, KeyPath, Packages, Recipe, Repository, Source};

/// Collects problems with their locations.
pub(crate) struct Checker<'a> {
    source: &'a Source,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker with no problems yet, for the recipe read from `source`.
    pub(crate) fn new(source: &'a Source) -> Self {
        Checker {
            source,
            problems: Vec::new(),
        }
    }
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

    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, key, message.into());
    }

    /// Whether any problem so far is an error.
    pub(crate) fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
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

    /// Every problem, located: errors first, then in the order they are
    /// written in the recipe (problems at one place keep the order found).
    pub(crate) fn report(self) -> Vec<Problem> {
        let mut problems = self.located();
        problems.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.severity),
                p.location.map(|l| (l.line, l.column)),
            )
        });
        problems
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

/// Why `s` cannot be the database user: not a plain PostgreSQL name, or
/// PostgreSQL's own superuser.
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

/// `[cluster]`: the name and the DNS domain. Returns the domain without its
/// trailing dot.
pub(crate) fn cluster(c: &mut Checker<'_>, recipe: &Recipe) -> String {
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
    domain
}

/// The recipe's subnet and gateway, which the address checks compare with.
pub(crate) struct Subnet {
    pub(crate) net: Ipv4Net,
    pub(crate) gateway: Ipv4Addr,
}

impl Subnet {
    /// Whether `ip` is the network or the broadcast address.
    fn special(&self, ip: Ipv4Addr) -> bool {
        ip == self.net.network() || ip == self.net.broadcast()
    }
}

/// `[network]`: the CIDR, the gateway and the interface name.
pub(crate) fn network(c: &mut Checker<'_>, recipe: &Recipe) -> Subnet {
    let net = recipe.network.cidr;
    let network = net.network();
    if net.addr() != network {
        c.error(
            "network.cidr",
            format!(
                "{net} has host bits set; the network is {}",
                Ipv4Net::new(network, net.prefix_len()).unwrap_or(net)
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
    let subnet = Subnet {
        net,
        gateway: recipe.network.gateway,
    };
    let gw = subnet.gateway;
    if !net.contains(&gw) {
        c.error("network.gateway", format!("{gw} is outside {net}"));
    } else if subnet.special(gw) {
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
    subnet
}

/// What the host checks have seen so far, by value, to find duplicates in
/// one pass: the index of the first host with each.
#[derive(Default)]
struct Seen {
    names: BTreeMap<String, usize>,
    ips: BTreeMap<Ipv4Addr, usize>,
    macs: BTreeMap<String, usize>,
    uuids: BTreeMap<String, usize>,
}

/// The key of field `k` of host `i`, e.g. `host[2].ip`.
fn host_key(i: usize, k: &str) -> String {
    format!("host[{i}].{k}")
}

/// `[[host]]`: each host's name, address, MAC and UUID, and that none is
/// used twice. Returns the index of the host at each address.
pub(crate) fn hosts(
    c: &mut Checker<'_>,
    recipe: &Recipe,
    domain: &str,
    subnet: &Subnet,
) -> BTreeMap<Ipv4Addr, usize> {
    if recipe.hosts.is_empty() {
        c.error(
            "host",
            "no [[host]] tables; add the DB servers and dispatchers",
        );
    }
    let mut seen = Seen::default();
    for (i, h) in recipe.hosts.iter().enumerate() {
        host_name(c, &mut seen.names, i, h, domain);
        host_address(c, &mut seen.ips, recipe, i, h, subnet);
        host_mac(c, &mut seen.macs, recipe, i, h);
        host_uuid(c, &mut seen.uuids, recipe, i, h);
    }
    seen.ips
}

/// Host `i`'s name: a valid label, a valid FQDN, not taken.
fn host_name(
    c: &mut Checker<'_>,
    names: &mut BTreeMap<String, usize>,
    i: usize,
    h: &Host,
    domain: &str,
) {
    if let Some(why) = label_problem(&h.name) {
        c.error(
            &host_key(i, "name"),
            format!("{:?} is not a valid hostname: it {why}", h.name),
        );
    }
    let fqdn_len = h.name.len() + 1 + domain.len();
    if fqdn_len > 253 {
        c.error(
            &host_key(i, "name"),
            format!("the FQDN would be {fqdn_len} characters; at most 253"),
        );
    }
    if let Some(first) = names.insert(h.name.to_ascii_lowercase(), i) {
        c.error(
            &host_key(i, "name"),
            format!("{:?} is also the name of host[{first}]", h.name),
        );
    }
}

/// Host `i`'s address: not taken, a usable host address of the subnet.
fn host_address(
    c: &mut Checker<'_>,
    ips: &mut BTreeMap<Ipv4Addr, usize>,
    recipe: &Recipe,
    i: usize,
    h: &Host,
    subnet: &Subnet,
) {
    let net = subnet.net;
    if let Some(first) = ips.insert(h.ip, i) {
        c.error(
            &host_key(i, "ip"),
            format!(
                "{} ({}) is also the address of host[{first}] ({})",
                h.ip, h.name, recipe.hosts[first].name
            ),
        );
    }
    if !net.contains(&h.ip) {
        c.error(
            &host_key(i, "ip"),
            format!("{} ({}) is outside {net}", h.ip, h.name),
        );
    } else if subnet.special(h.ip) {
        c.error(
            &host_key(i, "ip"),
            format!(
                "{} ({}) is the network or broadcast address of {net}",
                h.ip, h.name
            ),
        );
    } else if h.ip == subnet.gateway {
        c.error(
            &host_key(i, "ip"),
            format!("{} ({}) is the gateway's address", h.ip, h.name),
        );
    }
}

/// Host `i`'s MAC, if given: well formed, unicast, not taken.
fn host_mac(
    c: &mut Checker<'_>,
    macs: &mut BTreeMap<String, usize>,
    recipe: &Recipe,
    i: usize,
    h: &Host,
) {
    let Some(mac) = &h.mac else {
        return;
    };
    match normalise_mac(mac) {
        None => c.error(
            &host_key(i, "mac"),
            format!("{mac:?} ({}) is not a MAC address; write six hex pairs, e.g. \"52:54:00:12:34:56\"", h.name),
        ),
        Some(m) => {
            let first_octet = u8::from_str_radix(&m[..2], 16).unwrap_or(0);
            if first_octet & 1 == 1 {
                c.error(
                    &host_key(i, "mac"),
                    format!("{mac} ({}) is a multicast address; a NIC needs a unicast MAC", h.name),
                );
            }
            if let Some(first) = macs.insert(m, i) {
                c.error(
                    &host_key(i, "mac"),
                    format!("{mac} ({}) is also the MAC of host[{first}] ({}); each clone needs its own", h.name, recipe.hosts[first].name),
                );
            }
        }
    }
}

/// Host `i`'s SMBIOS UUID, if given: well formed, not taken.
fn host_uuid(
    c: &mut Checker<'_>,
    uuids: &mut BTreeMap<String, usize>,
    recipe: &Recipe,
    i: usize,
    h: &Host,
) {
    let Some(uuid) = &h.uuid else {
        return;
    };
    match normalise_uuid(uuid) {
        None => c.error(
            &host_key(i, "uuid"),
            format!(
                "{uuid:?} ({}) is not an SMBIOS UUID (8-4-4-4-12 hex digits)",
                h.name
            ),
        ),
        Some(u) => {
            if let Some(first) = uuids.insert(u, i) {
                c.error(
                    &host_key(i, "uuid"),
                    format!(
                        "{uuid} ({}) is also the UUID of host[{first}] ({})",
                        h.name, recipe.hosts[first].name
                    ),
                );
            }
        }
    }
}

/// The indices of the hosts with each role, in recipe order.
pub(crate) struct Roles {
    masters: Vec<usize>,
    replicas: Vec<usize>,
    leaders: Vec<usize>,
    managers: Vec<usize>,
}

/// The hosts' roles: one db-master, at most one db-replica, one leader, and
/// an odd number of dispatchers the vendor supports.
pub(crate) fn roles(c: &mut Checker<'_>, recipe: &Recipe) -> Roles {
    let with_role = |role: Role| -> Vec<usize> {
        recipe
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.role == role)
            .map(|(i, _)| i)
            .collect()
    };
    let roles = Roles {
        masters: with_role(Role::DbMaster),
        replicas: with_role(Role::DbReplica),
        leaders: with_role(Role::Leader),
        managers: with_role(Role::Manager),
    };
    one_of_each(c, recipe, &roles);
    dispatcher_count(c, &roles);
    roles
}

/// Exactly one db-master, at most one db-replica, exactly one leader.
fn one_of_each(c: &mut Checker<'_>, recipe: &Recipe, roles: &Roles) {
    let (masters, replicas, leaders) = (&roles.masters, &roles.replicas, &roles.leaders);
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
}

/// The dispatchers (leader and managers) keep a Raft majority: an odd
/// number, at most [`MAX_DISPATCHERS`].
fn dispatcher_count(c: &mut Checker<'_>, roles: &Roles) {
    let (leaders, managers) = (&roles.leaders, &roles.managers);
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
}

/// `[database]`: the PostgreSQL major, port and user, and the VRRP settings
/// a pair needs (and a single server must not have). Returns the VRRP
/// router id when it is valid.
pub(crate) fn database(
    c: &mut Checker<'_>,
    recipe: &Recipe,
    subnet: &Subnet,
    roles: &Roles,
    ips: &BTreeMap<Ipv4Addr, usize>,
) -> Option<u8> {
    let db = &recipe.database;
    server(c, db);
    if !roles.replicas.is_empty() {
        let vrid = router_id(c, db);
        vip(c, recipe, subnet, ips);
        pair_options(c, db);
        vrid
    } else {
        if !roles.masters.is_empty() {
            no_vrrp(c, db);
        }
        None
    }
}

/// The PostgreSQL major, the port and the user.
fn server(c: &mut Checker<'_>, db: &Database) {
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
}

/// A pair's VRRP router id: given and in range.
fn router_id(c: &mut Checker<'_>, db: &Database) -> Option<u8> {
    match db.virtual_router_id {
        None => {
            c.error(
                "database",
                "missing field `virtual_router_id`: a db-replica needs keepalived; choose a router id 1..=255 not used by another VRRP group on this network",
            );
            None
        }
        Some(v) if !(1..=255).contains(&v) => {
            c.error(
                "database.virtual_router_id",
                format!("{v} is out of range; VRRP router ids are 1..=255"),
            );
            None
        }
        Some(v) => u8::try_from(v).ok(),
    }
}

/// A pair's virtual IP: given, and a free host address of the subnet.
fn vip(c: &mut Checker<'_>, recipe: &Recipe, subnet: &Subnet, ips: &BTreeMap<Ipv4Addr, usize>) {
    let net = subnet.net;
    match recipe.database.vip {
        None => c.error(
            "database",
            "missing field `vip`: a db-replica needs the virtual IP the dispatchers connect to",
        ),
        Some(vip) => {
            if !net.contains(&vip) {
                c.error("database.vip", format!("{vip} is outside {net}"));
            } else if subnet.special(vip) {
                c.error(
                    "database.vip",
                    format!("{vip} is the network or broadcast address of {net}"),
                );
            } else if vip == subnet.gateway {
                c.error("database.vip", format!("{vip} is the gateway's address"));
            } else if let Some(&i) = ips.get(&vip) {
                c.error(
                    "database.vip",
                    format!(
                        "{vip} is the address of host[{i}] ({}); the VIP must be a free address",
                        recipe.hosts[i].name
                    ),
                );
            }
        }
    }
}

/// A single server has no keepalived: no VIP, no router id.
fn no_vrrp(c: &mut Checker<'_>, db: &Database) {
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
    if db.synchronous {
        c.error(
            "database.synchronous",
            "true, but there is no db-replica to wait for; remove it or add a db-replica host",
        );
    }
    if db.rejoin == crate::build::recipe::Rejoin::Auto {
        c.error(
            "database.rejoin",
            "\"auto\", but there is no db-replica, so no failover to re-join after; remove it or add a db-replica host",
        );
    }
}

/// `rejoin` and `synchronous` need the standby to be promoted.
fn pair_options(c: &mut Checker<'_>, db: &Database) {
    if db.failover != crate::build::recipe::Failover::VipOnly {
        return;
    }
    if db.rejoin == crate::build::recipe::Rejoin::Auto {
        c.error(
            "database.rejoin",
            "\"auto\" with failover = \"vip-only\": nothing is ever promoted, so there is nothing to re-join; use failover = \"promote\" or remove rejoin",
        );
    }
}

/// `[repository]`: the suite, components and architectures are plain words.
pub(crate) fn repository(c: &mut Checker<'_>, repo: &Repository) {
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
}

/// `[packages]`: each entry a package name as `apt-get install` takes it
/// (Debian policy's form; no `=version` or `:arch`), each once per role.
pub(crate) fn packages(c: &mut Checker<'_>, packages: &Packages) {
    for role in [Role::DbMaster, Role::DbReplica, Role::Leader, Role::Manager] {
        let Some(list) = packages.for_role(role) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for (i, name) in list.iter().enumerate() {
            let key = format!("packages.{}[{i}]", role.as_str());
            if let Err(e) = crate::build::repo::policy::package_name(name) {
                c.error(
                    &key,
                    format!("{e}; name the package as `apt-get install` does"),
                );
            } else if !seen.insert(name.as_str()) {
                c.error(&key, format!("{name:?} is listed twice for this role"));
            }
        }
    }
}

/// The files the recipe names, resolved against its directory.
pub(crate) struct Files {
    pub(crate) media: MediaPlan,
    pub(crate) password_file: Option<PathBuf>,
}

/// `[media]` and `database.password_file`: resolved against the recipe's
/// directory, and reported when missing as `media` says (a missing password
/// file is reported even when media are ignored).
pub(crate) fn files(
    c: &mut Checker<'_>,
    recipe: &Recipe,
    source: &Source,
    media: MediaCheck,
) -> Files {
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
        updates: recipe.media.updates.iter().map(resolve_path).collect(),
        vendor: recipe.media.vendor.as_ref().map(resolve_path),
        base_status: recipe.media.base_status.as_ref().map(resolve_path),
    };
    let severity = match media {
        MediaCheck::Warn | MediaCheck::Ignore => Severity::Warning,
        MediaCheck::Require => Severity::Error,
    };
    if media != MediaCheck::Ignore {
        discs(c, &media_plan, severity);
    }
    let password_file = recipe.database.password_file.as_ref().map(resolve_path);
    if let Some(p) = &password_file
        && !p.is_file()
    {
        c.push(
            severity,
            "database.password_file",
            format!("{} does not exist; create it (one line, mode 0600) or remove the key to have a password generated", p.display()),
        );
    }
    Files {
        media: media_plan,
        password_file,
    }
}

/// The install discs: the required ones given, and every given one exists.
fn discs(c: &mut Checker<'_>, media: &MediaPlan, severity: Severity) {
    let media_checks = [
        (
            "media.main",
            &media.main,
            "the Astra SE 1.7 main disc",
            true,
        ),
        (
            "media.devel",
            &media.devel,
            "the Astra SE 1.7 devel disc",
            false,
        ),
        (
            "media.vendor",
            &media.vendor,
            "the Space Dispatcher disc",
            true,
        ),
    ];
    for (key, path, what, required) in media_checks {
        match path {
            Some(p) => disc_exists(c, severity, key, p, what),
            None if required => c.push(
                severity,
                key,
                format!("not set; `airlock build` needs {what} (an .iso file or a directory)"),
            ),
            None => {}
        }
    }
    for (n, p) in media.updates.iter().enumerate() {
        let key = format!("media.updates[{n}]");
        let what = format!("update disc {}", n + 1);
        disc_exists(c, severity, &key, p, &what);
    }
    if let Some(p) = &media.base_status
        && !p.is_file()
    {
        c.push(
            severity,
            "media.base_status",
            format!(
                "{} does not exist; copy /var/lib/dpkg/status from the reference VM, or remove the key to count the main disc's required and important packages as installed",
                p.display()
            ),
        );
    }
}

/// A disc the recipe names is there.
fn disc_exists(c: &mut Checker<'_>, severity: Severity, key: &str, path: &Path, what: &str) {
    if !path.exists() {
        c.push(
            severity,
            key,
            format!(
                "{} ({what}) does not exist; give an .iso file or a directory holding pool/ and dists/",
                path.display()
            ),
        );
    }
}
