//! The DB pair's split-brain guard, with the dispatchers as witnesses.
//!
//! keepalived alone has no quorum: cut the link between the two DB servers
//! and each takes the VIP. Here the dispatchers vote, so the pair needs no
//! extra host. Two entry points, both run by keepalived as root:
//!
//! - [`check`] (`airlock-firstboot quorum`, a `vrrp_script` every second,
//!   weight 0: failing puts this DB server in FAULT, without the VIP):
//!   - on the **primary**: it stays while it reaches its peer or a majority
//!     of the witnesses (a TCP connection to their SSH port is answered, even
//!     refused). When it reaches neither, the check fails at once (the VIP
//!     goes), and when that lasts [`FENCE_AFTER`] it stops PostgreSQL and
//!     records why ([`crate::vm::guard::Fence`], `isolated`): an isolated old
//!     master takes no write the cluster would lose. Bound: the first probe
//!     after the cut plus [`FENCE_AFTER`], each probe at most
//!     [`PROBE_TIMEOUT`]: PostgreSQL is stopped at most [`FENCE_BOUND`] after
//!     the cut. Once it reaches them again it starts PostgreSQL, whose start
//!     guard decides: the primary again if its peer was not promoted, else
//!     read-only (and, with `database.rejoin = "auto"`, re-joined).
//!   - on the **standby**: while the primary's PostgreSQL answers here it is
//!     eligible (keepalived moves the VIP only when the primary's adverts
//!     stop). When it does not, it asks every witness `reach PRIMARY` over
//!     the peer channel ([`crate::vm::peer`]); it stays eligible only when a
//!     majority of the cluster's voters (itself and the dispatchers) cannot
//!     reach it. So a cut between the DB servers alone, with the witnesses
//!     still seeing the primary, keeps the standby in FAULT: no promotion, no
//!     second holder of the VIP.
//! - [`promote`] (`airlock-firstboot promote`, keepalived's `notify_master`):
//!   this host took the VIP. It promotes its standby only when the peer does
//!   not answer as a primary and the witnesses agree as above. When a vote
//!   says "unreachable" (the old primary may be alive and isolated, not
//!   dead) it first waits until [`FENCE_BOUND`] has passed since it lost the
//!   primary, so the old one has stopped taking writes. When it refuses it
//!   gives the VIP back (the check fails for [`REFUSED_FOR`]) and says why.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::shared::journal::{self, Journal};
use crate::shared::paths;
use crate::shared::role::{Rejoin, Role, RoleFile};
use crate::vm::engine::{Ctx, under};
use crate::vm::exec::{Cmd, Probe};
use crate::vm::guard::{self, Fence, PeerState};
use crate::vm::peer;
use crate::vm::roles::db::{self, pg, systemctl};

/// Each TCP probe (peer, witnesses) gives up after this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// An isolated primary stops PostgreSQL once isolated this long (seconds).
pub const FENCE_AFTER: i64 = 1;
/// After a cut, an isolated primary has stopped PostgreSQL within this
/// many seconds: a check starts within 1 s (a check under way at the cut
/// may take 1 s more), each takes at most [`PROBE_TIMEOUT`], the fence comes
/// on the check [`FENCE_AFTER`] later, and systemd's stop begins within a
/// second (measured in the booted clones: 2.6–5.0 s).
pub const FENCE_BOUND: i64 = 1 + 1 + 1 + FENCE_AFTER + 1 + 1;
/// After a refused promotion the standby stays out of the running this
/// long (seconds), then asks again.
pub const REFUSED_FOR: i64 = 10;
/// The witnesses' SSH port: a host that answers on it is reachable.
pub const SSH_PORT: u16 = 22;
/// A re-join by itself is asked for at most this often (seconds).
const REJOIN_EVERY: i64 = 120;

/// What the last check saw, kept in [`paths::QUORUM_STATE`] (tmpfs: a
/// reboot starts afresh).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    /// Seconds since the epoch.
    pub checked_at: i64,
    /// `ok`, `isolated`, `fenced`, `not-eligible`, `refused`.
    pub verdict: String,
    pub reason: String,
    /// Since when this host has not reached its peer's PostgreSQL.
    pub peer_lost_since: Option<i64>,
    /// A primary: since when it reached neither its peer nor a majority.
    pub isolated_since: Option<i64>,
    /// A refused promotion keeps the check failing until then.
    pub refused_until: Option<i64>,
    /// When a re-join was last asked for (`rejoin = "auto"`).
    pub rejoin_asked_at: Option<i64>,
}

impl QuorumState {
    pub fn load(c: &Ctx) -> QuorumState {
        serde_json::from_str(&c.read(paths::QUORUM_STATE)).unwrap_or_default()
    }

    fn save(&self, c: &Ctx) -> Result<()> {
        c.write(
            paths::QUORUM_STATE,
            &serde_json::to_string_pretty(self)?,
            0o644,
        )?;
        Ok(())
    }
}

/// What [`check`] decided: keepalived keeps this host in the running only
/// for `Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    Out(String),
}

/// The dispatchers, by name and address.
pub fn witnesses(role: &RoleFile) -> Vec<(String, Ipv4Addr)> {
    role.hosts
        .iter()
        .filter(|h| h.role.is_dispatcher())
        .map(|h| (h.name.clone(), h.ip))
        .collect()
}

/// The guard is armed once the pair has run whole: this host's runner
/// finished, and it has seen its peer and a majority of the witnesses once
/// (kept in [`paths::QUORUM_ARMED`]). Before that (VMs booted one after the
/// other) a lone primary must not stop itself.
fn armed(c: &Ctx, peer_seen: bool, witnesses_seen: bool) -> Result<bool> {
    if c.path(paths::QUORUM_ARMED).is_file() {
        return Ok(true);
    }
    let done = Journal::load(&c.path(paths::JOURNAL))?.is_some_and(|j| j.complete());
    if done && peer_seen && witnesses_seen {
        c.write(paths::QUORUM_ARMED, &format!("{}\n", journal::now()), 0o644)?;
        return Ok(true);
    }
    Ok(false)
}

/// `airlock-firstboot quorum`: keepalived's check on both DB servers.
pub fn check(c: &Ctx) -> Result<Verdict> {
    let mut state = QuorumState::load(c);
    let now = journal::now();
    let fence = Fence::load(c.root);
    let primary = fence.is_none() && is_primary(c)?;
    let verdict = if let Some(f) = &fence {
        state.verdict = "fenced".into();
        fenced(c, &mut state, now, f)?
    } else if primary {
        check_primary(c, &mut state, now)?
    } else {
        check_standby(c, &mut state, now)?
    };
    if c.role.database.synchronous && fence.is_none() {
        use crate::vm::sync::Seen;
        let seen = if primary {
            // A primary that keeps the VIP reaches its peer or a majority.
            Seen::Primary {
                majority: matches!(verdict, Verdict::Ok(_)),
            }
        } else {
            Seen::Standby {
                primary_answers: state.peer_lost_since.is_none(),
            }
        };
        if let Err(e) = crate::vm::sync::tick(c, seen) {
            eprintln!("airlock-firstboot quorum: synchronous replication: {e:#}");
        }
    }
    state.checked_at = now;
    state.reason = match &verdict {
        Verdict::Ok(r) => {
            state.verdict = "ok".into();
            r.clone()
        }
        Verdict::Out(r) => r.clone(),
    };
    state.save(c)?;
    Ok(verdict)
}

/// The local cluster is (or will start as) a primary, and is not fenced.
fn is_primary(c: &Ctx) -> Result<bool> {
    let data = db::data_dir(c)?;
    Ok(data.join("PG_VERSION").is_file() && !db::is_standby(&data))
}

fn peer_addr(c: &Ctx) -> Result<(String, SocketAddr)> {
    let vrrp = c.role.host.vrrp.as_ref().context("no VRRP peer")?;
    Ok((
        vrrp.peer.name.clone(),
        SocketAddr::from((vrrp.peer.ip, c.role.database.port)),
    ))
}

/// Probes the peer's PostgreSQL and every witness's SSH port at once.
fn probe_all(c: &Ctx, peer: SocketAddr) -> (Probe, Vec<(String, Probe)>) {
    let w = witnesses(c.role);
    let exec = c.exec;
    std::thread::scope(|s| {
        let p = s.spawn(move || exec.probe(peer, PROBE_TIMEOUT));
        let ws: Vec<_> = w
            .iter()
            .map(|(name, ip)| {
                let addr = SocketAddr::from((*ip, SSH_PORT));
                (
                    name.clone(),
                    s.spawn(move || exec.probe(addr, PROBE_TIMEOUT)),
                )
            })
            .collect();
        let peer = p
            .join()
            .unwrap_or_else(|_| Probe::Unreachable("(probe panicked)".into()));
        let ws = ws
            .into_iter()
            .map(|(n, h)| {
                (
                    n,
                    h.join()
                        .unwrap_or_else(|_| Probe::Unreachable("(probe panicked)".into())),
                )
            })
            .collect();
        (peer, ws)
    })
}

fn majority(of: usize) -> usize {
    of / 2 + 1
}

fn check_primary(c: &Ctx, state: &mut QuorumState, now: i64) -> Result<Verdict> {
    let (peer_name, peer) = peer_addr(c)?;
    let (peer_probe, ws) = probe_all(c, peer);
    let reached: Vec<&str> = ws
        .iter()
        .filter(|(_, p)| p.host_answered())
        .map(|(n, _)| n.as_str())
        .collect();
    let needed = majority(ws.len());
    if !armed(c, peer_probe.host_answered(), reached.len() >= needed)? {
        state.isolated_since = None;
        return Ok(Verdict::Ok(
            "not armed yet: the pair has not run whole".into(),
        ));
    }
    if peer_probe.host_answered() || reached.len() >= needed {
        state.isolated_since = None;
        state.peer_lost_since = if peer_probe.host_answered() {
            None
        } else {
            state.peer_lost_since.or(Some(now))
        };
        return Ok(Verdict::Ok(format!(
            "the primary reaches {}",
            if peer_probe.host_answered() {
                format!("its peer {peer_name}")
            } else {
                format!("{} of {} witnesses", reached.len(), ws.len())
            }
        )));
    }
    let since = *state.isolated_since.get_or_insert(now);
    state.peer_lost_since.get_or_insert(since);
    let why = format!(
        "ISOLATED since {}: the peer {peer_name} is {} and only {} of {} witnesses answer (a majority is {needed})",
        crate::shared::timefmt::rfc2822_utc(since),
        peer_probe.say(),
        reached.len(),
        ws.len()
    );
    if now - since >= FENCE_AFTER {
        fence_isolated(c, &peer_name, &why)?;
        state.verdict = "fenced".into();
        return Ok(Verdict::Out(format!(
            "{why}; PostgreSQL stopped so it takes no write the cluster would lose"
        )));
    }
    state.verdict = "isolated".into();
    Ok(Verdict::Out(format!("{why}; the VIP is given up")))
}

/// Stops the local PostgreSQL and records why.
fn fence_isolated(c: &Ctx, peer: &str, why: &str) -> Result<()> {
    let record = Fence {
        since: journal::now(),
        peer: peer.to_string(),
        peer_ip: peer_addr(c)?.1.ip().to_string(),
        reason: why.to_string(),
        isolated: true,
    };
    c.write(
        paths::FENCED,
        &serde_json::to_string_pretty(&record)?,
        0o644,
    )?;
    c.exec.run(&systemctl("stop", "postgresql"))?;
    Ok(())
}

fn check_standby(c: &Ctx, state: &mut QuorumState, now: i64) -> Result<Verdict> {
    if let Some(until) = state.refused_until.filter(|u| *u > now) {
        state.verdict = "refused".into();
        return Ok(Verdict::Out(format!(
            "a promotion was refused: out of the running until {}",
            crate::shared::timefmt::rfc2822_utc(until)
        )));
    }
    state.refused_until = None;
    let (peer_name, peer) = peer_addr(c)?;
    let probe = c.exec.probe(peer, PROBE_TIMEOUT);
    if probe == Probe::Up {
        state.peer_lost_since = None;
        return Ok(Verdict::Ok(format!("the primary {peer_name} answers")));
    }
    state.peer_lost_since.get_or_insert(now);
    // The witnesses are asked at once; the whole check stays well inside
    // keepalived's timeout (a killed check counts as failed).
    let votes = ask_witnesses(c, &peer_name, &probe)?;
    if votes.carried() {
        Ok(Verdict::Ok(votes.explain(&peer_name)))
    } else {
        state.verdict = "not-eligible".into();
        Ok(Verdict::Out(votes.explain(&peer_name)))
    }
}

/// The cluster's votes on "the primary's PostgreSQL is gone".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Votes {
    /// Witnesses whose answer was not waited for (the outcome was decided).
    pub pending: Vec<String>,
    /// This host and the witnesses that cannot reach it.
    pub gone: Vec<String>,
    /// Witnesses that reach it.
    pub sees_it: Vec<String>,
    /// Witnesses that did not answer, and why.
    pub silent: Vec<(String, String)>,
    /// Some voter got no answer at all from the primary (it may be alive
    /// and isolated, not dead).
    pub unreachable: bool,
    /// Voters in all: this host and the dispatchers.
    pub voters: usize,
}

impl Votes {
    pub fn carried(&self) -> bool {
        self.gone.len() >= majority(self.voters)
    }

    /// Carried, or lost whatever the witnesses still to answer say.
    fn decided(&self) -> bool {
        self.pending.is_empty()
            || self.carried()
            || self.gone.len() + self.pending.len() < majority(self.voters)
    }

    fn count(&mut self, name: String, answer: Result<String>) {
        self.pending.retain(|p| *p != name);
        match answer.as_deref().map(Probe::parse) {
            Ok(Some(Probe::Up)) => self.sees_it.push(name),
            Ok(Some(p)) => {
                self.unreachable |= matches!(p, Probe::Unreachable(_));
                self.gone.push(name);
            }
            Ok(None) => self.silent.push((
                name,
                format!("unexpected answer {:?}", answer.unwrap_or_default()),
            )),
            Err(e) => self
                .silent
                .push((name, format!("{e:#}").replace('\n', " "))),
        }
    }

    pub fn explain(&self, primary: &str) -> String {
        let mut s = format!(
            "{} of {} voters cannot reach {primary}'s PostgreSQL ({}; a majority is {})",
            self.gone.len(),
            self.voters,
            self.gone.join(", "),
            majority(self.voters)
        );
        if !self.sees_it.is_empty() {
            s += &format!("; {} still reach it", self.sees_it.join(", "));
        }
        for (name, why) in &self.silent {
            s += &format!("; {name} did not answer ({why})");
        }
        if !self.pending.is_empty() {
            s += &format!("; not waited for: {}", self.pending.join(", "));
        }
        s
    }
}

/// Probes the primary's PostgreSQL from here (unless `own` is that
/// probe already) while every witness is asked `reach PRIMARY`, and calls
/// `decide` with the votes and this host's probe as soon as the outcome
/// can no longer change: a failover does not wait for the slowest SSH
/// answer, which finishes meanwhile (each is bounded).
fn vote_then<T>(
    c: &Ctx,
    primary: &str,
    addr: SocketAddr,
    own: Option<Probe>,
    decide: impl FnOnce(Votes, Probe) -> T,
) -> T {
    let w = witnesses(c.role);
    let (exec, root) = (c.exec, c.root);
    let question = format!("reach {primary}");
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for (name, ip) in &w {
            let (tx, question) = (tx.clone(), &question);
            s.spawn(move || {
                let answer = peer::ask_within(exec, root, *ip, question, peer::ASK_BOUND_SECS);
                let _ = tx.send((name.clone(), answer));
            });
        }
        drop(tx);
        let own = own.unwrap_or_else(|| exec.probe(addr, PROBE_TIMEOUT));
        let mut v = Votes {
            gone: vec![c.role.host.name.clone()],
            sees_it: vec![],
            silent: vec![],
            pending: w.iter().map(|(n, _)| n.clone()).collect(),
            unreachable: matches!(own, Probe::Unreachable(_)),
            voters: w.len() + 1,
        };
        while !v.decided() {
            let Ok((name, answer)) = rx.recv() else { break };
            v.count(name, answer);
        }
        decide(v, own)
    })
}

/// Asks every witness `reach PRIMARY`; `own` (this host's probe) is its vote.
fn ask_witnesses(c: &Ctx, primary: &str, own: &Probe) -> Result<Votes> {
    let (_, addr) = peer_addr(c)?;
    Ok(vote_then(c, primary, addr, Some(own.clone()), |v, _| v))
}

/// A fenced server never holds the VIP (its check fails). Isolated: once it
/// reaches its peer or a majority again, it starts PostgreSQL (the start
/// guard decides how). Fenced because the peer is the primary: with `rejoin = "auto"` it
/// asks the runner to re-join.
fn fenced(c: &Ctx, state: &mut QuorumState, now: i64, f: &Fence) -> Result<Verdict> {
    if f.isolated {
        let (_, peer) = peer_addr(c)?;
        let (peer_probe, ws) = probe_all(c, peer);
        let reached = ws.iter().filter(|(_, p)| p.host_answered()).count();
        if peer_probe.host_answered() || reached >= majority(ws.len()) {
            // The start guard decides: the primary again (and it removes
            // the record) if the peer is a standby, read-only if the peer
            // is the primary, still stopped while the peer does not answer.
            state.isolated_since = None;
            return start_after_isolation(c);
        }
        return Ok(Verdict::Out(f.reason.clone()));
    }
    if c.role.database.rejoin == Rejoin::Auto
        && state
            .rejoin_asked_at
            .is_none_or(|t| now - t >= REJOIN_EVERY)
    {
        state.rejoin_asked_at = Some(now);
        c.exec.run(&Cmd::new("systemctl").args([
            "restart",
            "--no-block",
            "airlock-firstboot.service",
        ]))?;
        return Ok(Verdict::Out(
            "fenced: the peer is the primary; re-joining by itself (database.rejoin = \"auto\")"
                .into(),
        ));
    }
    Ok(Verdict::Out(
        "fenced: the peer is the primary; see airlock-firstboot status".into(),
    ))
}

/// Starts the local PostgreSQL once its unit has settled: the fence's stop
/// can take a while (a primary's shutdown waits for its walsenders), and a
/// start asked for every second would hit systemd's start limit.
fn start_after_isolation(c: &Ctx) -> Result<Verdict> {
    let unit = format!("postgresql@{}-main", pg(c)?.major);
    let out = c
        .exec
        .output(&Cmd::new("systemctl").args(["is-active", &unit]))?;
    let state = out.stdout.trim().to_string();
    if state != "inactive" && state != "failed" {
        return Ok(Verdict::Out(format!(
            "no longer isolated: PostgreSQL starts again once its unit {unit} has settled (it is {state})"
        )));
    }
    let _ = c
        .exec
        .output(&Cmd::new("systemctl").args(["reset-failed", &unit]));
    c.exec
        .run(&Cmd::new("systemctl").args(["start", "--no-block", &unit]))?;
    Ok(Verdict::Out(
        "no longer isolated: PostgreSQL starts again; its start guard decides whether as the primary".into(),
    ))
}

/// `airlock-firstboot promote`: keepalived's `notify_master`. Promotes the
/// local standby when the cluster agrees the primary is gone; otherwise
/// gives the VIP back. Returns what it did, for the log.
pub fn promote(c: &Ctx) -> Result<String> {
    let started = c.exec.now();
    let data = db::data_dir(c)?;
    if let Some(f) = Fence::load(c.root) {
        return refuse(c, &format!("this server is fenced ({})", f.reason));
    }
    if !db::is_standby(&data) {
        return Ok("took the VIP as the primary: nothing to do".into());
    }
    let (peer_name, peer) = peer_addr(c)?;
    // The promotion happens as soon as the vote is decided; slower
    // witnesses finish their answer meanwhile.
    vote_then(c, &peer_name, peer, None, |votes, own| {
        promote_if_carried(c, &peer_name, votes, own, started)
    })
}

fn promote_if_carried(
    c: &Ctx,
    peer_name: &str,
    mut votes: Votes,
    own: Probe,
    started: Duration,
) -> Result<String> {
    if own == Probe::Up {
        // Its port answers here: ask whether it is still the primary.
        let vrrp = c.role.host.vrrp.as_ref().context("no VRRP peer")?;
        let passfile = db::passfile(c, None)?;
        if guard::ask_peer(c.exec, c.role, &vrrp.peer.ip.to_string(), &passfile)
            == PeerState::Primary
        {
            return refuse(
                c,
                &format!("the peer {} still answers as the primary", vrrp.peer.name),
            );
        }
    }
    if !votes.carried() {
        return refuse(c, &votes.explain(peer_name));
    }
    if votes.unreachable {
        votes = wait_out_the_fence(c, peer_name)?;
        if !votes.carried() {
            return refuse(c, &votes.explain(peer_name));
        }
    }
    if let Err(why) = crate::vm::sync::may_promote(c, journal::now()) {
        return refuse(c, &why);
    }
    let asked = c.exec.now() - started;
    promote_local(c)?;
    let now = journal::now();
    c.write(paths::PROMOTED, &format!("{now}\n"), 0o644)?;
    Ok(format!(
        "promoted: {} (the vote took {} ms, the promotion {} ms)",
        votes.explain(peer_name),
        asked.as_millis(),
        (c.exec.now() - started - asked).as_millis()
    ))
}

/// The old primary may be alive and isolated: wait until it has surely
/// stopped taking writes, then ask again.
fn wait_out_the_fence(c: &Ctx, peer_name: &str) -> Result<Votes> {
    let state = QuorumState::load(c);
    let now = journal::now();
    let lost = state.peer_lost_since.unwrap_or(now);
    let left = (lost + FENCE_BOUND - now).max(0);
    if left > 0 {
        eprintln!(
            "airlock-firstboot promote: {peer_name} may be isolated rather than dead: waiting {left} s until it has stopped taking writes"
        );
        c.exec.sleep(Duration::from_secs(left as u64));
    }
    let (_, peer) = peer_addr(c)?;
    Ok(vote_then(c, peer_name, peer, None, |v, _| v))
}

/// Gives the VIP back: the check fails for [`REFUSED_FOR`] seconds.
fn refuse(c: &Ctx, why: &str) -> Result<String> {
    let mut state = QuorumState::load(c);
    let now = journal::now();
    state.refused_until = Some(now + REFUSED_FOR);
    state.verdict = "refused".into();
    state.reason = format!("promotion refused: {why}");
    state.checked_at = now;
    state.save(c)?;
    Ok(format!(
        "NOT promoting: {why}; the VIP is given back, asking again in {REFUSED_FOR} s"
    ))
}

/// Promotes the local standby. In a synchronous pair the new primary then
/// stops waiting for a standby (its standby is the server that just died),
/// in the same psql on PostgreSQL 12+.
fn promote_local(c: &Ctx) -> Result<()> {
    use crate::vm::sync::{RELOAD, STOP_WAITING};
    let major = pg(c)?.major;
    let sync = c.role.database.synchronous;
    if major < 12 {
        c.exec
            .run(&Cmd::new("pg_ctlcluster").args([&major.to_string(), "main", "promote"]))?;
    }
    let mut sqls = Vec::new();
    if major >= 12 {
        sqls.push("SELECT pg_promote()");
    }
    if sync {
        sqls.extend([STOP_WAITING, RELOAD]);
    }
    if !sqls.is_empty() {
        c.exec.run(&db::psql_local_each(c, &sqls))?;
    }
    if sync {
        crate::vm::sync::record_unprotected(c)?;
    }
    Ok(())
}

/// Whether `role` is a DB server of a pair that promotes (the guard's
/// scope).
pub fn applies(role: &RoleFile) -> bool {
    matches!(role.host.role, Role::DbMaster | Role::DbReplica)
        && role.host.vrrp.as_ref().is_some_and(|v| v.promote)
}

/// The state file, for `status`.
pub fn last_state(root: &std::path::Path) -> Option<QuorumState> {
    serde_json::from_str(&std::fs::read_to_string(under(root, paths::QUORUM_STATE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    const DATA: &str = "/var/lib/postgresql/15/main";

    fn addr(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::from((ip.parse::<Ipv4Addr>().unwrap(), port))
    }

    /// A DB server of the stand: primary or standby, armed.
    fn lay_out(root: &std::path::Path, standby: bool) {
        put(root, &format!("{DATA}/PG_VERSION"), "15\n");
        if standby {
            put(root, &format!("{DATA}/standby.signal"), "");
        }
        put(root, paths::QUORUM_ARMED, "1\n");
        put(root, paths::DB_PASSWORD, "pw\n");
    }

    fn witnesses_say(fake: &Recording, primary: &str, answers: [&str; 3]) {
        for (i, a) in answers.iter().enumerate() {
            let pattern = format!("airlock-peer@192.0.2.2{} 'reach {primary}'", i + 1);
            if a.is_empty() {
                fake.on_stderr(&pattern, 255, "ssh: connect to host: No route to host");
            } else {
                fake.on(&pattern, 0, &format!("{a}\n"));
            }
        }
    }

    fn state(root: &std::path::Path) -> QuorumState {
        last_state(root).expect("the state file")
    }

    #[test]
    fn a_primary_stays_while_it_reaches_its_peer_or_a_majority_of_the_witnesses() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), fixture_role("db1"));
        lay_out(root, false);
        let fake = Recording::new();
        fake.refuse(addr("192.0.2.12", 5432));
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(check(&c).unwrap(), Verdict::Ok(r) if r.contains("its peer db2")));

        let fake = Recording::new();
        fake.open(addr("192.0.2.21", 22))
            .refuse(addr("192.0.2.22", 22));
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(check(&c).unwrap(), Verdict::Ok(r) if r.contains("2 of 3 witnesses")));
        assert!(!fake.ran("systemctl"));
    }

    #[test]
    fn an_isolated_primary_gives_up_the_vip_then_stops_postgresql_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), fixture_role("db1"));
        lay_out(root, false);
        let fake = Recording::new();
        fake.open(addr("192.0.2.21", 22));
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        let Verdict::Out(why) = check(&c).unwrap() else {
            panic!("an isolated primary stays in the running")
        };
        assert!(
            why.contains("ISOLATED") && why.contains("only 1 of 3 witnesses"),
            "{why}"
        );
        assert!(!fake.ran("systemctl stop"), "not on the first failed check");
        assert_eq!(state(root).verdict, "isolated");

        // Still isolated a second later: the fence.
        let mut s = state(root);
        s.isolated_since = Some(journal::now() - FENCE_AFTER);
        s.save(&c).unwrap();
        assert!(matches!(check(&c).unwrap(), Verdict::Out(r) if r.contains("PostgreSQL stopped")));
        assert!(fake.ran("systemctl stop postgresql"));
        let f = Fence::load(root).unwrap();
        assert!(
            f.isolated
                && f.explain(std::path::Path::new(DATA))
                    .starts_with("ISOLATED")
        );
        assert_eq!(state(root).verdict, "fenced");

        // Healed, the peer reached again: PostgreSQL starts, its guard decides.
        let healed = Recording::new();
        healed.open(addr("192.0.2.12", 5432));
        healed.on(
            "systemctl is-active postgresql@15-main",
            3,
            "deactivating\n",
        );
        let c = Ctx::new(root, &role, &healed, 0, None, journal_for(&role));
        assert!(matches!(check(&c).unwrap(), Verdict::Out(r) if r.contains("once its unit")));
        assert!(!healed.ran("systemctl start"), "not while it still stops");
        healed.on("systemctl is-active postgresql@15-main", 3, "inactive\n");
        assert!(matches!(check(&c).unwrap(), Verdict::Out(r) if r.contains("no longer isolated")));
        assert!(healed.ran("systemctl start --no-block postgresql@15-main"));
        assert!(
            Fence::load(root).is_some_and(|f| f.isolated),
            "the guard's to remove"
        );
    }

    #[test]
    fn a_lone_primary_before_the_pair_ran_whole_never_stops_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), fixture_role("db1"));
        lay_out(root, false);
        std::fs::remove_file(root.join("var/lib/airlock/quorum-armed")).unwrap();
        let fake = Recording::new();
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(check(&c).unwrap(), Verdict::Ok(r) if r.contains("not armed")));
        assert!(fake.commands().is_empty());
        // Once its runner is done and it has seen the others, it is armed.
        let mut j = journal_for(&role);
        for s in j.steps.clone() {
            j.set(&s.name, crate::shared::journal::StepState::Done, None);
        }
        j.save(&c.path(paths::JOURNAL)).unwrap();
        let fake = Recording::new();
        fake.open(addr("192.0.2.12", 5432))
            .open(addr("192.0.2.21", 22))
            .open(addr("192.0.2.22", 22));
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        check(&c).unwrap();
        assert!(root.join("var/lib/airlock/quorum-armed").is_file());
    }

    #[test]
    fn a_standby_cut_off_from_the_primary_alone_stays_out_of_the_running() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), fixture_role("db2"));
        lay_out(root, true);
        let fake = Recording::new();
        fake.open(addr("192.0.2.11", 5432));
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(matches!(check(&c).unwrap(), Verdict::Ok(r) if r.contains("db1 answers")));
        assert!(!fake.ran("ssh"), "no question while the primary answers");

        let cut = Recording::new();
        witnesses_say(&cut, "db1", ["up", "up", "unreachable (timed out)"]);
        let c = Ctx::new(root, &role, &cut, 0, None, journal_for(&role));
        let Verdict::Out(why) = check(&c).unwrap() else {
            panic!("eligible although the witnesses see the primary")
        };
        assert!(
            why.contains("of 4 voters cannot reach db1") && why.contains("still reach it"),
            "{why}"
        );
        assert_eq!(state(root).verdict, "not-eligible");
        assert!(state(root).peer_lost_since.is_some());

        let gone = Recording::new();
        witnesses_say(
            &gone,
            "db1",
            ["down (Connection refused)", "", "unreachable (timed out)"],
        );
        let c = Ctx::new(root, &role, &gone, 0, None, journal_for(&role));
        let Verdict::Ok(why) = check(&c).unwrap() else {
            panic!("not eligible although a majority lost the primary")
        };
        assert!(
            why.contains("3 of 4 voters")
                && (why.contains("disp2 did not answer") || why.contains("not waited for: disp2")),
            "{why}"
        );
    }

    #[test]
    fn promotion_needs_the_witnesses_and_waits_out_an_isolated_primary() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), fixture_role("db2"));
        lay_out(root, true);
        // The postmaster died: every voter is refused, promote at once.
        let dead = Recording::new();
        dead.refuse(addr("192.0.2.11", 5432));
        dead.on_stderr(
            "pg_is_in_recovery",
            2,
            "could not connect: Connection refused",
        );
        witnesses_say(&dead, "db1", ["down (Connection refused)"; 3]);
        let c = Ctx::new(root, &role, &dead, 0, None, journal_for(&role));
        let said = promote(&c).unwrap();
        // Decided once three of the four agree: the last answer may not be
        // waited for.
        assert!(
            said.starts_with("promoted: ") && said.contains(" of 4 voters"),
            "{said}"
        );
        assert!(dead.ran("SELECT pg_promote()"));
        assert!(!dead.log().iter().any(|l| l.starts_with("sleep")));
        assert!(c.path(paths::PROMOTED).is_file());

        // Isolated, maybe alive: wait until it has surely fenced itself.
        let isolated = Recording::new();
        isolated.on_stderr("pg_is_in_recovery", 2, "timeout expired");
        witnesses_say(&isolated, "db1", ["unreachable (timed out)"; 3]);
        let s = QuorumState {
            peer_lost_since: Some(journal::now() - 1),
            ..Default::default()
        };
        s.save(&c).unwrap();
        let c = Ctx::new(root, &role, &isolated, 0, None, journal_for(&role));
        assert!(promote(&c).unwrap().starts_with("promoted"));
        let slept: Vec<String> = isolated
            .log()
            .into_iter()
            .filter(|l| l.starts_with("sleep"))
            .collect();
        assert!(
            slept.len() == 1 && ["sleep 4s", "sleep 5s"].contains(&slept[0].as_str()),
            "{slept:?}"
        );
        let promoted_at = isolated
            .log()
            .iter()
            .position(|l| l.contains("pg_promote"))
            .unwrap();
        let slept_at = isolated
            .log()
            .iter()
            .position(|l| l.starts_with("sleep"))
            .unwrap();
        assert!(slept_at < promoted_at);
    }

    #[test]
    fn a_refused_promotion_gives_the_vip_back_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (root, role) = (dir.path(), fixture_role("db2"));
        lay_out(root, true);
        let alive = Recording::new();
        alive.open(addr("192.0.2.11", 5432));
        alive.on("pg_is_in_recovery", 0, "f\n");
        let c = Ctx::new(root, &role, &alive, 0, None, journal_for(&role));
        let said = promote(&c).unwrap();
        assert!(
            said.contains("NOT promoting: the peer db1 still answers as the primary"),
            "{said}"
        );
        assert!(!alive.ran("pg_promote"));
        assert!(matches!(check(&c).unwrap(), Verdict::Out(r) if r.contains("refused")));

        let cut = Recording::new();
        cut.on_stderr("pg_is_in_recovery", 2, "timeout expired");
        witnesses_say(&cut, "db1", ["up", "up", "up"]);
        let c = Ctx::new(root, &role, &cut, 0, None, journal_for(&role));
        let said = promote(&c).unwrap();
        assert!(said.contains("still reach it"), "{said}");
        assert!(!cut.ran("pg_promote"));
        assert_eq!(state(root).verdict, "refused");
    }

    #[test]
    fn a_fenced_server_never_holds_the_vip_and_rejoins_by_itself_when_told_to() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut role = fixture_role("db1");
        lay_out(root, true);
        put(
            root,
            paths::FENCED,
            "{\"since\":1,\"peer\":\"db2\",\"peer_ip\":\"192.0.2.12\",\"reason\":\"it answered as a primary\"}",
        );
        let fake = Recording::new();
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(
            matches!(check(&c).unwrap(), Verdict::Out(r) if r.contains("see airlock-firstboot status"))
        );
        assert!(fake.commands().is_empty(), "manual: nothing done");

        role.database.rejoin = Rejoin::Auto;
        let c = Ctx::new(root, &role, &fake, 0, None, journal_for(&role));
        assert!(
            matches!(check(&c).unwrap(), Verdict::Out(r) if r.contains("re-joining by itself"))
        );
        check(&c).unwrap();
        assert_eq!(
            fake.commands(),
            ["systemctl restart --no-block airlock-firstboot.service"],
            "asked once, not every second"
        );
        assert!(
            promote(&c)
                .unwrap()
                .contains("NOT promoting: this server is fenced")
        );
    }

    #[test]
    fn in_synchronous_mode_only_a_standby_that_streamed_lately_is_promoted_and_it_then_serves_alone()
     {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut role = fixture_role("db2");
        role.database.synchronous = true;
        lay_out(root, true);
        let dead = Recording::new();
        dead.refuse(addr("192.0.2.11", 5432));
        witnesses_say(&dead, "db1", ["down (Connection refused)"; 3]);
        let c = Ctx::new(root, &role, &dead, 0, None, journal_for(&role));
        let said = promote(&c).unwrap();
        assert!(
            said.contains("NOT promoting: synchronous replication"),
            "{said}"
        );
        assert!(!dead.ran("pg_promote"));

        put(
            root,
            paths::SYNC_LAST_STREAMING,
            &format!("{}\n", journal::now() - 1),
        );
        put(root, paths::QUORUM_STATE, "{}");
        let c = Ctx::new(root, &role, &dead, 0, None, journal_for(&role));
        assert!(promote(&c).unwrap().starts_with("promoted"));
        // One psql: promote, then stop waiting and reload.
        let line = dead
            .commands()
            .into_iter()
            .find(|l| l.contains("pg_promote"))
            .unwrap();
        let at = |s: &str| line.find(s).unwrap_or_else(|| panic!("{s} in {line}"));
        assert!(
            at("pg_promote") < at("ALTER SYSTEM SET synchronous_standby_names")
                && at("ALTER SYSTEM SET synchronous_standby_names") < at("pg_reload_conf"),
            "{line}"
        );
        assert!(
            crate::vm::sync::describe(root)
                .unwrap()
                .contains("UNPROTECTED")
        );
    }

    #[test]
    fn the_vote_is_decided_as_soon_as_the_rest_cannot_change_it() {
        let mut v = Votes {
            gone: vec!["db2".into()],
            sees_it: vec![],
            silent: vec![],
            pending: vec!["disp1".into(), "disp2".into(), "disp3".into()],
            unreachable: false,
            voters: 4,
        };
        assert!(!v.decided());
        v.count("disp2".into(), Ok("down (Connection refused)".into()));
        assert!(!v.decided(), "2 of 4 so far, 2 to come");
        v.count("disp1".into(), Ok("down (Connection refused)".into()));
        assert!(
            v.decided() && v.carried(),
            "3 of 4: disp3 need not be waited for"
        );
        assert!(v.explain("db1").ends_with("not waited for: disp3"));

        let mut lost = Votes {
            gone: vec!["db2".into()],
            pending: vec!["disp1".into(), "disp2".into(), "disp3".into()],
            sees_it: vec![],
            silent: vec![],
            unreachable: true,
            voters: 4,
        };
        lost.count("disp3".into(), Ok("up".into()));
        assert!(!lost.decided());
        lost.count("disp1".into(), Err(anyhow::anyhow!("timed out")));
        assert!(lost.decided() && !lost.carried(), "at most 2 of 4 now");
    }
}
