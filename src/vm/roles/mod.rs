//! The roles, one file each. A role is a list of [`Step`]s after the
//! common ones; adding a role is one new file here plus one line in
//! [`steps_for`].

pub mod common;
pub mod db;
pub mod db_master;
pub mod db_replica;
pub mod leader;
pub mod manager;

use crate::shared::role::Role;
use crate::shared::role::RoleFile;
use crate::vm::engine::Step;

/// The steps of this host's role, in order.
pub fn steps_for(role: &RoleFile) -> Vec<Step> {
    let mut steps = common::steps();
    steps.extend(match role.host.role {
        Role::DbMaster => db_master::steps(role),
        Role::DbReplica => db_replica::steps(role),
        Role::Leader => leader::steps(role),
        Role::Manager => manager::steps(role),
    });
    steps
}

/// A step from its name and two functions.
pub(crate) const fn step(
    name: &'static str,
    check: fn(&crate::vm::engine::Ctx) -> anyhow::Result<bool>,
    apply: fn(&crate::vm::engine::Ctx) -> anyhow::Result<()>,
) -> Step {
    Step { name, check, apply }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::testing::fixture_role;

    fn names(host: &str) -> Vec<&'static str> {
        steps_for(&fixture_role(host))
            .iter()
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn each_role_has_its_steps_after_the_common_ones() {
        let common = ["identity", "repository", "clone-hygiene", "peer-user"];
        let with = |rest: &[&'static str]| [&common[..], rest].concat();
        assert_eq!(
            names("db1"),
            with(&[
                "install-db",
                "pg-config",
                "keepalived",
                "vip-ready",
                "single-primary"
            ])
        );
        assert_eq!(
            names("db2"),
            with(&[
                "wait-master",
                "install-db",
                "basebackup",
                "pg-config",
                "streaming",
                "keepalived",
                "single-primary"
            ])
        );
        assert_eq!(
            names("disp1"),
            with(&["wait-db", "install-leader", "token-user"])
        );
        assert_eq!(names("disp2"), with(&["wait-leader", "join"]));
    }
}
