//! Assembling the plan from a recipe that passed every check: the
//! cluster-wide sections (network, repository, database, swarm) and, for
//! each host, its keepalived, PostgreSQL and Space Dispatcher settings.
//!
//! Every shared value (the router id, the DB user, the endpoint, the join
//! token's source) is computed once in [`Cluster`] and copied into each host,
//! so no two hosts can disagree on it.

use std::path::PathBuf;

use super::{
    DatabaseMode, DatabasePlan, DispatcherPlan, Failover, HostPlan, MediaPlan, NetworkPlan,
    PeerRef, Plan, PostgresPlan, REPLICATION_SLOT, REPO_ROOT, RepositoryPlan, Role, SWARM_PORT,
    SwarmPlan, TOKEN_USER, TRUSTED_KEYRING, VENDOR_REPO_PATHS, VrrpMode, VrrpPlan, VrrpState,
    normalise_mac, normalise_uuid,
};
use crate::build::recipe::{Host, Recipe};

/// The values every host's plan shares, computed once.
struct Cluster<'a> {
    recipe: &'a Recipe,
    domain: &'a str,
    vrid: Option<u8>,
    master: &'a Host,
    replica: Option<&'a Host>,
    leader: &'a Host,
    /// The PostgreSQL major.
    major: u32,
    /// The address the dispatchers connect to: the VIP of a pair, else the
    /// master's own.
    endpoint: std::net::Ipv4Addr,
    token_source: String,
    search: Vec<String>,
}

impl<'a> Cluster<'a> {
    fn new(recipe: &'a Recipe, domain: &'a str, vrid: Option<u8>) -> Self {
        let db = &recipe.database;
        let find = |role: Role| recipe.hosts.iter().find(|h| h.role == role);
        let master = find(Role::DbMaster).expect("checked: one db-master");
        let replica = find(Role::DbReplica);
        let leader = find(Role::Leader).expect("checked: one leader");
        Cluster {
            recipe,
            domain,
            vrid,
            master,
            replica,
            leader,
            major: db.postgresql as u32,
            endpoint: db.vip.filter(|_| replica.is_some()).unwrap_or(master.ip),
            token_source: format!("ssh {TOKEN_USER}@{}", leader.ip),
            search: vec![domain.to_string()],
        }
    }
}

/// Another host, by name and address.
fn peer(h: &Host) -> PeerRef {
    PeerRef {
        name: h.name.clone(),
        ip: h.ip,
    }
}

/// Builds the plan from a recipe that passed every check.
pub(crate) fn build_plan(
    recipe: &Recipe,
    domain: &str,
    vrid: Option<u8>,
    media: MediaPlan,
    password_file: Option<PathBuf>,
) -> Plan {
    let cl = Cluster::new(recipe, domain, vrid);
    let hosts = recipe.hosts.iter().map(|h| host_plan(&cl, h)).collect();
    Plan {
        cluster: recipe.cluster.name.clone(),
        domain: domain.to_string(),
        network: network_plan(&cl),
        repository: repository_plan(recipe),
        database: database_plan(&cl, password_file),
        swarm: swarm_plan(&cl),
        media,
        hosts,
    }
}

/// The cluster's network, as every host uses it.
fn network_plan(cl: &Cluster<'_>) -> NetworkPlan {
    let network = &cl.recipe.network;
    NetworkPlan {
        network: network.cidr.network(),
        prefix: network.cidr.prefix_len(),
        gateway: network.gateway,
        dns: network.dns.clone(),
        search: cl.search.clone(),
        interface: network.interface.clone(),
    }
}

/// The signed repository: the recipe's suite, at the fixed paths.
fn repository_plan(recipe: &Recipe) -> RepositoryPlan {
    RepositoryPlan {
        suite: recipe.repository.suite.clone(),
        components: recipe.repository.components.clone(),
        architectures: recipe.repository.architectures.clone(),
        root: REPO_ROOT.to_string(),
        vendor_paths: VENDOR_REPO_PATHS.map(String::from).to_vec(),
        trusted_keyring: TRUSTED_KEYRING.to_string(),
    }
}

/// The database: a pair with its VIP, or a single server.
fn database_plan(cl: &Cluster<'_>, password_file: Option<PathBuf>) -> DatabasePlan {
    let db = &cl.recipe.database;
    DatabasePlan {
        mode: if cl.replica.is_some() {
            DatabaseMode::Pair
        } else {
            DatabaseMode::Single
        },
        endpoint: cl.endpoint,
        port: db.port,
        vip: db.vip.filter(|_| cl.replica.is_some()),
        virtual_router_id: cl.vrid,
        postgresql: cl.major,
        user: db.user.clone(),
        failover: db.failover,
        vrrp: db.vrrp,
        master: cl.master.name.clone(),
        replica: cl.replica.map(|r| r.name.clone()),
        rejoin: db.rejoin,
        synchronous: db.synchronous,
        password_file,
    }
}

/// The swarm: its leader and managers.
fn swarm_plan(cl: &Cluster<'_>) -> SwarmPlan {
    SwarmPlan {
        leader: cl.leader.name.clone(),
        leader_ip: cl.leader.ip,
        managers: cl
            .recipe
            .hosts
            .iter()
            .filter(|h| h.role == Role::Manager)
            .map(|h| h.name.clone())
            .collect(),
        port: SWARM_PORT,
        token_source: cl.token_source.clone(),
    }
}

/// Everything host `h` will use.
fn host_plan(cl: &Cluster<'_>, h: &Host) -> HostPlan {
    let recipe = cl.recipe;
    let net = recipe.network.cidr;
    // The other DB server, for a DB server of a pair.
    let other_db = match h.role {
        Role::DbMaster => cl.replica,
        Role::DbReplica => Some(cl.master),
        _ => None,
    };
    HostPlan {
        name: h.name.clone(),
        fqdn: format!("{}.{}", h.name, cl.domain),
        role: h.role,
        ip: h.ip,
        prefix: net.prefix_len(),
        gateway: recipe.network.gateway,
        dns: recipe.network.dns.clone(),
        search: cl.search.clone(),
        interface: recipe.network.interface.clone(),
        mac: h.mac.as_deref().and_then(normalise_mac),
        uuid: h.uuid.as_deref().and_then(normalise_uuid),
        vrrp: vrrp_plan(cl, h, other_db),
        postgres: postgres_plan(cl, h, other_db),
        dispatcher: dispatcher_plan(cl, h),
    }
}

/// Host `h`'s keepalived instance, when it is a DB server of a pair.
fn vrrp_plan(cl: &Cluster<'_>, h: &Host, other_db: Option<&Host>) -> Option<VrrpPlan> {
    let db = &cl.recipe.database;
    let (Some(other), Some(vip), Some(vrid)) = (other_db, db.vip, cl.vrid) else {
        return None;
    };
    let is_master = h.role == Role::DbMaster;
    let (state, priority, nopreempt) = match db.failover {
        Failover::VipOnly if is_master => (VrrpState::Master, 255, false),
        Failover::VipOnly => (VrrpState::Backup, 200, false),
        Failover::Promote => (VrrpState::Backup, if is_master { 150 } else { 100 }, true),
    };
    Some(VrrpPlan {
        state,
        priority,
        nopreempt,
        virtual_router_id: vrid,
        vip,
        prefix: cl.recipe.network.cidr.prefix_len(),
        interface: cl.recipe.network.interface.clone(),
        peer: peer(other),
        unicast: db.vrrp == VrrpMode::Unicast,
        promote: db.failover == Failover::Promote,
    })
}

/// Host `h`'s PostgreSQL server, when it is a DB server.
fn postgres_plan(cl: &Cluster<'_>, h: &Host, other_db: Option<&Host>) -> Option<PostgresPlan> {
    let db = &cl.recipe.database;
    let major = cl.major;
    matches!(h.role, Role::DbMaster | Role::DbReplica).then(|| {
        let is_replica = h.role == Role::DbReplica;
        PostgresPlan {
            major,
            port: db.port,
            data_dir: format!("/var/lib/postgresql/{major}/main"),
            user: db.user.clone(),
            replicate_from: is_replica.then(|| peer(cl.master)),
            slot: is_replica.then(|| REPLICATION_SLOT.to_string()),
            replication_peers: other_db.map(|o| vec![o.ip]).unwrap_or_default(),
        }
    })
}

/// Host `h`'s Space Dispatcher settings, when it is a dispatcher.
fn dispatcher_plan(cl: &Cluster<'_>, h: &Host) -> Option<DispatcherPlan> {
    let db = &cl.recipe.database;
    h.role.is_dispatcher().then(|| DispatcherPlan {
        db_host: cl.endpoint,
        db_port: db.port,
        db_user: db.user.clone(),
        leader: peer(cl.leader),
        token_source: (h.role == Role::Manager).then(|| cl.token_source.clone()),
    })
}
