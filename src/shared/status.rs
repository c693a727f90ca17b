//! The cluster's status, as the hosts tell it to each other: the contract
//! between `airlock-firstboot answer status` on one host and
//! `airlock-firstboot status --cluster` on another, and the DB servers'
//! state file.
//!
//! Three formats, all JSON, all versioned by [`STATUS_VERSION`] and strict
//! (an unknown field is refused: a new field is a new version):
//!
//! - [`DbState`]: `/run/airlock/db-state.json` on a DB server, written by
//!   root (keepalived's check, every second) so the unprivileged peer user
//!   can report facts only root can learn;
//! - [`HostStatus`]: one host's answer to the `status` question, one line;
//! - [`ClusterStatus`]: what `status --cluster --json` prints.
//!
//! Times are seconds since the epoch, each on the clock of the host that
//! wrote them; ages are computed on that same host, so no two clocks are
//! ever compared.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::shared::journal::{Journal, StepState};
use crate::shared::paths::SWARM_TOKEN_PREFIX;
use crate::shared::role::Role;

/// The version of all three formats.
pub const STATUS_VERSION: u32 = 1;

/// A [`DbState`] older than this (seconds) is stale: whatever writes it
/// every second has stopped.
pub const DB_STATE_STALE_SECS: i64 = 5;

/// Where the runner stands on one host, from its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerPhase {
    /// No journal: the runner never ran.
    NotStarted,
    /// A step runs (or the runner was stopped in the middle of one).
    InProgress,
    /// A step waits for something (another host, a service).
    Waiting,
    /// A step failed; the runner stopped.
    Failed,
    /// Every step is done.
    Done,
    /// The journal could not be read (`problem` says why).
    Unknown,
}

impl RunnerPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerPhase::NotStarted => "not started",
            RunnerPhase::InProgress => "in progress",
            RunnerPhase::Waiting => "waiting",
            RunnerPhase::Failed => "failed",
            RunnerPhase::Done => "done",
            RunnerPhase::Unknown => "unknown",
        }
    }
}

/// The runner's state on one host (`HostStatus.runner`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerStatus {
    pub phase: RunnerPhase,
    /// The step that failed, waits or runs, else the first one not done
    /// (absent when every step is done).
    pub step: Option<String>,
    /// That step's note: why it failed, what it waits for.
    pub note: Option<String>,
    /// What the runner waits for, while it waits.
    pub waiting_for: Option<String>,
    /// Since when.
    pub waiting_since: Option<i64>,
    /// What the last attempt of the wait said.
    pub last_attempt: Option<String>,
    /// The last error, whole.
    pub error: Option<String>,
    /// Steps done, of `steps`.
    pub done: usize,
    pub steps: usize,
    /// When the journal was last written.
    pub updated: Option<i64>,
    /// Why the journal could not be read (phase `unknown`).
    pub problem: Option<String>,
}

impl RunnerStatus {
    /// From the journal (`None`: there is none yet). Swarm join tokens in
    /// its texts are masked.
    pub(crate) fn from_journal(j: Option<&Journal>) -> RunnerStatus {
        let Some(j) = j else {
            return RunnerStatus::unknown(RunnerPhase::NotStarted, None);
        };
        // The step that failed or waits, else the first one not done.
        let current = j
            .steps
            .iter()
            .find(|s| {
                matches!(
                    s.state,
                    StepState::Failed | StepState::Waiting | StepState::Running
                )
            })
            .or_else(|| j.steps.iter().find(|s| s.state != StepState::Done));
        let phase = if j.complete() {
            RunnerPhase::Done
        } else if j.steps.iter().any(|s| s.state == StepState::Failed) {
            RunnerPhase::Failed
        } else if j.waiting_for.is_some() || j.steps.iter().any(|s| s.state == StepState::Waiting) {
            RunnerPhase::Waiting
        } else {
            RunnerPhase::InProgress
        };
        let masked = |s: &Option<String>| s.as_deref().map(mask_tokens);
        RunnerStatus {
            phase,
            step: current.map(|s| s.name.clone()),
            note: current.and_then(|s| masked(&s.note)),
            waiting_for: masked(&j.waiting_for),
            waiting_since: j.waiting_since,
            last_attempt: masked(&j.last_attempt),
            error: masked(&j.last_error),
            done: j
                .steps
                .iter()
                .filter(|s| s.state == StepState::Done)
                .count(),
            steps: j.steps.len(),
            updated: Some(j.updated),
            problem: None,
        }
    }

    /// A runner whose journal says nothing (`phase` not-started or unknown).
    pub fn unknown(phase: RunnerPhase, problem: Option<String>) -> RunnerStatus {
        RunnerStatus {
            phase,
            step: None,
            note: None,
            waiting_for: None,
            waiting_since: None,
            last_attempt: None,
            error: None,
            done: 0,
            steps: 0,
            updated: None,
            problem,
        }
    }
}

/// Replaces every Docker Swarm join token in `text` by `SWMTKN-1-***` (a
/// failed vendor installer's output may hold one).
pub fn mask_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(SWARM_TOKEN_PREFIX) {
        let after = &rest[at + SWARM_TOKEN_PREFIX.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(after.len());
        out.push_str(&rest[..at]);
        out.push_str(SWARM_TOKEN_PREFIX);
        out.push_str("***");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// One row of `pg_stat_replication` on a primary: a standby it sends WAL to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationRow {
    pub application_name: Option<String>,
    /// The standby's address.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, `startup`, …
    pub state: Option<String>,
    /// `async`, `sync`, `potential`, `quorum`.
    pub sync_state: Option<String>,
    /// What the standby has replayed.
    pub replay_lsn: Option<String>,
    /// The primary's current WAL position minus `replay_lsn`.
    pub lag_bytes: Option<i64>,
    /// `replay_lag`, seconds (PostgreSQL leaves it empty once an idle
    /// standby has caught up).
    pub lag_seconds: Option<f64>,
}

/// `pg_stat_wal_receiver` on a standby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalReceiver {
    /// `streaming` when it streams.
    pub status: Option<String>,
    /// The timeline it receives.
    pub timeline: Option<u32>,
    /// Whom it streams from.
    pub sender_host: Option<String>,
    pub slot_name: Option<String>,
}

/// What the local PostgreSQL said, asked as postgres (one query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgFacts {
    /// `pg_is_in_recovery()`: a standby (true) or the primary (false).
    pub in_recovery: bool,
    /// The timeline of the last checkpoint (`pg_control_checkpoint()`).
    pub timeline: Option<u32>,
    /// `pg_current_wal_lsn()` (a primary only).
    pub current_lsn: Option<String>,
    /// `pg_last_wal_receive_lsn()` (a standby only).
    pub receive_lsn: Option<String>,
    /// `pg_last_wal_replay_lsn()` (a standby only).
    pub replay_lsn: Option<String>,
    /// `pg_stat_replication`, by application name.
    pub replication: Vec<ReplicationRow>,
    /// `pg_stat_wal_receiver`, when there is a WAL receiver.
    pub wal_receiver: Option<WalReceiver>,
}

/// `/run/airlock/db-state.json`: a DB server's state, written by root every
/// second (keepalived's check) and readable by everyone, so the peer user
/// can answer with facts only root and postgres can learn. No secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbState {
    /// [`STATUS_VERSION`].
    pub version: u32,
    pub host: String,
    /// When it was written.
    pub written: i64,
    /// The local PostgreSQL; absent when it did not answer.
    pub postgres: Option<PgFacts>,
    /// Why it did not answer.
    pub postgres_error: Option<String>,
    /// The cluster's virtual IP (a pair only).
    pub vip: Option<Ipv4Addr>,
    /// Whether this host holds the VIP (`ip -o -4 addr show`); absent when
    /// that could not be told.
    pub holds_vip: Option<bool>,
    /// Why not, when `holds_vip` is absent.
    pub vip_error: Option<String>,
    /// Why this server was kept read-only, when its start guard fenced it
    /// (`/var/lib/airlock/fenced.json`).
    pub fenced: Option<String>,
    /// When keepalived promoted this server (`/var/lib/airlock/promoted`).
    pub promoted: Option<i64>,
}

/// A DB server's state as its answer carries it (`HostStatus.db`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbView {
    /// How old `state` was when the host answered, seconds (0: it asked
    /// PostgreSQL itself).
    pub age_secs: Option<i64>,
    /// Older than [`DB_STATE_STALE_SECS`]: not to be trusted.
    pub stale: bool,
    pub state: Option<DbState>,
    /// Why there is no state (no file yet, unreadable, garbled).
    pub problem: Option<String>,
}

impl DbView {
    /// `state`, read `age_secs` after it was written.
    pub fn of(state: DbState, now: i64) -> DbView {
        let age = now - state.written;
        DbView {
            age_secs: Some(age),
            stale: !(0..=DB_STATE_STALE_SECS).contains(&age),
            state: Some(state),
            problem: None,
        }
    }

    /// No state, and why.
    pub fn missing(problem: String) -> DbView {
        DbView {
            age_secs: None,
            stale: false,
            state: None,
            problem: Some(problem),
        }
    }

    /// The state when it is fresh.
    pub fn fresh(&self) -> Option<&DbState> {
        self.state.as_ref().filter(|_| !self.stale)
    }
}

/// One swarm node, as `docker node ls --format '{{json .}}'` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmNode {
    pub hostname: String,
    /// `Ready`, `Down`, `Unknown`.
    pub status: String,
    /// `Active`, `Pause`, `Drain`.
    pub availability: String,
    /// `Leader`, `Reachable`, `Unreachable`; absent for a worker.
    pub manager_status: Option<String>,
}

impl SwarmNode {
    /// A manager that takes part in the Raft quorum now.
    pub fn reachable_manager(&self) -> bool {
        self.status == "Ready"
            && matches!(self.manager_status.as_deref(), Some("Leader" | "Reachable"))
    }
}

/// The swarm as a dispatcher sees it (`HostStatus.swarm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmView {
    /// Every node of the swarm; empty when `error` says why.
    pub nodes: Vec<SwarmNode>,
    /// Why the nodes could not be listed (no swarm, no quorum, no right).
    pub error: Option<String>,
}

/// One host's answer to `status` (`airlock-firstboot answer status`): one
/// line of JSON.
///
/// ```json
/// {"version":1,"cluster":"lab","host":"db2","role":"db-replica","time":1800000000,
///  "runner":{"phase":"done","step":null,…},
///  "db":{"age_secs":1,"stale":false,"state":{"version":1,"host":"db2",…},"problem":null},
///  "swarm":null}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostStatus {
    /// [`STATUS_VERSION`].
    pub version: u32,
    pub cluster: String,
    pub host: String,
    pub role: Role,
    /// When it answered.
    pub time: i64,
    pub runner: RunnerStatus,
    /// DB servers only.
    pub db: Option<DbView>,
    /// Dispatchers only.
    pub swarm: Option<SwarmView>,
}

impl HostStatus {
    /// As the one line `answer status` prints.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a status serialises")
    }

    /// Reads an answer; anything else (not JSON, another version, another
    /// shape) is refused with what was wrong and the start of what came.
    pub fn parse(text: &str) -> Result<HostStatus> {
        let shown: String = text.trim().chars().take(80).collect();
        let value: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("the answer is not JSON: {shown:?}"))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(STATUS_VERSION) => {}
            Some(v) => bail!(
                "the answer is status format version {v}; this runner reads version {STATUS_VERSION}: run the same airlock-firstboot on every host"
            ),
            None => bail!("the answer is not a status (no version): {shown:?}"),
        }
        serde_json::from_value(value)
            .with_context(|| format!("the answer is not a status: {shown:?}"))
    }
}

/// A host in [`ClusterStatus`]: its answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReport {
    pub name: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    /// Its answer (the asking host's own status for itself).
    pub status: Option<HostStatus>,
    /// Why there is no usable answer: `unreachable: …` (no answer within
    /// the bound, SSH refused, the command failed) or `its answer refused:
    /// …` (garbled, another version, another host).
    pub problem: Option<String>,
}

/// A standby in [`DbSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbySummary {
    pub name: String,
    /// Its WAL receiver streams.
    pub streaming: bool,
    /// The WAL receiver's status (absent: none runs).
    pub receiver: Option<String>,
    pub timeline: Option<u32>,
    /// From the primary's `pg_stat_replication` row for it.
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
}

/// The DB pair in [`ClusterStatus`], from the DB servers' fresh states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSummary {
    /// Every DB server that answers as a primary (two: split brain).
    pub primaries: Vec<String>,
    pub split_brain: bool,
    pub timeline: Option<u32>,
    pub standbys: Vec<StandbySummary>,
    pub vip: Option<Ipv4Addr>,
    /// Every DB server that holds the VIP.
    pub vip_on: Vec<String>,
    /// DB servers whose state is not known (no answer, no or stale state).
    pub unknown: Vec<String>,
}

/// A dispatcher in [`SwarmSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSummary {
    pub name: String,
    /// `Leader`, `Reachable`, `Unreachable` (absent: not a manager, or not
    /// in the swarm).
    pub manager_status: Option<String>,
    /// `Ready`, `Down` (absent: not in the swarm).
    pub node_status: Option<String>,
    pub reachable: bool,
}

/// The swarm in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmSummary {
    /// The dispatcher whose node list this is.
    pub source: Option<String>,
    /// Every dispatcher of the role file.
    pub managers: Vec<ManagerSummary>,
    /// Why no dispatcher could list the nodes.
    pub error: Option<String>,
}

/// `airlock-firstboot status --cluster --json`: the whole cluster as one
/// host saw it (pretty-printed JSON). `ready` is true when every runner is
/// done, exactly one DB server is the primary, the standby streams, the VIP
/// is on the primary only and every swarm manager is reachable; otherwise
/// `not_ready` names each reason, one sentence each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterStatus {
    /// [`STATUS_VERSION`].
    pub version: u32,
    pub cluster: String,
    /// The host that asked.
    pub asked_from: String,
    /// When it asked (its clock).
    pub time: i64,
    pub ready: bool,
    pub not_ready: Vec<String>,
    /// Every host of the role file, in its order.
    pub hosts: Vec<HostReport>,
    pub db: DbSummary,
    pub swarm: SwarmSummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_tokens_are_masked_wherever_they_are() {
        assert_eq!(
            mask_tokens("join with SWMTKN-1-abc-DEF123 10.0.0.1:2377, or SWMTKN-1-x"),
            "join with SWMTKN-1-*** 10.0.0.1:2377, or SWMTKN-1-***"
        );
        assert_eq!(mask_tokens("nothing here"), "nothing here");
    }

    #[test]
    fn an_answer_of_another_version_or_shape_is_refused_with_what_came() {
        for (text, said) in [
            ("Permission denied", "not JSON"),
            (r#"{"version": 2, "host": "db1"}"#, "format version 2"),
            (r#"{"host": "db1"}"#, "no version"),
            (r#"{"version": 1, "host": "db1"}"#, "not a status"),
        ] {
            let e = format!("{:#}", HostStatus::parse(text).unwrap_err());
            assert!(e.contains(said), "{text}: {e}");
        }
    }
}
