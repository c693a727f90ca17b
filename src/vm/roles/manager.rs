//! manager: waits for the leader's swarm port, fetches the join token over
//! SSH (the bundle's client key, the leader's host key pinned, a forced
//! command that only prints the token) and joins with the vendor installer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::db::vendor_install;
use super::leader::docker_info;
use super::step;
use crate::shared::paths;
use crate::shared::paths::TOKEN_USER;
use crate::shared::role::RoleFile;
use crate::vm::edits;
use crate::vm::engine::{Ctx, Step, first_line};
use crate::vm::exec::Cmd;

pub fn steps(_role: &RoleFile) -> Vec<Step> {
    vec![
        step("wait-leader", leader_port_check, leader_port_apply),
        step("join", manager_check, manager_apply),
    ]
}

/// Seconds between two managers' joins: Raft takes one new manager at a
/// time, and two joining at once can leave the swarm without quorum.
const JOIN_SPACING: u64 = 15;

fn leader_port(c: &Ctx) -> SocketAddr {
    SocketAddr::from((c.role.swarm.leader_ip, c.role.swarm.port))
}

fn leader_port_check(c: &Ctx) -> Result<bool> {
    Ok(c.exec.connects(leader_port(c), Duration::from_secs(2)))
}

fn leader_port_apply(c: &Ctx) -> Result<()> {
    let addr = leader_port(c);
    c.wait_until(
        &format!("the swarm leader {} at {addr}", c.role.swarm.leader),
        || c.exec.connects(addr, Duration::from_secs(2)),
    )
}

fn manager_check(c: &Ctx) -> Result<bool> {
    Ok(docker_info(c, ".Swarm.ControlAvailable") == "true")
}

/// Fetches the join token over SSH.
fn fetch_token(c: &Ctx) -> Result<String> {
    let key = c.path(paths::TOKEN_CLIENT_KEY);
    let known = c.path(paths::LEADER_KNOWN_HOSTS);
    let leader = c.role.swarm.leader_ip.to_string();
    let out = c.exec.run(&crate::vm::peer::pinned_ssh(
        &key,
        &known,
        5,
        &format!("{TOKEN_USER}@{leader}"),
        "token",
    ))?;
    edits::find_swarm_token(&out.stdout)
        .ok_or_else(|| anyhow!("the leader {leader} answered without a join token"))
}

fn manager_apply(c: &Ctx) -> Result<()> {
    let mut token = None;
    let leader = &c.role.swarm.leader;
    c.wait_for(
        &format!("the join token from the leader {leader}"),
        || match fetch_token(c) {
            Ok(t) => {
                token = Some(t);
                Ok(())
            }
            Err(e) => Err(format!("{e:#}").replace('\n', " ")),
        },
    )?;
    let token = token.expect("the wait succeeded");
    space_the_joins(c);
    join_with_retries(c, &token)?;
    c.wait_until("this node to be a swarm manager", || {
        docker_info(c, ".Swarm.ControlAvailable") == "true"
    })
}

/// Managers join in plan order, [`JOIN_SPACING`] seconds apart.
fn space_the_joins(c: &Ctx) {
    let position = c
        .role
        .swarm
        .managers
        .iter()
        .position(|m| *m == c.role.host.name)
        .unwrap_or(0) as u64;
    if position > 0 && docker_info(c, ".Swarm.ControlAvailable") != "true" {
        eprintln!(
            "airlock-firstboot: manager {} of {}: joining {} s after the first",
            position + 1,
            c.role.swarm.managers.len(),
            JOIN_SPACING * position
        );
        c.exec.sleep(Duration::from_secs(JOIN_SPACING * position));
    }
}

/// Managers that join at the same moment can make Raft refuse one of them
/// ("can't initialize raft node"): leave the half-joined state and retry.
fn join_with_retries(c: &Ctx, token: &str) -> Result<()> {
    let leader_ip = c.role.swarm.leader_ip.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match vendor_install(c, &["multi", "manager", &leader_ip], None, Some(token)) {
            Ok(_) => return Ok(()),
            Err(_) if docker_info(c, ".Swarm.ControlAvailable") == "true" => return Ok(()),
            Err(e) if attempt < 5 => {
                eprintln!(
                    "airlock-firstboot: joining failed (attempt {attempt} of 5), retrying: {}",
                    first_line(&format!("{e:#}"))
                );
                let _ = c
                    .exec
                    .output(&Cmd::new("docker").args(["swarm", "leave", "--force"]));
                c.exec.sleep(Duration::from_secs(2 * attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for, put};

    #[test]
    fn the_second_manager_fetches_the_token_waits_its_turn_and_joins_with_it_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let role = fixture_role("disp3");
        put(root, "/opt/airlock/vendor/install.sh", "");
        let fake = Recording::new();
        fake.on_seq(
            "airlock-token@192.0.2.21 token",
            &[(255, ""), (0, "SWMTKN-1-abcdefghijklmnopqrstuvwxyz0123\n")],
        )
        .on_seq(".Swarm.ControlAvailable", &[(0, "false\n"), (0, "true\n")]);
        let c = Ctx::new(root, &role, &fake, 60, None, journal_for(&role));
        manager_apply(&c).unwrap();
        let log = fake.log();
        assert!(log.contains(&"sleep 1s".to_string()), "{log:?}");
        assert!(log.contains(&"sleep 15s".to_string()), "{log:?}");
        let join = log.iter().find(|l| l.contains("multi manager")).unwrap();
        assert!(
            join.ends_with("install.sh multi manager 192.0.2.21 ***"),
            "{join}"
        );
        assert!(!log.concat().contains("SWMTKN-1-abc"));
    }

    #[test]
    fn wait_leader_probes_the_swarm_port_until_it_opens() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("disp2");
        let closed = Recording::new();
        let c = Ctx::new(dir.path(), &role, &closed, 4, None, journal_for(&role));
        assert!(!leader_port_check(&c).unwrap());
        let e = format!("{:#}", leader_port_apply(&c).unwrap_err());
        assert!(
            e.contains("the swarm leader disp1 at 192.0.2.21:2377"),
            "{e}"
        );
        assert_eq!(
            closed.log(),
            [
                "connect 192.0.2.21:2377",
                "connect 192.0.2.21:2377",
                "sleep 1s",
                "connect 192.0.2.21:2377",
                "sleep 2s",
                "connect 192.0.2.21:2377",
                "sleep 4s",
                "connect 192.0.2.21:2377",
            ]
        );
        let open = Recording::new();
        open.open("192.0.2.21:2377".parse().unwrap());
        let c = Ctx::new(dir.path(), &role, &open, 4, None, journal_for(&role));
        assert!(leader_port_check(&c).unwrap());
        leader_port_apply(&c).unwrap();
    }
}
