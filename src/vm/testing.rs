//! Helpers for the runner's unit tests: a cluster's role files and a root
//! directory laid out as a clone would have it.

use std::fs;
use std::path::Path;

use crate::shared::journal::Journal;
use crate::shared::role::RoleFile;

/// The article's stand on a test network, as role files: a DB pair with a
/// VIP (db1, db2), a leader (disp1) and two managers (disp2, disp3 with a
/// MAC), PostgreSQL 15. Committed TOML, so the runner's tests do not depend
/// on the builder; `tests/fixtures/roles/` holds them.
const STAND: [(&str, &str); 5] = [
    ("db1", include_str!("../../tests/fixtures/roles/db1.toml")),
    ("db2", include_str!("../../tests/fixtures/roles/db2.toml")),
    (
        "disp1",
        include_str!("../../tests/fixtures/roles/disp1.toml"),
    ),
    (
        "disp2",
        include_str!("../../tests/fixtures/roles/disp2.toml"),
    ),
    (
        "disp3",
        include_str!("../../tests/fixtures/roles/disp3.toml"),
    ),
];

/// The role file of `host` in the stand.
pub fn fixture_role(host: &str) -> RoleFile {
    let (_, text) = STAND
        .iter()
        .find(|(name, _)| *name == host)
        .expect("a host of the stand");
    RoleFile::parse(text, host).expect("the stand's role file parses")
}

/// The role file of `host` in the stand with PostgreSQL `major`.
pub fn fixture_role_pg(host: &str, major: u32) -> RoleFile {
    let mut role = fixture_role(host);
    role.database.postgresql = major;
    if let Some(pg) = role.host.postgres.as_mut() {
        pg.major = major;
        pg.data_dir = format!("/var/lib/postgresql/{major}/main");
    }
    role
}

/// A fresh journal for `role`'s steps.
pub fn journal_for(role: &RoleFile) -> Journal {
    let names: Vec<&str> = crate::vm::roles::steps_for(role)
        .iter()
        .map(|s| s.name)
        .collect();
    Journal::new(&role.host.name, role.host.role, &role.instance_id, &names)
}

/// Writes `content` at `vm_path` under `root`.
pub fn put(root: &Path, vm_path: &str, content: &str) {
    let p = root.join(vm_path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}
