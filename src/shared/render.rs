//! The files a VM gets that both wings render: the builder for the seed and
//! the payload, the runner on the clone (when cloud-init did not, and for
//! every file a step owns). One renderer per file, pure (`&RoleFile ->
//! String`), so the two can never disagree.

use std::fmt::Write as _;

use crate::shared::paths;
use crate::shared::role::{Host, RoleFile};

/// `/etc/network/interfaces.d/airlock`: the static address on the NIC
/// `interface`, for a clone that cloud-init did not configure (Astra SE 1.7
/// uses ifupdown).
pub fn ifupdown_config(h: &Host, interface: &str) -> String {
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
        label = paths::REPO_LABEL,
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
        "global_defs {{\n    router_id {}\n    enable_script_security\n    script_user root\n    # After a partition heals, switches may still send the VIP's traffic\n    # to the other side: the master repeats its gratuitous ARP.\n    vrrp_garp_master_refresh 60\n    vrrp_garp_master_refresh_repeat 2\n}}\n",
        role.host.name
    );
    if v.promote {
        let _ = writeln!(
            s,
            "vrrp_script chk_postgres {{\n    script \"{scripts}/pg-ready.sh\"\n    interval 1\n    timeout 2\n    fall 2\n    rise 2\n    weight 0\n}}\n"
        );
        // The split-brain guard (the dispatchers are the witnesses): failing,
        // this server may not hold the VIP. Its own probe (1 s) and then the
        // witnesses' answers (3 s, asked at once) stay inside the timeout:
        // keepalived counts a check it had to kill as failed.
        let _ = writeln!(
            s,
            "vrrp_script chk_quorum {{\n    script \"{} quorum\"\n    interval 1\n    timeout 8\n    fall 1\n    rise 1\n    weight 0\n}}\n",
            paths::RUNNER
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
        let _ = writeln!(
            s,
            "    track_script {{\n        chk_postgres\n        chk_quorum\n    }}"
        );
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

/// keepalived's `notify_master`: this host took the VIP; the runner
/// promotes a local standby when the witnesses agree the primary is gone
/// (see `airlock-firstboot promote --help`), else gives the VIP back.
pub fn promote_script(role: &RoleFile) -> String {
    format!(
        "#!/bin/sh\n# airlock: keepalived notify_master for {} (PostgreSQL {}). This host took\n# the VIP: promote the local standby if the cluster agrees its primary is gone.\n# Logged to syslog with the tag airlock-promote.\nexec {} promote\n",
        role.host.name,
        role.database.postgresql,
        paths::RUNNER
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

/// On a dispatcher, `/etc/sudoers.d/airlock-peer` (0440): the peer user may
/// run exactly [`paths::PEER_SWARM_COMMAND`] as root, nothing else, so that
/// `answer status` can list the swarm's nodes. The docker group would be
/// root in all but name; this is one read-only command line with no
/// argument of the caller's choosing. (In sudoers only `,` `:` `=` `\` need
/// escaping in arguments; none occurs.)
pub fn peer_sudoers() -> String {
    format!(
        "# airlock: the peer user (airlock-firstboot answer status) lists the swarm's\n# nodes: this one read-only command line, exactly, and nothing else.\n{} ALL=(root) NOPASSWD: {}\n",
        paths::PEER_USER,
        paths::PEER_SWARM_COMMAND.join(" ")
    )
}
