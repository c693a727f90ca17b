//! Per-host payloads: the role file from the plan, the cloud-init NoCloud
//! files (`user-data`, `meta-data`, `network-config`) and the files
//! `user-data` writes. Files the runner also writes come from
//! [`crate::shared::render`], the one renderer of each. [`render`] gathers
//! them into a [`Payload`]; writing it is the job of [`crate::build::seed`].

use std::fmt::Write as _;

use anyhow::Result;
use sha2::Digest;

use crate::build::plan::{HostPlan, Plan};
use crate::build::secrets::Secrets;
use crate::shared::paths;
use crate::shared::render::{apt_conf, apt_sources, etc_hosts};
use crate::shared::role::{self, Host, HostEntry, Role, RoleFile};

/// A file the VM gets, at its absolute path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFile {
    pub path: String,
    pub mode: u32,
    pub content: String,
    /// Holds a password or a private key.
    pub secret: bool,
}

impl VmFile {
    fn new(path: &str, mode: u32, content: String) -> VmFile {
        VmFile {
            path: path.to_string(),
            mode,
            content,
            secret: false,
        }
    }

    fn secret(path: &str, content: String) -> VmFile {
        VmFile {
            path: path.to_string(),
            mode: 0o600,
            content,
            secret: true,
        }
    }
}

/// Everything one host gets.
#[derive(Debug, Clone)]
pub struct Payload {
    pub host: String,
    pub role: RoleFile,
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
    /// The files `user-data` writes, also kept in the payload directory so a
    /// clone without cloud-init can apply them.
    pub files: Vec<VmFile>,
}

/// This host's role file: its slice of the plan in the role file's own
/// types.
pub fn role_file(plan: &Plan, host: &HostPlan, instance_id: String) -> RoleFile {
    let peer = |p: &crate::build::plan::PeerRef| role::Peer {
        name: p.name.clone(),
        ip: p.ip,
    };
    let db = &plan.database;
    let r = &plan.repository;
    RoleFile {
        version: role::ROLE_FILE_VERSION,
        cluster: plan.cluster.clone(),
        domain: plan.domain.clone(),
        instance_id,
        host: Host {
            name: host.name.clone(),
            fqdn: host.fqdn.clone(),
            role: host.role,
            ip: host.ip,
            prefix: host.prefix,
            gateway: host.gateway,
            dns: host.dns.clone(),
            search: host.search.clone(),
            interface: host.interface.clone(),
            mac: host.mac.clone(),
            uuid: host.uuid.clone(),
            vrrp: host.vrrp.as_ref().map(|v| role::Vrrp {
                state: v.state,
                priority: v.priority,
                nopreempt: v.nopreempt,
                virtual_router_id: v.virtual_router_id,
                vip: v.vip,
                prefix: v.prefix,
                interface: v.interface.clone(),
                peer: peer(&v.peer),
                unicast: v.unicast,
                promote: v.promote,
            }),
            postgres: host.postgres.as_ref().map(|p| role::Postgres {
                major: p.major,
                port: p.port,
                data_dir: p.data_dir.clone(),
                user: p.user.clone(),
                replicate_from: p.replicate_from.as_ref().map(peer),
                slot: p.slot.clone(),
                replication_peers: p.replication_peers.clone(),
            }),
            dispatcher: host.dispatcher.as_ref().map(|d| role::Dispatcher {
                db_host: d.db_host,
                db_port: d.db_port,
                db_user: d.db_user.clone(),
                leader: peer(&d.leader),
                token_source: d.token_source.clone(),
            }),
        },
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
        repository: role::Repository {
            suite: r.suite.clone(),
            components: r.components.clone(),
            architectures: r.architectures.clone(),
            root: r.root.clone(),
            vendor_paths: r.vendor_paths.clone(),
            trusted_keyring: r.trusted_keyring.clone(),
        },
        database: role::Database {
            mode: db.mode,
            endpoint: db.endpoint,
            port: db.port,
            vip: db.vip,
            virtual_router_id: db.virtual_router_id,
            postgresql: db.postgresql,
            user: db.user.clone(),
            failover: db.failover,
            vrrp: db.vrrp,
            master: db.master.clone(),
            replica: db.replica.clone(),
            rejoin: db.rejoin,
            synchronous: db.synchronous,
        },
        swarm: role::Swarm {
            leader: plan.swarm.leader.clone(),
            leader_ip: plan.swarm.leader_ip,
            managers: plan.swarm.managers.clone(),
            port: plan.swarm.port,
            token_source: plan.swarm.token_source.clone(),
        },
        vendor_dir: paths::VENDOR_DIR.to_string(),
    }
}

/// A stable id for a host's whole configuration: it changes when anything
/// the host uses changes, so cloud-init treats a changed plan as new.
pub fn instance_id(plan: &Plan, host: &HostPlan) -> Result<String> {
    let probe = role_file(plan, host, String::new());
    let text = toml::to_string(&probe)?;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex = crate::shared::hex(&digest[..6]);
    Ok(format!("airlock-{}-{}-{hex}", plan.cluster, host.name))
}

/// Renders every host's payload.
pub fn render_all(plan: &Plan, secrets: &Secrets) -> Result<Vec<Payload>> {
    plan.hosts
        .iter()
        .map(|h| render(plan, h, secrets))
        .collect()
}

/// Renders one host's payload.
pub fn render(plan: &Plan, host: &HostPlan, secrets: &Secrets) -> Result<Payload> {
    let role = role_file(plan, host, instance_id(plan, host)?);
    let mut files = vec![
        VmFile::new("/etc/hosts", 0o644, etc_hosts(&role)),
        VmFile::new(paths::ROLE_FILE, 0o600, role.to_toml()?),
        VmFile::new(paths::APT_SOURCES, 0o644, apt_sources(&role)),
        VmFile::new(paths::APT_CONF, 0o644, apt_conf()),
    ];
    if matches!(host.role, Role::DbMaster | Role::DbReplica | Role::Leader) {
        files.push(VmFile::secret(
            paths::DB_PASSWORD,
            format!("{}\n", secrets.db_password),
        ));
    }
    let ssh_keys = ssh_files(plan, host, secrets, &mut files)?;
    match host.role {
        Role::Leader => {
            let client_pub = secrets.token_client_public()?;
            files.push(VmFile::new(
                paths::TOKEN_AUTHORIZED_KEYS,
                0o644,
                format!(
                    "restrict,command=\"{} token\" {client_pub}\n",
                    paths::RUNNER
                ),
            ));
        }
        Role::Manager => {
            files.push(VmFile::secret(
                paths::TOKEN_CLIENT_KEY,
                secrets.token_client_key.clone(),
            ));
            files.push(VmFile::new(
                paths::LEADER_KNOWN_HOSTS,
                0o644,
                format!(
                    "{} {}\n",
                    plan.swarm.leader_ip,
                    secrets.leader_host_public()?
                ),
            ));
        }
        _ => {}
    }
    let user_data = user_data(&role, &files, Some(&ssh_keys));
    Ok(Payload {
        host: host.name.clone(),
        meta_data: meta_data(&role),
        network_config: network_config(&role.host),
        user_data,
        role,
        files,
    })
}

/// Every host's SSH files: its own host key (pinned by the others, so
/// cloud-init must install it rather than generate one), the cluster's
/// known hosts, the peer key and the peer user's authorized_keys, whose
/// forced command answers only `airlock-firstboot answer`'s questions.
/// Returns the host key pair for cloud-init.
fn ssh_files(
    plan: &Plan,
    host: &HostPlan,
    secrets: &Secrets,
    files: &mut Vec<VmFile>,
) -> Result<(String, String)> {
    let is_leader = host.role == Role::Leader;
    let private = secrets.host_key(&host.name, is_leader)?.to_string();
    let public = secrets.host_public(&host.name, is_leader)?;
    files.push(VmFile::secret(
        "/etc/ssh/ssh_host_ed25519_key",
        private.clone(),
    ));
    files.push(VmFile::new(
        "/etc/ssh/ssh_host_ed25519_key.pub",
        0o644,
        format!("{public}\n"),
    ));
    let mut known = String::new();
    for h in &plan.hosts {
        let key = secrets.host_public(&h.name, h.role == Role::Leader)?;
        let _ = writeln!(known, "{},{} {key}", h.ip, h.name);
    }
    files.push(VmFile::new(paths::CLUSTER_KNOWN_HOSTS, 0o644, known));
    files.push(VmFile::secret(
        paths::PEER_CLIENT_KEY,
        secrets.peer_client_key.clone(),
    ));
    files.push(VmFile::new(
        paths::PEER_AUTHORIZED_KEYS,
        0o644,
        format!(
            "restrict,command=\"{} answer\" {}\n",
            paths::RUNNER,
            secrets.peer_client_public()?
        ),
    ));
    Ok((private, public))
}

/// `meta-data`: the instance id and the hostname.
pub fn meta_data(role: &RoleFile) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        role.instance_id, role.host.name
    )
}

/// `network-config` (version 2): a static address on the NIC, matched by
/// MAC when the recipe gives one, else by name.
pub fn network_config(h: &Host) -> String {
    // Every value from the recipe is a quoted scalar (JSON strings are YAML).
    let mut s = String::from("version: 2\nethernets:\n");
    let _ = writeln!(s, "  {}:", yq(&h.interface));
    if let Some(mac) = &h.mac {
        let _ = writeln!(s, "    match:\n      macaddress: {}", yq(mac));
        let _ = writeln!(s, "    set-name: {}", yq(&h.interface));
    }
    let _ = writeln!(s, "    dhcp4: false");
    let _ = writeln!(s, "    addresses:\n      - {}/{}", h.ip, h.prefix);
    // `gateway4`, not a 0.0.0.0/0 route: cloud-init's ifupdown renderer
    // turns such a route into `post-up route add …`, and `route` (net-tools)
    // is not installed on a minimal system; a gateway becomes `gateway`.
    let _ = writeln!(s, "    gateway4: {}", h.gateway);
    if !h.dns.is_empty() || !h.search.is_empty() {
        let _ = writeln!(s, "    nameservers:");
        if !h.dns.is_empty() {
            let list: Vec<String> = h.dns.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(s, "      addresses: [{}]", list.join(", "));
        }
        if !h.search.is_empty() {
            let list: Vec<String> = h.search.iter().map(|d| yq(d)).collect();
            let _ = writeln!(s, "      search: [{}]", list.join(", "));
        }
    }
    s
}

/// A YAML scalar, double-quoted (JSON escapes are valid YAML).
fn yq(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// `text` as a YAML block at `indent` spaces, or a quoted scalar when a block
/// could not hold it exactly.
fn yaml_text(text: &str, indent: usize) -> String {
    let first_blank = text.starts_with([' ', '\t']) || text.starts_with('\n');
    if text.is_empty() || first_blank || text.contains('\r') {
        return yq(text);
    }
    let trailing = text.len() - text.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let pad = " ".repeat(indent);
    let mut s = format!("|{chomp}\n");
    for line in text.trim_end_matches('\n').split('\n') {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "{pad}{line}");
        }
    }
    for _ in 1..trailing {
        s.push('\n');
    }
    // The caller's line break ends the last line.
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

/// `user-data` (`#cloud-config`): hostname, SSH host key, the files.
pub fn user_data(role: &RoleFile, files: &[VmFile], ssh_keys: Option<&(String, String)>) -> String {
    let h = &role.host;
    let mut s = String::from("#cloud-config\n");
    let _ = writeln!(
        s,
        "# airlock payload for {} ({}) of cluster {}; generated, do not edit.",
        h.name, h.role, role.cluster
    );
    let _ = writeln!(s, "hostname: {}", yq(&h.name));
    let _ = writeln!(s, "fqdn: {}", yq(&h.fqdn));
    let _ = writeln!(s, "prefer_fqdn_over_hostname: false");
    // /etc/hosts comes from write_files, with every cluster host.
    let _ = writeln!(s, "manage_etc_hosts: false");
    // sources.list belongs to the vendor installer (file:///opt/main, …).
    let _ = writeln!(s, "apt:\n  preserve_sources_list: true");
    if let Some((private, public)) = ssh_keys {
        // Every host key is pinned on the other hosts: cloud-init must
        // install it, not generate a new one.
        let _ = writeln!(s, "ssh_deletekeys: true");
        let _ = writeln!(s, "ssh_keys:");
        let _ = writeln!(s, "  ed25519_private: {}", yaml_text(private, 4));
        let _ = writeln!(s, "  ed25519_public: {}", yq(public));
    }
    let _ = writeln!(s, "write_files:");
    for f in files {
        let _ = writeln!(s, "  - path: {}", yq(&f.path));
        let _ = writeln!(s, "    owner: root:root");
        let _ = writeln!(s, "    permissions: '0{:o}'", f.mode);
        let _ = writeln!(s, "    content: {}", yaml_text(&f.content, 6));
    }
    // No runcmd: the prepared image starts airlock-firstboot.service at
    // every boot, after cloud-init has written these files.
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::plan::{MediaCheck, resolve};
    use crate::build::recipe::{Source, parse};
    use crate::shared::render::{
        apt_sources, ifupdown_config, keepalived_conf, pg_hba_lines, promote_script,
    };

    fn plan_of(text: &str) -> Plan {
        let src = Source {
            path: "t.toml".into(),
            text: text.into(),
        };
        let r = parse(&src).unwrap();
        resolve(&r, &src, MediaCheck::Warn).plan.unwrap()
    }

    const PAIR: &str = r#"version = 1
[cluster]
name = "lab"
domain = "lab.example"
[network]
cidr = "192.0.2.0/24"
gateway = "192.0.2.1"
dns = ["192.0.2.53"]
[database]
vip = "192.0.2.100"
virtual_router_id = 42
user = "dbuser"
[[host]]
name = "db1"
role = "db-master"
ip = "192.0.2.10"
mac = "52:54:00:00:00:10"
[[host]]
name = "db2"
role = "db-replica"
ip = "192.0.2.11"
[[host]]
name = "disp1"
role = "leader"
ip = "192.0.2.20"
"#;

    fn role(text: &str, host: &str) -> RoleFile {
        let plan = plan_of(text);
        let h = plan.host(host).unwrap();
        role_file(&plan, h, "iid".into())
    }

    #[test]
    fn every_secret_file_is_one_diff_masks() {
        // `airlock diff` knows the secret files by path: a new secret file
        // must be added to its list, or its contents would be shown.
        let manager = |n: u8| {
            format!("[[host]]\nname = \"disp{n}\"\nrole = \"manager\"\nip = \"192.0.2.2{n}\"\n")
        };
        let text = format!("{PAIR}{}{}", manager(2), manager(3));
        let plan = plan_of(&text);
        let mut secrets = Secrets::generate("lab").unwrap();
        secrets
            .complete(&plan.cluster, &plan.ssh_hosts(), &mut rand::rngs::OsRng)
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for p in render_all(&plan, &secrets).unwrap() {
            for f in &p.files {
                let rel = f.path.trim_start_matches('/');
                let holds_one = secrets.all().iter().any(|s| f.content.contains(s.trim()));
                assert_eq!(f.secret, holds_one, "{}", f.path);
                if f.secret {
                    assert!(crate::build::diff::SECRET_FILES.contains(&rel), "{rel}");
                    seen.insert(rel.to_string());
                }
            }
        }
        assert_eq!(
            seen.len(),
            crate::build::diff::SECRET_FILES.len(),
            "{seen:?}"
        );
    }

    #[test]
    fn keepalived_promote_mode() {
        let conf = keepalived_conf(&role(PAIR, "db1")).unwrap();
        assert!(conf.contains("    state BACKUP\n    interface eth0\n    virtual_router_id 42\n    priority 150\n    nopreempt\n"), "{conf}");
        assert!(conf.contains("virtual_ipaddress {\n        192.0.2.100/24 dev eth0\n    }"));
        assert!(conf.contains("weight 0"));
        assert!(conf.contains("notify_master \"/etc/airlock/keepalived/promote.sh\""));
        assert!(conf.contains("enable_script_security"));
        assert!(conf.contains("vrrp_garp_master_refresh 60\n"));
        assert!(!conf.contains("unicast"));
        let conf2 = keepalived_conf(&role(PAIR, "db2")).unwrap();
        assert!(conf2.contains("priority 100\n    nopreempt"));
        assert!(conf2.contains("virtual_router_id 42"));
        assert!(keepalived_conf(&role(PAIR, "disp1")).is_none());
    }

    #[test]
    fn keepalived_vip_only_mode_is_the_article() {
        let text = PAIR.replace(
            "user = \"dbuser\"",
            "user = \"dbuser\"\nfailover = \"vip-only\"",
        );
        let conf = keepalived_conf(&role(&text, "db1")).unwrap();
        assert!(conf.contains("state MASTER\n    interface eth0\n    virtual_router_id 42\n    priority 255\n    advert_int 1"), "{conf}");
        assert!(
            !conf.contains("nopreempt")
                && !conf.contains("notify_master")
                && !conf.contains("track_script")
        );
        let conf2 = keepalived_conf(&role(&text, "db2")).unwrap();
        assert!(conf2.contains(
            "state BACKUP\n    interface eth0\n    virtual_router_id 42\n    priority 200\n"
        ));
    }

    #[test]
    fn keepalived_unicast() {
        let text = PAIR.replace("user = \"dbuser\"", "user = \"dbuser\"\nvrrp = \"unicast\"");
        let conf = keepalived_conf(&role(&text, "db2")).unwrap();
        assert!(
            conf.contains(
                "unicast_src_ip 192.0.2.11\n    unicast_peer {\n        192.0.2.10\n    }"
            ),
            "{conf}"
        );
    }

    #[test]
    fn pg_hba_names_the_one_user_for_the_peer() {
        assert_eq!(
            pg_hba_lines(&role(PAIR, "db1")).unwrap(),
            "# airlock: streaming replication between the DB pair\nhost replication dbuser 192.0.2.11/32 md5\n"
        );
        assert!(
            pg_hba_lines(&role(PAIR, "db2"))
                .unwrap()
                .contains("host replication dbuser 192.0.2.10/32 md5")
        );
        assert!(pg_hba_lines(&role(PAIR, "disp1")).is_none());
    }

    #[test]
    fn promotion_and_the_quorum_check_are_the_runners() {
        let s = promote_script(&role(PAIR, "db2"));
        assert!(
            s.ends_with("\nexec /usr/local/sbin/airlock-firstboot promote\n"),
            "{s}"
        );
        let conf = keepalived_conf(&role(PAIR, "db2")).unwrap();
        assert!(conf.contains(
            "vrrp_script chk_quorum {\n    script \"/usr/local/sbin/airlock-firstboot quorum\"\n    interval 1\n    timeout 8\n    fall 1"
        ));
        assert!(conf.contains("track_script {\n        chk_postgres\n        chk_quorum\n    }"));
    }

    #[test]
    fn network_config_by_mac_or_name() {
        assert_eq!(
            network_config(&role(PAIR, "db1").host),
            "version: 2\nethernets:\n  \"eth0\":\n    match:\n      macaddress: \"52:54:00:00:00:10\"\n    set-name: \"eth0\"\n    dhcp4: false\n    addresses:\n      - 192.0.2.10/24\n    gateway4: 192.0.2.1\n    nameservers:\n      addresses: [192.0.2.53]\n      search: [\"lab.example\"]\n"
        );
        let db2 = network_config(&role(PAIR, "db2").host);
        assert!(db2.starts_with("version: 2\nethernets:\n  \"eth0\":\n    dhcp4: false\n"));
    }

    #[test]
    fn ifupdown_for_clones_without_cloud_init() {
        assert_eq!(
            ifupdown_config(&role(PAIR, "db2").host, "eth0"),
            "# airlock: db2 (db-replica). Written by airlock-firstboot when cloud-init did not configure this clone.\nauto eth0\niface eth0 inet static\n    address 192.0.2.11/24\n    gateway 192.0.2.1\n    dns-nameservers 192.0.2.53\n    dns-search lab.example\n"
        );
    }

    #[test]
    fn apt_sources_use_the_bundle_key() {
        assert_eq!(
            apt_sources(&role(PAIR, "db1")).lines().last().unwrap(),
            "deb [signed-by=/etc/apt/trusted.gpg.d/airlock-archive.gpg] file:///opt/airlock/repo 1.7_x86-64 main contrib non-free"
        );
    }

    #[test]
    fn yaml_blocks_keep_text_exactly() {
        assert_eq!(yaml_text("a\nb\n", 2), "|\n  a\n  b");
        assert_eq!(yaml_text("a\n\nb", 2), "|-\n  a\n\n  b");
        assert_eq!(yaml_text("a\n\n", 2), "|+\n  a\n");
        assert_eq!(yaml_text(" lead", 2), "\" lead\"");
    }

    #[test]
    fn instance_id_changes_with_the_host_plan() {
        let a = plan_of(PAIR);
        let b = plan_of(&PAIR.replace("192.0.2.53", "192.0.2.54"));
        let id = |p: &Plan| instance_id(p, p.host("db1").unwrap()).unwrap();
        assert_eq!(id(&a), id(&a));
        assert_ne!(id(&a), id(&b));
        assert!(id(&a).starts_with("airlock-lab-db1-"));
    }

    #[test]
    fn the_plan_converts_to_the_pinned_version_2_role_file() {
        // Renaming a plan field must not change the on-VM format: the demo
        // stand's replica is pinned as it was when version 2 was defined.
        let recipe = crate::build::demo::demo_recipe()
            .replace("rejoin = \"manual\"", "rejoin = \"auto\"")
            .replace("synchronous = false", "synchronous = true");
        let plan = plan_of(&recipe);
        let h = plan.host("spdb2").unwrap();
        let rf = role_file(&plan, h, instance_id(&plan, h).unwrap());
        assert_eq!(
            rf.to_toml().unwrap(),
            include_str!("../../tests/fixtures/role-v2.toml")
        );
    }
}
