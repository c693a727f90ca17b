//! Questions between the cluster's hosts.
//!
//! Every host has the user [`paths::PEER_USER`], whose one SSH key (the
//! cluster's peer key, on every host) is forced to `airlock-firstboot
//! answer`: whatever the client asks for, sshd runs that, and it answers
//! only the questions below, from the role file, never with a secret.
//! Every host's SSH host key comes from the bundle and is pinned in
//! [`paths::CLUSTER_KNOWN_HOSTS`], so an answer comes from that host or
//! not at all.
//!
//! Questions:
//! - `reach DBHOST`: can this host reach DBHOST's PostgreSQL port? `up`,
//!   `down (why)` (the host refused: nothing listens) or `unreachable
//!   (why)`. The dispatchers are the DB pair's witnesses (see [`crate::vm::quorum`]).
//! - `status`: this host's status as one line of JSON
//!   ([`crate::shared::status::HostStatus`]): its runner's state, on a DB
//!   server the DB state root writes for it, on a dispatcher the swarm's
//!   nodes (see [`crate::vm::clusterstatus`] for how the peer user learns
//!   those without being root).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::shared::paths;
use crate::shared::role::RoleFile;
use crate::vm::engine::under;
use crate::vm::exec::{Cmd, Exec, Probe};

/// How long a witness tries the DB host's port.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(1);

/// The whole question, SSH included, is bounded by this (seconds).
pub const ASK_BOUND_SECS: u64 = 3;

/// What `answer` knows how to answer, for its error message.
const QUESTIONS: &str = "reach DBHOST`, `status";

/// A question whose answer takes more work (`status`) gets this long.
pub const STATUS_BOUND_SECS: u64 = 6;

/// Asks the host at `ip` one question over SSH, as the peer user, with the
/// host key pinned, within `bound` seconds. The answer is the first line
/// it printed. A connection the host closed before it said anything (sshd
/// at its `MaxStartups`, or restarting) is tried once more.
pub fn ask_within(
    exec: &dyn Exec,
    root: &Path,
    ip: Ipv4Addr,
    question: &str,
    bound: u64,
) -> Result<String> {
    let cmd = ask_cmd(root, ip, question, bound);
    let first = exec.output(&cmd)?;
    let out = if first.code == Some(255) && first.stderr.trim().is_empty() {
        exec.run(&cmd)?
    } else {
        crate::vm::exec::succeeded(&cmd, first)?
    };
    out.stdout
        .lines()
        .next()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{ip} answered nothing to `{question}`"))
}

fn ask_cmd(root: &Path, ip: Ipv4Addr, question: &str, bound: u64) -> Cmd {
    pinned_ssh(
        &under(root, paths::PEER_CLIENT_KEY),
        &under(root, paths::CLUSTER_KNOWN_HOSTS),
        1,
        &format!("{}@{ip}", paths::PEER_USER),
        question,
    )
    .bounded(bound)
}

/// `ssh` with one key, nothing else tried first (Debian's ssh_config turns
/// GSSAPI on: a round trip per question in a failover), no prompt, and the
/// host key pinned in `known` (Ed25519 only): an answer comes from that
/// host or not at all. The join token and the peer questions both go this
/// way.
pub fn pinned_ssh(key: &Path, known: &Path, connect_secs: u32, target: &str, command: &str) -> Cmd {
    Cmd::new("ssh").args([
        "-i",
        &key.display().to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        &format!("UserKnownHostsFile={}", known.display()),
        "-o",
        "HostKeyAlgorithms=ssh-ed25519",
        "-o",
        &format!("ConnectTimeout={connect_secs}"),
        "-o",
        "LogLevel=ERROR",
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "GSSAPIAuthentication=no",
        "-o",
        "CheckHostIP=no",
        target,
        command,
    ])
}

/// Asks every `(name, ip)` at once, within `bound` seconds each; answers in
/// the same order.
pub fn ask_all_within(
    exec: &dyn Exec,
    root: &Path,
    hosts: &[(String, Ipv4Addr)],
    question: &str,
    bound: u64,
) -> Vec<(String, Result<String>)> {
    std::thread::scope(|s| {
        let asked: Vec<_> = hosts
            .iter()
            .map(|(name, ip)| {
                (
                    name,
                    s.spawn(move || ask_within(exec, root, *ip, question, bound)),
                )
            })
            .collect();
        asked
            .into_iter()
            .map(|(name, h)| {
                let answer = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("asking {name} panicked")));
                (name.clone(), answer)
            })
            .collect()
    })
}

/// `airlock-firstboot answer`: the peer user's forced command. `question`
/// is what the client asked (sshd's `SSH_ORIGINAL_COMMAND`); `root` is `/`
/// on a VM.
pub fn answer(exec: &dyn Exec, root: &Path, role: &RoleFile, question: &str) -> Result<String> {
    let words: Vec<&str> = question.split_whitespace().collect();
    match words.as_slice() {
        ["reach", name] => Ok(reach(exec, role, name)?.say()),
        ["status"] => Ok(crate::vm::clusterstatus::answer_status(root, exec, role)),
        _ => bail!(
            "cannot answer {:?}: this host answers only `{QUESTIONS}`",
            question.chars().take(80).collect::<String>()
        ),
    }
}

/// Tries the PostgreSQL port of the DB host `name` (only a DB host of this
/// cluster: the answer is never a port scan).
fn reach(exec: &dyn Exec, role: &RoleFile, name: &str) -> Result<Probe> {
    let host = role
        .hosts
        .iter()
        .find(|h| h.name == name && matches!(h.role.as_str(), "db-master" | "db-replica"))
        .with_context(|| format!("{name:?} is not a DB server of cluster {}", role.cluster))?;
    let addr = SocketAddr::from((host.ip, role.database.port));
    Ok(exec.probe(addr, REACH_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::fixture_role;

    #[test]
    fn a_witness_says_whether_a_db_server_answers_and_nothing_else() {
        let role = fixture_role("disp1");
        let db1 = role.hosts.iter().find(|h| h.name == "db1").unwrap().ip;
        let db2 = role.hosts.iter().find(|h| h.name == "db2").unwrap().ip;
        let dir = tempfile::tempdir().unwrap();
        let answer = |f: &Recording, q: &str| answer(f, dir.path(), &role, q);
        let fake = Recording::new();
        fake.open(SocketAddr::from((db1, 5432)));
        fake.refuse(SocketAddr::from((db2, 5432)));
        assert_eq!(answer(&fake, "reach db1").unwrap(), "up");
        assert_eq!(
            answer(&fake, "reach db2").unwrap(),
            "down (Connection refused)"
        );
        for bad in [
            "reach disp2",
            "reach 10.0.0.1",
            "cat /etc/shadow",
            "",
            "reach",
            "status now",
            "status; id",
        ] {
            let e = answer(&fake, bad).unwrap_err().to_string();
            assert!(
                e.contains("not a DB server") || e.contains("answers only"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            Probe::parse("unreachable (No route to host)"),
            Some(Probe::Unreachable("(No route to host)".into()))
        );
        assert_eq!(Probe::parse("Permission denied"), None);
    }

    #[test]
    fn questions_go_over_ssh_with_the_host_key_pinned_and_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Recording::new();
        fake.on("airlock-peer@192.0.2.21 'reach db1'", 0, "up\n");
        fake.on("airlock-peer@192.0.2.22 'reach db1'", 255, "");
        let hosts = [
            ("disp1".to_string(), "192.0.2.21".parse().unwrap()),
            ("disp2".to_string(), "192.0.2.22".parse().unwrap()),
        ];
        let answers = ask_all_within(&fake, dir.path(), &hosts, "reach db1", ASK_BOUND_SECS);
        assert_eq!(answers[0].1.as_deref().unwrap(), "up");
        assert!(answers[1].1.is_err());
        let line = fake
            .commands()
            .into_iter()
            .find(|c| c.contains("192.0.2.21"))
            .unwrap();
        assert!(line.starts_with("timeout 3 ssh -i "), "{line}");
        for o in [
            "StrictHostKeyChecking=yes",
            "HostKeyAlgorithms=ssh-ed25519",
            "BatchMode=yes",
            "cluster_known_hosts",
        ] {
            assert!(line.contains(o), "{o} in {line}");
        }
    }

    #[test]
    fn a_connection_closed_before_a_word_is_tried_once_more_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Recording::new();
        fake.on_outputs("192.0.2.21 status", &[(255, "", ""), (0, "{}\n", "")]);
        fake.on_outputs(
            "192.0.2.22 status",
            &[(
                255,
                "",
                "ssh: connect to host 192.0.2.22 port 22: No route to host\n",
            )],
        );
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            ask_within(&fake, dir.path(), ip("192.0.2.21"), "status", 6).unwrap(),
            "{}"
        );
        let e = ask_within(&fake, dir.path(), ip("192.0.2.22"), "status", 6).unwrap_err();
        assert!(format!("{e:#}").contains("No route to host"), "{e:#}");
        let tries = |host: &str| fake.commands().iter().filter(|c| c.contains(host)).count();
        assert_eq!((tries("192.0.2.21"), tries("192.0.2.22")), (2, 1));
    }
}
