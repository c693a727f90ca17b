//! db-master: the vendor installer's `db`, the replication lines, and (in a
//! pair) keepalived with the VIP.

use anyhow::{Context, Result};

use super::db::{self, pair};
use super::step;
use crate::shared::role::DatabaseMode;
use crate::shared::role::RoleFile;
use crate::vm::engine::{Ctx, Step};

pub fn steps(role: &RoleFile) -> Vec<Step> {
    let mut v = vec![
        step("install-db", db::install_db_check, db::install_db_apply),
        step("pg-config", db::pg_config_check, db::pg_config_apply),
    ];
    if role.database.mode == DatabaseMode::Pair {
        v.push(step(
            "keepalived",
            db::keepalived_check,
            db::keepalived_apply,
        ));
        v.push(step("vip-ready", vip_check, vip_apply));
        v.push(step(
            "single-primary",
            db::single_primary_check,
            db::single_primary_apply,
        ));
    }
    v
}

fn vip_check(c: &Ctx) -> Result<bool> {
    Ok(pair(c)
        && c.role
            .database
            .vip
            .is_some_and(|vip| db::pg_ready(c, &vip.to_string())))
}

fn vip_apply(c: &Ctx) -> Result<()> {
    let vip = c.role.database.vip.context("no VIP in a pair")?;
    c.wait_until(
        &format!(
            "PostgreSQL to answer on the VIP {vip}:{}",
            c.role.database.port
        ),
        || db::pg_ready(c, &vip.to_string()),
    )
}
