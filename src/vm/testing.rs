//! Helpers for the runner's unit tests: a cluster's role files and a root
//! directory laid out as a clone would have it.

use std::fs;
use std::path::Path;

use crate::journal::Journal;
use crate::role::RoleFile;

/// The article's stand on a test network: a DB pair with a VIP, a leader
/// and two managers (disp3 with a MAC), PostgreSQL 15.
pub const STAND: &str = r#"version = 1
[cluster]
name = "lab"
domain = "lab.test"
[network]
cidr = "192.0.2.0/24"
gateway = "192.0.2.1"
[database]
vip = "192.0.2.10"
virtual_router_id = 42
postgresql = 15
user = "dbuser"
[[host]]
name = "db1"
role = "db-master"
ip = "192.0.2.11"
[[host]]
name = "db2"
role = "db-replica"
ip = "192.0.2.12"
[[host]]
name = "disp1"
role = "leader"
ip = "192.0.2.21"
[[host]]
name = "disp2"
role = "manager"
ip = "192.0.2.22"
[[host]]
name = "disp3"
role = "manager"
ip = "192.0.2.23"
mac = "52:54:00:00:02:23"
"#;

/// The role file of `host` in [`STAND`] (PostgreSQL 11 with `pg11`).
pub fn fixture_role_of(text: &str, host: &str) -> RoleFile {
    let src = crate::recipe::Source {
        path: "stand.toml".into(),
        text: text.into(),
    };
    let recipe = crate::recipe::parse(&src).expect("the stand parses");
    let plan = crate::plan::resolve(&recipe, &src, crate::plan::MediaCheck::Warn)
        .plan
        .expect("the stand resolves");
    let h = plan.host(host).expect("a host of the stand");
    RoleFile::new(&plan, h, format!("iid-{host}"))
}

pub fn fixture_role(host: &str) -> RoleFile {
    fixture_role_of(STAND, host)
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
