//! `status --cluster` for people: one block per host, one summary line per
//! cluster concern (DB, VIP, swarm, runners), then READY or NOT READY with
//! every reason.

use std::fmt::Write as _;

use crate::shared::status::{
    ClusterStatus, DbState, DbView, HostReport, HostStatus, RunnerPhase, SwarmView,
};
use crate::shared::timefmt::rfc2822_utc;

/// The whole report.
pub fn to_text(cs: &ClusterStatus) -> String {
    let mut s = String::new();
    if cs.db.split_brain {
        let _ = writeln!(
            s,
            "*** SPLIT BRAIN: {} all answer as the primary ***\n",
            cs.db.primaries.join(" and ")
        );
    }
    let _ = writeln!(
        s,
        "cluster {}, seen from {} at {}\n",
        cs.cluster,
        cs.asked_from,
        rfc2822_utc(cs.time)
    );
    for h in &cs.hosts {
        host_block(&mut s, h, cs);
    }
    s.push('\n');
    summary(&mut s, cs);
    if cs.ready {
        s.push_str(
            "\nREADY: every runner done, one primary, its standby streaming, the VIP on the primary, every swarm manager reachable\n",
        );
    } else {
        s.push_str("\nNOT READY:\n");
        for why in &cs.not_ready {
            let _ = writeln!(s, "  - {why}");
        }
    }
    s
}

fn host_block(s: &mut String, h: &HostReport, cs: &ClusterStatus) {
    let _ = write!(s, "{} ({}, {}): ", h.name, h.role, h.ip);
    let Some(st) = &h.status else {
        let _ = writeln!(
            s,
            "{}",
            shout_head(h.problem.as_deref().unwrap_or("no answer"))
        );
        return;
    };
    runner_lines(s, st);
    if let Some(db) = &st.db {
        db_lines(s, db, cs);
    }
    if let Some(sw) = &st.swarm {
        swarm_line(s, sw);
    }
}

fn runner_lines(s: &mut String, st: &HostStatus) {
    let r = &st.runner;
    let _ = write!(s, "runner {}", r.phase.as_str());
    if r.steps > 0 {
        let _ = write!(s, " ({} of {} steps)", r.done, r.steps);
    }
    if let (Some(step), true) = (&r.step, r.phase != RunnerPhase::Done) {
        let _ = write!(s, " at step {step}");
    }
    s.push('\n');
    if let Some(w) = &r.waiting_for {
        let since = r
            .waiting_since
            .map(|t| format!(" (for {} s)", st.time - t))
            .unwrap_or_default();
        let _ = writeln!(s, "  waiting for: {w}{since}");
    }
    for (label, text) in [
        ("last attempt", &r.last_attempt),
        ("note", &r.note),
        ("last error", &r.error),
        ("journal", &r.problem),
    ] {
        if r.phase == RunnerPhase::Done {
            break;
        }
        if let Some(t) = text {
            let mut lines = t.lines();
            let _ = writeln!(s, "  {label}: {}", lines.next().unwrap_or(""));
            for l in lines.take(5) {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
}

fn db_lines(s: &mut String, v: &DbView, cs: &ClusterStatus) {
    let Some(state) = &v.state else {
        let _ = writeln!(s, "  DB: {}", v.problem.as_deref().unwrap_or("no state"));
        return;
    };
    if v.stale {
        let _ = writeln!(
            s,
            "  DB state STALE: {} s old (what follows may no longer hold)",
            v.age_secs.unwrap_or(0)
        );
    }
    postgres_line(s, state, cs);
    if let Some(vip) = state.vip {
        let _ = match state.holds_vip {
            Some(true) => writeln!(s, "  VIP {vip}: held here"),
            Some(false) => writeln!(s, "  VIP {vip}: not here"),
            None => writeln!(
                s,
                "  VIP {vip}: cannot tell ({})",
                state.vip_error.as_deref().unwrap_or("?")
            ),
        };
    }
    if let Some(f) = &state.fenced {
        let _ = writeln!(s, "  NOT A PRIMARY: {f}");
    }
    if let Some(t) = state.promoted {
        let _ = writeln!(s, "  promoted by keepalived at {}", rfc2822_utc(t));
    }
}

fn postgres_line(s: &mut String, state: &DbState, cs: &ClusterStatus) {
    let Some(pg) = &state.postgres else {
        let _ = writeln!(
            s,
            "  PostgreSQL does not answer: {}",
            state.postgres_error.as_deref().unwrap_or("?")
        );
        return;
    };
    let tl = pg
        .timeline
        .map(|t| format!(", timeline {t}"))
        .unwrap_or_default();
    if !pg.in_recovery {
        let _ = writeln!(
            s,
            "  PostgreSQL primary{tl}, WAL at {}",
            pg.current_lsn.as_deref().unwrap_or("?")
        );
    } else {
        let recv = pg.wal_receiver.as_ref();
        let _ = writeln!(
            s,
            "  PostgreSQL standby{tl}, WAL receiver {}{}, received {}, replayed {}",
            recv.and_then(|r| r.status.as_deref()).unwrap_or("none"),
            recv.and_then(|r| r.sender_host.as_deref())
                .map(|h| format!(" from {h}"))
                .unwrap_or_default(),
            pg.receive_lsn.as_deref().unwrap_or("-"),
            pg.replay_lsn.as_deref().unwrap_or("-"),
        );
    }
    for r in &pg.replication {
        // The standby by its address; PostgreSQL 12+ names every one
        // `walreceiver`.
        let name = cs
            .hosts
            .iter()
            .find(|h| Some(h.ip.to_string()) == r.client_addr)
            .map(|h| h.name.as_str());
        let _ = writeln!(
            s,
            "    sends to {} ({}): {} {}, lag {}",
            name.or(r.application_name.as_deref()).unwrap_or("?"),
            r.client_addr.as_deref().unwrap_or("?"),
            r.state.as_deref().unwrap_or("?"),
            r.sync_state.as_deref().unwrap_or("?"),
            lag(r.lag_bytes, r.lag_seconds)
        );
    }
}

/// `N bytes / S s` (PostgreSQL leaves the seconds empty once an idle
/// standby has caught up).
fn lag(bytes: Option<i64>, secs: Option<f64>) -> String {
    let b = bytes.map_or("?".to_string(), |b| b.to_string());
    let t = match (secs, bytes) {
        (Some(t), _) => format!("{t:.3}"),
        (None, Some(0)) => "0.000".to_string(),
        (None, _) => "?".to_string(),
    };
    format!("{b} bytes / {t} s")
}

fn swarm_line(s: &mut String, v: &SwarmView) {
    if let Some(e) = &v.error {
        let _ = writeln!(s, "  swarm: cannot list the nodes: {e}");
        return;
    }
    let nodes: Vec<String> = v
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{} {} {}",
                n.hostname,
                n.manager_status.as_deref().unwrap_or("worker"),
                n.status
            )
        })
        .collect();
    let _ = writeln!(s, "  swarm nodes: {}", nodes.join(", "));
}

fn summary(s: &mut String, cs: &ClusterStatus) {
    let db = &cs.db;
    let primary = match db.primaries.as_slice() {
        [] => "none".to_string(),
        [p] => p.clone(),
        many => format!("{} (SPLIT BRAIN)", many.join(" and ")),
    };
    let tl = db
        .timeline
        .map(|t| format!(" (timeline {t})"))
        .unwrap_or_default();
    let standbys: Vec<String> = db
        .standbys
        .iter()
        .map(|sb| {
            if sb.streaming {
                format!(
                    "standby {} streaming, lag {}",
                    sb.name,
                    lag(sb.lag_bytes, sb.lag_seconds)
                )
            } else {
                format!(
                    "standby {} NOT streaming ({})",
                    sb.name,
                    sb.receiver.as_deref().unwrap_or("no WAL receiver")
                )
            }
        })
        .collect();
    let mut line = format!("DB: primary {primary}{tl}");
    for sb in standbys {
        let _ = write!(line, ", {sb}");
    }
    if !db.unknown.is_empty() {
        let _ = write!(line, "; not known: {}", db.unknown.join(", "));
    }
    let _ = writeln!(s, "{line}");
    if let Some(vip) = db.vip {
        let on = match db.vip_on.as_slice() {
            [] if db.unknown.is_empty() => "nobody".to_string(),
            [] => "no DB server known".to_string(),
            v => v.join(" and "),
        };
        let _ = writeln!(s, "VIP: {vip} on {on}");
    }
    swarm_summary_line(s, cs);
    let done = cs
        .hosts
        .iter()
        .filter(|h| {
            h.status
                .as_ref()
                .is_some_and(|st| st.runner.phase == RunnerPhase::Done)
        })
        .count();
    let _ = writeln!(s, "runners: {done} of {} done", cs.hosts.len());
}

fn swarm_summary_line(s: &mut String, cs: &ClusterStatus) {
    let sw = &cs.swarm;
    let Some(source) = &sw.source else {
        let _ = writeln!(s, "swarm: {}", sw.error.as_deref().unwrap_or("not known"));
        return;
    };
    let managers: Vec<String> = sw
        .managers
        .iter()
        .map(|m| {
            format!(
                "{} ({})",
                m.name,
                m.manager_status.as_deref().unwrap_or("not in the swarm")
            )
        })
        .collect();
    let all = sw.managers.iter().all(|m| m.reachable);
    let _ = writeln!(
        s,
        "swarm: managers {}: {} (as {source} lists them)",
        managers.join(", "),
        if all {
            "all reachable"
        } else {
            "NOT all reachable"
        }
    );
}

/// `unreachable: …` → `UNREACHABLE: …` (the words before the colon).
fn shout_head(text: &str) -> String {
    match text.split_once(':') {
        Some((head, rest)) => format!("{}:{rest}", head.to_uppercase()),
        None => text.to_string(),
    }
}
