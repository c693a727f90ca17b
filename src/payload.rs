//! Per-host rendering: everything a VM needs to become its role, as text.
//!
//! Every function here is pure (`&RoleFile -> String`): keepalived.conf, the
//! pg_hba lines, apt sources, `/etc/hosts`, and the cloud-init NoCloud files
//! (`user-data`, `meta-data`, `network-config`). [`render`] gathers them into
//! a [`Payload`]; writing it is the job of [`crate::seed`].

use std::fmt::Write as _;

use anyhow::Result;
use sha2::Digest;

use crate::plan::{HostPlan, Plan};
use crate::recipe::Role;
use crate::role::{RoleFile, paths};
use crate::secrets::Secrets;

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

/// A stable id for a host's whole configuration: it changes when anything
/// the host uses changes, so cloud-init treats a changed plan as new.
pub fn instance_id(plan: &Plan, host: &HostPlan) -> Result<String> {
    let probe = RoleFile::new(plan, host, String::new());
    let text = toml::to_string(&probe)?;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex = crate::repo::hex(&digest[..6]);
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
    let role = RoleFile::new(plan, host, instance_id(plan, host)?);
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
    if let Some(lines) = pg_hba_lines(&role) {
        files.push(VmFile::new(paths::PG_HBA_LINES, 0o644, lines));
    }
    if let Some(conf) = keepalived_conf(&role) {
        files.push(VmFile::new(paths::KEEPALIVED_CONF, 0o644, conf));
        files.push(VmFile::new(
            &format!("{}/pg-ready.sh", paths::KEEPALIVED_SCRIPTS),
            0o755,
            pg_ready_script(&role),
        ));
        if role.host.vrrp.as_ref().is_some_and(|v| v.promote) {
            files.push(VmFile::new(
                &format!("{}/promote.sh", paths::KEEPALIVED_SCRIPTS),
                0o755,
                promote_script(&role),
            ));
        }
    }
    let mut ssh_keys = None;
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
            let host_pub = secrets.leader_host_public()?;
            files.push(VmFile::secret(
                "/etc/ssh/ssh_host_ed25519_key",
                secrets.leader_host_key.clone(),
            ));
            files.push(VmFile::new(
                "/etc/ssh/ssh_host_ed25519_key.pub",
                0o644,
                format!("{host_pub}\n"),
            ));
            ssh_keys = Some((secrets.leader_host_key.clone(), host_pub));
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
    let user_data = user_data(&role, &files, ssh_keys.as_ref());
    Ok(Payload {
        host: host.name.clone(),
        meta_data: meta_data(&role),
        network_config: network_config(&role.host),
        user_data,
        role,
        files,
    })
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
pub fn network_config(h: &HostPlan) -> String {
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

/// `/etc/network/interfaces.d/airlock`: the static address on the NIC
/// `interface`, for a clone that cloud-init did not configure (Astra SE 1.7
/// uses ifupdown).
pub fn ifupdown_config(h: &HostPlan, interface: &str) -> String {
    let mut s = format!(
        "# airlock: {} ({}). Written by airlock-firstboot when cloud-init did not configure this clone.\nauto {i}\niface {i} inet static\n    address {}/{}\n    gateway {}\n",
        h.name,
        h.role,
        h.ip,
        h.prefix,
        h.gateway,
        i = interface
    );
    if !h.dns.is_empty() {
        let list: Vec<String> = h.dns.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(s, "    dns-nameservers {}", list.join(" "));
    }
    if !h.search.is_empty() {
        let _ = writeln!(s, "    dns-search {}", h.search.join(" "));
    }
    s
}

/// `/etc/hosts` naming every host of the cluster.
pub fn etc_hosts(role: &RoleFile) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n");
    let _ = writeln!(s, "127.0.1.1\t{} {}", role.host.fqdn, role.host.name);
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    let _ = writeln!(s, "\n# cluster {} (airlock)", role.cluster);
    for h in &role.hosts {
        let _ = writeln!(s, "{}\t{} {}", h.ip, h.fqdn, h.name);
    }
    s
}

/// The local repository for apt, checked against the bundle's key.
pub fn apt_sources(role: &RoleFile) -> String {
    let r = &role.repository;
    format!(
        "# The cluster's signed repository (airlock). The vendor installer also\n# writes file:///opt/main and file:///opt/devel lines; both point here.\ndeb [signed-by={}] file://{} {} {}\n",
        r.trusted_keyring,
        r.root,
        r.suite,
        r.components.join(" ")
    )
}

/// `/etc/apt/apt.conf.d/50airlock`. The repository's Release is dated at
/// build time, and apt refuses a Release dated more than 10 s in its future
/// ("not valid yet"): an air-gapped VM whose clock is behind the build
/// machine's could not install anything. This allows it for the cluster's
/// repository only (by its Label; apt >= 1.8).
pub fn apt_conf() -> String {
    format!(
        "// airlock: accept the cluster's repository (Label \"{label}\") even when this\n// VM's clock is behind the machine that built and signed it.\nAcquire::Max-FutureTime::{label} \"{secs}\";\n",
        label = crate::plan::REPO_LABEL,
        secs = 10 * 366 * 24 * 3600
    )
}

/// pg_hba.conf replication lines: the one DB user, from the peer, md5 (so
/// either side can follow the other after a failover).
pub fn pg_hba_lines(role: &RoleFile) -> Option<String> {
    let pg = role.host.postgres.as_ref()?;
    if pg.replication_peers.is_empty() {
        return None;
    }
    let mut s = String::from("# airlock: streaming replication between the DB pair\n");
    for peer in &pg.replication_peers {
        let _ = writeln!(s, "host replication {} {peer}/32 md5", pg.user);
    }
    Some(s)
}

/// keepalived.conf for a DB host of a pair. Both peers get the same
/// `virtual_router_id`: there is only one in the plan.
///
/// `promote` (default): both `state BACKUP` with `nopreempt` (150/100), a
/// `pg_isready` track script with weight 0 (a dead PostgreSQL gives up the
/// VIP), and a `notify_master` script that promotes a local standby. The "is
/// it a standby" test stays in that script: as a track script it would keep
/// the standby in FAULT and it could never take over (keepalived 2.2).
///
/// `vip-only`: the article's MASTER 255 / BACKUP 200, nothing promoted.
pub fn keepalived_conf(role: &RoleFile) -> Option<String> {
    let v = role.host.vrrp.as_ref()?;
    let scripts = paths::KEEPALIVED_SCRIPTS;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# keepalived for {} ({}), cluster {}: written by airlock.\n# Both DB servers use virtual_router_id {}.",
        role.host.name, role.host.role, role.cluster, v.virtual_router_id
    );
    let _ = writeln!(
        s,
        "global_defs {{\n    router_id {}\n    enable_script_security\n    script_user root\n}}\n",
        role.host.name
    );
    if v.promote {
        let _ = writeln!(
            s,
            "vrrp_script chk_postgres {{\n    script \"{scripts}/pg-ready.sh\"\n    interval 1\n    timeout 2\n    fall 2\n    rise 2\n    weight 0\n}}\n"
        );
        // PostgreSQL's unit writes 1 here when the server stops or dies and
        // 0 when it has started; keepalived sees the change at once.
        let _ = writeln!(
            s,
            "vrrp_track_file pg_down {{\n    file \"{}\"\n    weight 0\n}}\n",
            paths::PG_DOWN
        );
    }
    let _ = writeln!(s, "vrrp_instance airlock_db {{");
    let _ = writeln!(s, "    state {}", v.state);
    let _ = writeln!(s, "    interface {}", v.interface);
    let _ = writeln!(s, "    virtual_router_id {}", v.virtual_router_id);
    let _ = writeln!(s, "    priority {}", v.priority);
    if v.nopreempt {
        let _ = writeln!(s, "    nopreempt");
    }
    let _ = writeln!(s, "    advert_int 1");
    if v.unicast {
        let _ = writeln!(s, "    unicast_src_ip {}", role.host.ip);
        let _ = writeln!(s, "    unicast_peer {{\n        {}\n    }}", v.peer.ip);
    }
    let _ = writeln!(
        s,
        "    virtual_ipaddress {{\n        {}/{} dev {}\n    }}",
        v.vip, v.prefix, v.interface
    );
    if v.promote {
        let _ = writeln!(s, "    track_script {{\n        chk_postgres\n    }}");
        let _ = writeln!(s, "    track_file {{\n        pg_down\n    }}");
        let _ = writeln!(s, "    notify_master \"{scripts}/promote.sh\"");
    }
    s.push_str("}\n");
    Some(s)
}

/// keepalived's health check: does the local PostgreSQL accept connections?
pub fn pg_ready_script(role: &RoleFile) -> String {
    let port = role.database.port;
    format!(
        "#!/bin/sh\n# airlock: keepalived health check. Exit 0 when the local PostgreSQL accepts\n# connections (on its socket).\nexec pg_isready -q -h /var/run/postgresql -p {port} -t 2\n"
    )
}

/// keepalived's `notify_master`: this host took the VIP; if its PostgreSQL is
/// a standby, promote it (PostgreSQL 11 has no `pg_promote()`).
pub fn promote_script(role: &RoleFile) -> String {
    let port = role.database.port;
    let major = role.database.postgresql;
    let promote = if major >= 12 {
        "psql_as_postgres -c 'SELECT pg_promote()'".to_string()
    } else {
        format!("pg_ctlcluster {major} main promote")
    };
    format!(
        r#"#!/bin/sh
# airlock: keepalived notify_master. This host now holds the VIP: when the
# local PostgreSQL {major} is a standby, promote it, so the VIP never points at
# a read-only server. Logged to syslog with the tag airlock-promote.
set -u
export PGHOST=/var/run/postgresql
psql_as_postgres() {{
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- psql -X -A -t -q -p {port} "$@"
    else
        psql -X -A -t -q -p {port} "$@"
    fi
}}
log() {{ logger -t airlock-promote "$*" 2>/dev/null; echo "airlock-promote: $*" >&2; }}
if [ -e {fenced} ]; then
    log "this server was kept read-only because its peer was the primary ({fenced}): not promoting it; see airlock-firstboot status"
    exit 1
fi
state=$(psql_as_postgres -c 'SELECT pg_is_in_recovery()' 2>&1) || {{ log "cannot ask PostgreSQL whether it is a standby: $state"; exit 1; }}
case "$state" in
    t) log "took the VIP as a standby: promoting"
       {promote} >/dev/null || {{ log "promotion failed"; exit 1; }}
       mkdir -p "$(dirname {promoted})" && date +%s > {promoted}
       log "promoted" ;;
    f) log "took the VIP as the primary: nothing to do" ;;
    *) log "unexpected answer from PostgreSQL: $state"; exit 1 ;;
esac
"#,
        fenced = paths::FENCED,
        promoted = paths::PROMOTED
    )
}

/// The unit that runs the runner at every boot (a complete role is checked
/// in a second and left alone).
///
/// Ordering: after cloud-init.service, whose init stage writes the seed's
/// files, the hostname and the SSH host keys (not after cloud-final or
/// cloud-init.target, which Debian orders after multi-user.target: with
/// `WantedBy=multi-user.target` that is a cycle, and systemd drops a job at
/// boot; nor after cloud-config, which the role does not need and which can
/// hang for ever, its timeout being infinite), and after the services the
/// steps restart, so the vendor installer's restart does not race their
/// start at boot.
/// `Type=simple`: the role may take many minutes and must not hold up
/// multi-user.target. No condition: a clone without a seed finds itself in
/// the prepared inventory.
pub fn systemd_unit() -> String {
    format!(
        "[Unit]\nDescription=airlock: make this clone its cluster role\nDocumentation=man:airlock-firstboot(1)\nWants=network-online.target\nAfter=network-online.target cloud-init.service\nAfter=postgresql.service keepalived.service docker.service ssh.service\n\n[Service]\nType=simple\nExecStart={runner} run\nRemainAfterExit=yes\n# \"will retry\" (exit 75) restarts it after a pause; \"failed\" (1) and\n# usage errors (2) stop until the next boot or a person runs it again.\nRestart=on-failure\nRestartSec=30\nRestartPreventExitStatus=1 2\n\n[Install]\nWantedBy=multi-user.target\n",
        runner = paths::RUNNER
    )
}

/// The drop-in for PostgreSQL's cluster units (`postgresql@.service`): the
/// guard runs before every start of a cluster, so an old master that comes
/// back after a failover starts read-only.
///
/// It also tells keepalived at once when the server stops or dies (systemd
/// sees the postmaster exit): [`paths::PG_DOWN`] holds 1 while it is down.
pub fn pg_guard_dropin() -> String {
    format!(
        "# airlock: a DB server whose peer is the primary never starts writable,\n# and keepalived learns at once when this server stops or dies.\n[Service]\nExecStartPre={runner} pg-guard %i\nExecStartPost=-/bin/sh -c 'echo 0 > {down}'\nExecStopPost=-/bin/sh -c 'echo 1 > {down}'\n",
        runner = paths::RUNNER,
        down = paths::PG_DOWN
    )
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
        // The leader's host key is pinned on the managers: cloud-init must
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
    use crate::plan::{MediaCheck, resolve};
    use crate::recipe::{Source, parse};

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
        RoleFile::new(&plan, h, "iid".into())
    }

    #[test]
    fn keepalived_promote_mode() {
        let conf = keepalived_conf(&role(PAIR, "db1")).unwrap();
        assert!(conf.contains("    state BACKUP\n    interface eth0\n    virtual_router_id 42\n    priority 150\n    nopreempt\n"), "{conf}");
        assert!(conf.contains("virtual_ipaddress {\n        192.0.2.100/24 dev eth0\n    }"));
        assert!(conf.contains("weight 0"));
        assert!(conf.contains("notify_master \"/etc/airlock/keepalived/promote.sh\""));
        assert!(conf.contains("enable_script_security"));
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
    fn promote_follows_the_postgresql_major() {
        assert!(promote_script(&role(PAIR, "db2")).contains("pg_ctlcluster 11 main promote"));
        let text = PAIR.replace("user = \"dbuser\"", "user = \"dbuser\"\npostgresql = 15");
        let s = promote_script(&role(&text, "db2"));
        assert!(s.contains("SELECT pg_promote()") && !s.contains("pg_ctlcluster"));
    }

    #[test]
    fn network_config_by_mac_or_name() {
        let plan = plan_of(PAIR);
        assert_eq!(
            network_config(plan.host("db1").unwrap()),
            "version: 2\nethernets:\n  \"eth0\":\n    match:\n      macaddress: \"52:54:00:00:00:10\"\n    set-name: \"eth0\"\n    dhcp4: false\n    addresses:\n      - 192.0.2.10/24\n    gateway4: 192.0.2.1\n    nameservers:\n      addresses: [192.0.2.53]\n      search: [\"lab.example\"]\n"
        );
        let db2 = network_config(plan.host("db2").unwrap());
        assert!(db2.starts_with("version: 2\nethernets:\n  \"eth0\":\n    dhcp4: false\n"));
    }

    #[test]
    fn ifupdown_for_clones_without_cloud_init() {
        let plan = plan_of(PAIR);
        assert_eq!(
            ifupdown_config(plan.host("db2").unwrap(), "eth0"),
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
}
