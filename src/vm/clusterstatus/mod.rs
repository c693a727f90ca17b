//! One status for the whole cluster: `airlock-firstboot status --cluster`
//! on any host asks every other host `status` over the peer channel
//! ([`crate::vm::peer`]), at once and for a bounded time, takes its own
//! status locally, and judges the cluster ready or not ([`verdict`]).
//!
//! **How the unprivileged peer user learns root-only facts.** `answer
//! status` runs as the peer user (the forced command of its SSH key), who
//! may read the role file (through its group), the journal (0644) and
//! nothing secret. It answers:
//! - the runner's state from the journal;
//! - on a DB server, the DB state from [`paths::DB_STATE`], which root
//!   writes every second ([`write_db_state`], called by keepalived's check,
//!   which already runs as root every second): PostgreSQL asked as
//!   postgres, whether this host holds the VIP, the fence and promotion
//!   records. The peer user gets no right to PostgreSQL, the DB password or
//!   the network configuration; it reads a world-readable file of facts
//!   with no secret, and says how old it is (older than
//!   [`crate::shared::status::DB_STATE_STALE_SECS`] seconds: stale, and said so);
//! - on a dispatcher, the swarm's nodes from `docker node ls`, which needs
//!   the Docker socket. Nothing of airlock runs as root on a dispatcher
//!   after its role is done, so there is no one to write a state file; the
//!   docker group would be root in all but name. Instead a sudoers line
//!   (`/etc/sudoers.d/airlock-peer`, written by the `peer-user` step)
//!   lets the peer user run exactly `/usr/bin/docker node ls --format
//!   {{json .}}` as root: read-only, no argument of its choosing.
//!
//! `status --cluster` itself runs as root (it needs the peer key), so for
//! its own host it asks PostgreSQL and docker directly.

mod text;
pub(crate) mod verdict;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::shared::journal::{Journal, now};
use crate::shared::paths;
use crate::shared::role::{Role, RoleFile};
use crate::shared::status::{
    ClusterStatus, DbState, DbView, HostReport, HostStatus, PgFacts, RunnerPhase, RunnerStatus,
    STATUS_VERSION, SwarmNode, SwarmView,
};
use crate::shared::writer::{RootWriter, Writer};
use crate::vm::engine::under;
use crate::vm::exec::{Cmd, Exec};

pub use text::to_text;

/// How long `docker node ls` may take: within the bound of a question
/// ([`crate::vm::peer::STATUS_BOUND_SECS`], SSH included), so a slow docker is
/// reported as such, not as an unreachable host.
pub const DOCKER_BOUND_SECS: u64 = 2;
/// How long the local PostgreSQL may take to answer (keepalived's check
/// runs every second; a query on the local socket takes milliseconds).
pub const PSQL_BOUND_SECS: u64 = 1;

/// Everything [`PgFacts`] holds, in one query, as one JSON object. Works on
/// PostgreSQL 11 to 16: `pg_stat_wal_receiver.sender_host` is from 11; its
/// LSN columns were renamed in 13, so the LSNs come from functions.
const PG_FACTS_SQL: &str = "\
SELECT json_build_object(\
 'in_recovery', pg_is_in_recovery(),\
 'timeline', (SELECT timeline_id FROM pg_control_checkpoint()),\
 'current_lsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,\
 'receive_lsn', pg_last_wal_receive_lsn()::text,\
 'replay_lsn', pg_last_wal_replay_lsn()::text,\
 'replication', (SELECT coalesce(json_agg(json_build_object(\
   'application_name', application_name,\
   'client_addr', host(client_addr),\
   'state', state,\
   'sync_state', sync_state,\
   'replay_lsn', replay_lsn::text,\
   'lag_bytes', pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, replay_lsn)::bigint,\
   'lag_seconds', extract(epoch FROM replay_lag)::float8\
  ) ORDER BY application_name), '[]'::json) FROM pg_stat_replication),\
 'wal_receiver', (SELECT json_build_object(\
   'status', status, 'timeline', received_tli, 'sender_host', sender_host, 'slot_name', slot_name\
  ) FROM pg_stat_wal_receiver)\
)";

/// Writes [`paths::DB_STATE`] (0644, in a 0755 directory): this DB
/// server's PostgreSQL as postgres sees it, whether it holds the VIP, its
/// fence and promotion records, and the time. Meant for a root process that
/// runs every second (keepalived's check); it takes at most
/// [`PSQL_BOUND_SECS`] and always writes a state, also when PostgreSQL does
/// not answer (that is a fact too). An error only when the file cannot be
/// written.
// until keepalived's check (crate::vm::quorum) calls it
pub fn write_db_state(root: &Path, exec: &dyn Exec, role: &RoleFile) -> Result<()> {
    let state = db_state(root, exec, role);
    let text = serde_json::to_string(&state)?;
    RootWriter::new(root)
        .write(
            paths::DB_STATE.trim_start_matches('/'),
            format!("{text}\n").as_bytes(),
            0o644,
        )
        .with_context(|| format!("writing {}", paths::DB_STATE))?;
    Ok(())
}

/// This DB server's state, now (as root).
pub fn db_state(root: &Path, exec: &dyn Exec, role: &RoleFile) -> DbState {
    let (postgres, postgres_error) = match pg_facts(exec, role) {
        Ok(f) => (Some(f), None),
        Err(why) => (None, Some(why)),
    };
    let vip = role.database.vip;
    let (holds_vip, vip_error) = match vip.map(|v| holds(exec, v)) {
        None => (None, None),
        Some(Ok(yes)) => (Some(yes), None),
        Some(Err(why)) => (None, Some(why)),
    };
    DbState {
        version: STATUS_VERSION,
        host: role.host.name.clone(),
        written: now(),
        postgres,
        postgres_error,
        vip,
        holds_vip,
        vip_error,
        fenced: crate::vm::guard::Fence::load(root).map(|f| {
            format!(
                "kept read-only since {}: its peer {} ({}) was the primary ({})",
                crate::shared::timefmt::rfc2822_utc(f.since),
                f.peer,
                f.peer_ip,
                f.reason
            )
        }),
        promoted: crate::vm::guard::promoted(root),
    }
}

/// The local PostgreSQL, asked as postgres, bounded.
fn pg_facts(exec: &dyn Exec, role: &RoleFile) -> std::result::Result<PgFacts, String> {
    let cmd = crate::vm::roles::db::psql_local_cmd(role, PG_FACTS_SQL)
        .bounded(PSQL_BOUND_SECS)
        .env("PGCONNECT_TIMEOUT", "1");
    let out = exec.output(&cmd).map_err(|e| format!("{e:#}"))?;
    if out.code == Some(124) {
        return Err(format!("no answer within {PSQL_BOUND_SECS} s"));
    }
    if !out.success() {
        return Err(last_words(&out.stderr, &out.stdout));
    }
    serde_json::from_str(out.stdout.trim()).map_err(|e| {
        format!(
            "PostgreSQL's answer cannot be read ({e}): {:?}",
            out.stdout.chars().take(80).collect::<String>()
        )
    })
}

/// Whether an address of this host is `vip` (`ip -o -4 addr show`).
fn holds(exec: &dyn Exec, vip: Ipv4Addr) -> std::result::Result<bool, String> {
    let out = exec
        .output(&Cmd::new("ip").args(["-o", "-4", "addr", "show"]))
        .map_err(|e| format!("{e:#}"))?;
    if !out.success() {
        return Err(last_words(&out.stderr, &out.stdout));
    }
    let want = format!("{vip}/");
    Ok(out.stdout.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.any(|w| w == "inet") && words.next().is_some_and(|a| a.starts_with(&want))
    }))
}

/// What a command said (stderr, else stdout), its lines joined, for a
/// reason (psql says what failed on one line and why on the next).
fn last_words(stderr: &str, stdout: &str) -> String {
    let said = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let words: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if words.is_empty() {
        return "it said nothing".into();
    }
    let mut text = words.join(" ");
    if text.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The DB state as the peer user reads it: the state file, with its age.
fn db_view_from_file(root: &Path, at: i64) -> DbView {
    let path = under(root, paths::DB_STATE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return DbView::missing(format!(
                "no DB state: {} is written every second by keepalived's check (as root); is keepalived running?",
                paths::DB_STATE
            ));
        }
        Err(e) => return DbView::missing(format!("cannot read {}: {e}", paths::DB_STATE)),
    };
    match serde_json::from_str::<DbState>(&text) {
        Ok(s) if s.version == STATUS_VERSION => DbView::of(s, at),
        Ok(s) => DbView::missing(format!(
            "{} is version {}, this runner reads {STATUS_VERSION}",
            paths::DB_STATE,
            s.version
        )),
        Err(e) => DbView::missing(format!("{} cannot be read: {e}", paths::DB_STATE)),
    }
}

/// The runner's state from the journal.
fn runner_status(root: &Path) -> RunnerStatus {
    match Journal::load(&under(root, paths::JOURNAL)) {
        Ok(j) => RunnerStatus::from_journal(j.as_ref()),
        Err(e) => RunnerStatus::unknown(RunnerPhase::Unknown, Some(format!("{e:#}"))),
    }
}

/// The swarm's nodes, as this dispatcher's docker lists them: directly as
/// root, else through the one sudo rule the peer user has.
fn swarm_view(exec: &dyn Exec, privileged: bool) -> SwarmView {
    let mut cmd = Cmd::new("timeout").arg(DOCKER_BOUND_SECS.to_string());
    if !privileged {
        cmd = cmd.args(["sudo", "-n"]);
    }
    let cmd = cmd.args(paths::PEER_SWARM_COMMAND);
    let failed = |why: String| SwarmView {
        nodes: Vec::new(),
        error: Some(why),
    };
    let out = match exec.output(&cmd) {
        Ok(o) => o,
        Err(e) => return failed(format!("{e:#}")),
    };
    if out.code == Some(124) {
        return failed(format!(
            "docker did not answer within {DOCKER_BOUND_SECS} s"
        ));
    }
    if !out.success() {
        let mut why = last_words(&out.stderr, &out.stdout);
        if !privileged && why.contains("sudo") {
            why.push_str(&format!(
                " (the peer user may run `{}` through {}, which the peer-user step writes where sudo is installed)",
                paths::PEER_SWARM_COMMAND.join(" "),
                paths::PEER_SUDOERS
            ));
        }
        return failed(why);
    }
    match parse_nodes(&out.stdout) {
        Ok(nodes) => SwarmView { nodes, error: None },
        Err(e) => failed(format!("{e:#}")),
    }
}

/// `docker node ls --format '{{json .}}'`: one object a line.
fn parse_nodes(text: &str) -> Result<Vec<SwarmNode>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Line {
        hostname: String,
        status: String,
        availability: String,
        #[serde(default)]
        manager_status: String,
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let n: Line =
                serde_json::from_str(l).with_context(|| format!("docker node ls printed {l:?}"))?;
            Ok(SwarmNode {
                hostname: n.hostname,
                status: n.status,
                availability: n.availability,
                manager_status: (!n.manager_status.is_empty()).then_some(n.manager_status),
            })
        })
        .collect()
}

/// This host's status. `privileged` (root): PostgreSQL and docker are asked
/// directly; otherwise (the peer user) the DB state file and the one sudo
/// rule.
pub fn local_status(root: &Path, exec: &dyn Exec, role: &RoleFile, privileged: bool) -> HostStatus {
    let at = now();
    let is_db = matches!(role.host.role, Role::DbMaster | Role::DbReplica);
    let db = is_db.then(|| {
        if privileged {
            // Asked just now: as old as it can be, 0 s (its `written` may
            // be a second past `at`).
            let state = db_state(root, exec, role);
            let written = state.written;
            DbView::of(state, written)
        } else {
            db_view_from_file(root, at)
        }
    });
    let swarm = role
        .host
        .role
        .is_dispatcher()
        .then(|| swarm_view(exec, privileged));
    HostStatus {
        version: STATUS_VERSION,
        cluster: role.cluster.clone(),
        host: role.host.name.clone(),
        role: role.host.role,
        time: at,
        runner: runner_status(root),
        db,
        swarm,
    }
}

/// `answer status`: this host's status as the peer user may learn it, one
/// line of JSON ([`HostStatus`]).
pub fn answer_status(root: &Path, exec: &dyn Exec, role: &RoleFile) -> String {
    local_status(root, exec, role, false).to_line()
}

/// `status --cluster` (as root): asks every other host at once, each
/// bounded by [`crate::vm::peer::STATUS_BOUND_SECS`], takes this host's own status meanwhile,
/// and judges.
pub fn cluster_status(root: &Path, exec: &dyn Exec, role: &RoleFile) -> ClusterStatus {
    let others: Vec<(String, Ipv4Addr)> = role
        .hosts
        .iter()
        .filter(|h| h.name != role.host.name)
        .map(|h| (h.name.clone(), h.ip))
        .collect();
    let (mine, answers) = std::thread::scope(|s| {
        let mine = s.spawn(|| local_status(root, exec, role, true));
        let answers = crate::vm::peer::ask_all_within(
            exec,
            root,
            &others,
            "status",
            crate::vm::peer::STATUS_BOUND_SECS,
        );
        (mine.join(), answers)
    });
    let mut mine = Some(mine.unwrap_or_else(|p| std::panic::resume_unwind(p)));
    let mut answers: BTreeMap<String, Result<String>> = answers.into_iter().collect();
    let hosts = role
        .hosts
        .iter()
        .map(|h| {
            let (status, problem) = if h.name == role.host.name {
                (mine.take(), None)
            } else {
                judge_answer(role, &h.name, answers.remove(&h.name))
            };
            HostReport {
                name: h.name.clone(),
                role: h.role,
                ip: h.ip,
                status,
                problem,
            }
        })
        .collect();
    verdict::summarize(role, hosts, now())
}

/// An answer, or why there is none: unreachable (with the reason), or
/// refused (garbled, another version, another host).
fn judge_answer(
    role: &RoleFile,
    name: &str,
    answer: Option<Result<String>>,
) -> (Option<HostStatus>, Option<String>) {
    let line = match answer {
        Some(Ok(line)) => line,
        Some(Err(e)) => return (None, Some(unanswered(&e))),
        None => return (None, Some("unreachable: not asked".into())),
    };
    match HostStatus::parse(&line) {
        Ok(s) if s.host == name && s.cluster == role.cluster => (Some(s), None),
        Ok(s) => (
            None,
            Some(format!(
                "its answer refused: it answered as {} of cluster {}",
                s.host, s.cluster
            )),
        ),
        Err(e) => (None, Some(format!("its answer refused: {e:#}"))),
    }
}

/// Why a host did not answer, in a few words: `ask` failed with the whole
/// SSH command line; the bound (timeout's 124), what SSH said (its own
/// failures are 255: `unreachable`) or what the answering command said
/// (`cannot answer`, e.g. a runner without the `status` question) is enough.
fn unanswered(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.rsplit_once(" failed ("))
        .map(|(_, s)| s.trim_end_matches(':').trim_end_matches(')').to_string());
    let said: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    match status.as_deref() {
        Some("exit status 124") => format!(
            "unreachable: no answer within {} s",
            crate::vm::peer::STATUS_BOUND_SECS
        ),
        Some(st) if !said.is_empty() => {
            let what = if st == "exit status 255" {
                "unreachable"
            } else {
                "cannot answer"
            };
            format!("{what}: {} ({st})", said.join("; "))
        }
        _ => format!("unreachable: {text}"),
    }
}

#[cfg(test)]
mod tests;
