//! The judgement: from every host's answer (or why there is none), whether
//! the cluster is ready, and if not, why, one sentence each. Pure: the
//! answers in, a [`ClusterStatus`] out.
//!
//! Ready means: every runner done; exactly one DB server answers as the
//! primary (two: SPLIT BRAIN); every other DB server a standby that
//! streams; the VIP on the primary and nowhere else; every dispatcher a
//! reachable swarm manager, and no unreachable manager entry left in the
//! swarm (it counts against the Raft quorum). A DB server whose state is
//! unknown or stale makes the cluster not ready, whatever the others say.

use std::net::Ipv4Addr;

use crate::shared::role::{DatabaseMode, Role, RoleFile};
use crate::shared::status::{
    ClusterStatus, DbState, DbSummary, HostReport, ManagerSummary, RunnerPhase, RunnerStatus,
    STATUS_VERSION, StandbySummary, SwarmNode, SwarmSummary,
};

/// Judges the cluster from `hosts` (every host of the role file, in its
/// order), as seen from `role`'s host at `time`.
pub fn summarize(role: &RoleFile, hosts: Vec<HostReport>, time: i64) -> ClusterStatus {
    let mut not_ready = Vec::new();
    for h in &hosts {
        match (&h.status, &h.problem) {
            (_, Some(p)) => not_ready.push(format!("{}: {p}", h.name)),
            (Some(s), None) => not_ready.extend(runner_problem(&h.name, &s.runner, s.time)),
            (None, None) => not_ready.push(format!("{}: no answer", h.name)),
        }
    }
    let db = db_summary(role, &hosts, &mut not_ready);
    let swarm = swarm_summary(role, &hosts, &mut not_ready);
    ClusterStatus {
        version: STATUS_VERSION,
        cluster: role.cluster.clone(),
        asked_from: role.host.name.clone(),
        time,
        ready: not_ready.is_empty(),
        not_ready,
        hosts,
        db,
        swarm,
    }
}

/// What keeps a runner from done, or nothing.
fn runner_problem(name: &str, r: &RunnerStatus, at: i64) -> Option<String> {
    let step = r.step.as_deref().unwrap_or("?");
    Some(match r.phase {
        RunnerPhase::Done => return None,
        RunnerPhase::NotStarted => format!("{name}: the runner has not started (no journal)"),
        RunnerPhase::Unknown => format!(
            "{name}: its journal cannot be read: {}",
            r.problem.as_deref().unwrap_or("?")
        ),
        RunnerPhase::Waiting => {
            let what = r
                .waiting_for
                .as_deref()
                .or(r.note.as_deref())
                .unwrap_or("?");
            let since = r
                .waiting_since
                .map(|t| format!(" for {} s", at - t))
                .unwrap_or_default();
            let last = r
                .last_attempt
                .as_deref()
                .map(|a| format!("; the last attempt said: {}", first_line(a)))
                .unwrap_or_default();
            format!("{name}: the runner waits at step {step}{since} for {what}{last}")
        }
        RunnerPhase::Failed => format!(
            "{name}: the runner failed at step {step}: {}",
            r.note
                .as_deref()
                .or(r.error.as_deref())
                .map(first_line)
                .unwrap_or("?")
        ),
        RunnerPhase::InProgress => format!(
            "{name}: the runner is at step {step} ({} of {} done)",
            r.done, r.steps
        ),
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn is_db(role: Role) -> bool {
    matches!(role, Role::DbMaster | Role::DbReplica)
}

/// The DB servers' fresh states; the others are named in `not_ready` and
/// listed as unknown.
fn db_states<'a>(
    hosts: &'a [HostReport],
    not_ready: &mut Vec<String>,
) -> (Vec<(&'a HostReport, &'a DbState)>, Vec<String>) {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for h in hosts.iter().filter(|h| is_db(h.role)) {
        let Some(status) = &h.status else {
            unknown.push(h.name.clone());
            continue;
        };
        let Some(view) = &status.db else {
            not_ready.push(format!("{}: its answer has no DB state", h.name));
            unknown.push(h.name.clone());
            continue;
        };
        match (view.fresh(), &view.state) {
            (Some(state), _) => known.push((h, state)),
            (None, Some(_)) => {
                not_ready.push(format!(
                    "{}: its DB state is {} s old, stale (keepalived's check writes it every second as root; is keepalived running?)",
                    h.name,
                    view.age_secs.unwrap_or(0)
                ));
                unknown.push(h.name.clone());
            }
            (None, None) => {
                not_ready.push(format!(
                    "{}: {}",
                    h.name,
                    view.problem.as_deref().unwrap_or("no DB state")
                ));
                unknown.push(h.name.clone());
            }
        }
    }
    (known, unknown)
}

/// Primary, standbys, VIP.
fn db_summary(role: &RoleFile, hosts: &[HostReport], not_ready: &mut Vec<String>) -> DbSummary {
    let (known, unknown) = db_states(hosts, not_ready);
    for (h, s) in &known {
        if s.postgres.is_none() {
            not_ready.push(format!(
                "{}: PostgreSQL does not answer: {}",
                h.name,
                s.postgres_error.as_deref().unwrap_or("?")
            ));
        }
    }
    let in_recovery = |s: &DbState| s.postgres.as_ref().map(|p| p.in_recovery);
    let primaries: Vec<&(&HostReport, &DbState)> = known
        .iter()
        .filter(|(_, s)| in_recovery(s) == Some(false))
        .collect();
    let split_brain = primaries.len() > 1;
    let names = |v: &[&(&HostReport, &DbState)]| -> Vec<String> {
        v.iter().map(|(h, _)| h.name.clone()).collect()
    };
    if split_brain {
        not_ready.insert(
            0,
            format!(
                "SPLIT BRAIN: {} all answer as the primary (writable); writes may go to each and diverge. Keep one: stop PostgreSQL on the others, then `airlock-firstboot rejoin` on each of them",
                names(&primaries).join(" and ")
            ),
        );
    } else if primaries.is_empty() {
        not_ready.push(if unknown.is_empty() {
            "no DB server answers as the primary".to_string()
        } else {
            format!(
                "no DB server answers as the primary (not known: {})",
                unknown.join(", ")
            )
        });
    }
    let primary = (primaries.len() == 1).then(|| primaries[0].1);
    let standbys = known
        .iter()
        .filter(|(_, s)| in_recovery(s) == Some(true))
        .map(|(h, s)| standby(h, s, primary, not_ready))
        .collect();
    let vip = role.database.vip;
    let vip_on = known
        .iter()
        .filter(|(_, s)| s.holds_vip == Some(true))
        .map(|(h, _)| h.name.clone())
        .collect();
    let s = DbSummary {
        primaries: names(&primaries),
        split_brain,
        timeline: primary.and_then(|p| p.postgres.as_ref()?.timeline),
        standbys,
        vip,
        vip_on,
        unknown,
    };
    if role.database.mode == DatabaseMode::Pair {
        vip_problems(&s, &known, not_ready);
    }
    s
}

/// A standby: does it stream, and how far behind the primary is it?
fn standby(
    h: &HostReport,
    s: &DbState,
    primary: Option<&DbState>,
    not_ready: &mut Vec<String>,
) -> StandbySummary {
    let receiver = s.postgres.as_ref().and_then(|p| p.wal_receiver.as_ref());
    let status = receiver.and_then(|r| r.status.clone());
    let streaming = status.as_deref() == Some("streaming");
    let ip = h.ip.to_string();
    let row = primary.and_then(|p| p.postgres.as_ref()).and_then(|p| {
        p.replication
            .iter()
            .find(|r| r.client_addr.as_deref() == Some(&ip))
    });
    if !streaming {
        let fenced = s
            .fenced
            .as_deref()
            .map(|f| format!("; NOT A PRIMARY, {f}: `airlock-firstboot rejoin` on it"))
            .unwrap_or_default();
        not_ready.push(format!(
            "{}: a standby that does not stream (WAL receiver: {}){fenced}",
            h.name,
            status.as_deref().unwrap_or("none")
        ));
    }
    StandbySummary {
        name: h.name.clone(),
        streaming,
        receiver: status,
        timeline: receiver
            .and_then(|r| r.timeline)
            .or_else(|| s.postgres.as_ref()?.timeline),
        lag_bytes: row.and_then(|r| r.lag_bytes),
        lag_seconds: row.and_then(|r| r.lag_seconds),
    }
}

/// The VIP must be on the primary and nowhere else.
fn vip_problems(s: &DbSummary, known: &[(&HostReport, &DbState)], not_ready: &mut Vec<String>) {
    let vip = s.vip.map_or_else(
        || "the VIP".to_string(),
        |v: Ipv4Addr| format!("the VIP {v}"),
    );
    for (h, st) in known.iter().filter(|(_, st)| st.holds_vip.is_none()) {
        not_ready.push(format!(
            "{}: cannot tell whether it holds {vip}: {}",
            h.name,
            st.vip_error.as_deref().unwrap_or("?")
        ));
    }
    match s.vip_on.as_slice() {
        [] if s.unknown.is_empty() => not_ready.push(format!("nobody holds {vip}")),
        [] => not_ready.push(format!(
            "no DB server known holds {vip} (not known: {})",
            s.unknown.join(", ")
        )),
        [one] => {
            if !s.primaries.contains(one) {
                not_ready.push(format!(
                    "{vip} is on {one}, which is not the primary{}: the dispatchers reach a server that cannot take their writes",
                    match s.primaries.as_slice() {
                        [p] => format!(" ({p} is)"),
                        _ => String::new(),
                    }
                ));
            }
        }
        many => not_ready.push(format!("{vip} is on {} at once", many.join(" and "))),
    }
}

/// Every dispatcher a reachable manager, from the first dispatcher that
/// could list the swarm's nodes.
fn swarm_summary(
    role: &RoleFile,
    hosts: &[HostReport],
    not_ready: &mut Vec<String>,
) -> SwarmSummary {
    let dispatchers: Vec<&HostReport> = hosts.iter().filter(|h| h.role.is_dispatcher()).collect();
    let mut why_not = Vec::new();
    let mut source = None;
    for h in &dispatchers {
        match (&h.status, &h.problem) {
            (Some(s), _) => match &s.swarm {
                Some(v) if v.error.is_none() => {
                    source = Some((h.name.clone(), &v.nodes));
                    break;
                }
                Some(v) => {
                    why_not.push(format!("{}: {}", h.name, v.error.as_deref().unwrap_or("?")))
                }
                None => why_not.push(format!("{}: no swarm in its answer", h.name)),
            },
            // Why is on its own line already: only the gist here.
            (None, p) => why_not.push(format!(
                "{}: {}",
                h.name,
                p.as_deref()
                    .and_then(|p| p.split(':').next())
                    .unwrap_or("no answer")
            )),
        }
    }
    let Some((name, nodes)) = source else {
        let error = format!(
            "no dispatcher could list the swarm's nodes ({})",
            why_not.join("; ")
        );
        not_ready.push(format!("swarm: {error}"));
        return SwarmSummary {
            source: None,
            managers: dispatchers.iter().map(|d| manager(d, &[])).collect(),
            error: Some(error),
        };
    };
    let managers: Vec<ManagerSummary> = dispatchers.iter().map(|d| manager(d, nodes)).collect();
    for m in managers.iter().filter(|m| !m.reachable) {
        not_ready.push(match (&m.manager_status, &m.node_status) {
            (None, None) => format!("swarm: {} is not in the swarm", m.name),
            (ms, ns) => format!(
                "swarm: {} is not a reachable manager (manager {}, node {})",
                m.name,
                ms.as_deref().unwrap_or("-"),
                ns.as_deref().unwrap_or("-")
            ),
        });
    }
    for n in nodes
        .iter()
        .filter(|n| n.manager_status.is_some() && !n.reachable_manager())
    {
        let expected = role
            .hosts
            .iter()
            .any(|h| h.role.is_dispatcher() && names_node(&h.name, n));
        let has_live_twin = nodes
            .iter()
            .any(|o| o.hostname == n.hostname && o.reachable_manager());
        if !expected || has_live_twin {
            not_ready.push(format!(
                "swarm: a manager entry for {} is {}/{}: it counts against the Raft quorum (`docker node demote` and `docker node rm` it)",
                n.hostname,
                n.manager_status.as_deref().unwrap_or("-"),
                n.status
            ));
        }
    }
    SwarmSummary {
        source: Some(name),
        managers,
        error: None,
    }
}

/// Docker names a node by its hostname, short or fully qualified.
fn names_node(name: &str, n: &SwarmNode) -> bool {
    n.hostname.split('.').next() == Some(name)
}

/// A dispatcher's entry in the node list: a reachable one if there is one.
fn manager(d: &HostReport, nodes: &[SwarmNode]) -> ManagerSummary {
    let mine: Vec<&SwarmNode> = nodes.iter().filter(|n| names_node(&d.name, n)).collect();
    let best = mine.iter().find(|n| n.reachable_manager()).or(mine.first());
    ManagerSummary {
        name: d.name.clone(),
        manager_status: best.and_then(|n| n.manager_status.clone()),
        node_status: best.map(|n| n.status.clone()),
        reachable: best.is_some_and(|n| n.reachable_manager()),
    }
}
