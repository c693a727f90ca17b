//! The plan as a table a person reads (what `airlock plan` prints): one
//! summary line per cluster-wide section, then one row per host.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use super::{DatabaseMode, DatabasePlan, Failover, HostPlan, MediaPlan, Plan, Rejoin, VrrpMode};

impl Plan {
    /// The plan as a table a person reads (what `airlock plan` prints).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out);
        out.push('\n');
        write_hosts(&mut out, &self.hosts);
        out
    }

    /// The cluster, network, database, repository and swarm lines.
    fn write_summary(&self, out: &mut String) {
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
        write_database(out, &self.database);
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
        write_sources(out, &self.media);
        let _ = writeln!(
            out,
            "Swarm    leader {} ({}:{}), {} manager(s); managers fetch the join token with `{}`",
            self.swarm.leader,
            self.swarm.leader_ip,
            self.swarm.port,
            self.swarm.managers.len(),
            self.swarm.token_source
        );
    }
}

/// The discs: one line per disc the repository is merged from, in merge
/// order, then the vendor disc.
fn write_sources(out: &mut String, media: &MediaPlan) {
    let sources = media.sources();
    let width = sources
        .iter()
        .map(|(role, _)| role.len())
        .max()
        .unwrap_or(0);
    let shown = |p: Option<&PathBuf>| {
        p.map(|p| p.display().to_string())
            .unwrap_or_else(|| "(not set)".into())
    };
    for (i, (role, path)) in sources.iter().enumerate() {
        let head = if i == 0 { "Sources" } else { "" };
        let _ = writeln!(out, "{head:<8} {role:<width$}  {}", shown(*path));
    }
    if sources.len() > 1 {
        let _ = writeln!(
            out,
            "         (merged into the repository in this order; every version is kept, apt installs the newest)"
        );
    }
    let _ = writeln!(out, "Vendor   {}", shown(media.vendor.as_ref()));
}

/// The database line: a pair with its VIP, or a single server.
fn write_database(out: &mut String, db: &DatabasePlan) {
    match db.mode {
        DatabaseMode::Pair => {
            let _ = writeln!(
                out,
                "Database pair {} + {}, VIP {}:{} (VRRP router id {}, {}), PostgreSQL {}, user {}, failover {}, {} replication, re-join {}",
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
                },
                if db.synchronous {
                    "synchronous"
                } else {
                    "asynchronous"
                },
                match db.rejoin {
                    Rejoin::Manual => "manual",
                    Rejoin::Auto => "auto",
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
}

/// The host table: a header and one row per host, in columns as wide as
/// their widest cell.
fn write_hosts(out: &mut String, hosts: &[HostPlan]) {
    let header = ["HOST", "ROLE", "ADDRESS", "FQDN", "VRRP", "DETAILS"];
    let rows: Vec<[String; 6]> = hosts.iter().map(host_row).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    write_row(out, &widths, &header);
    for row in &rows {
        write_row(out, &widths, &row.each_ref().map(String::as_str));
    }
}

/// One host's cells, in the header's order.
fn host_row(h: &HostPlan) -> [String; 6] {
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
}

/// One line of the table: every cell but the last padded to its column's
/// width, no trailing spaces.
fn write_row(out: &mut String, widths: &[usize], cells: &[&str]) {
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
}

/// `items`, displayed and separated by `sep`.
fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// The DETAILS cell: what the host's PostgreSQL, keepalived and dispatcher
/// do, and its MAC.
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
