//! `airlock check` (and the same check inside `airlock build`): can apt
//! install each role's packages from the bundle's repository onto the
//! reference VM's base?
//!
//! The role lists come from the recipe's `[packages]` or from
//! [`default_packages`]; the repository is the discs' own indexes (for
//! `check`) or the controls the build read from every `.deb` (for
//! `build`); the base is `media.base_status`, or the main disc's
//! `required` and `important` packages. [`evaluate`] and [`to_text`] are
//! pure; the resolving is [`crate::build::resolve`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::plan::Plan;
use crate::build::recipe::{Recipe, Role};
use crate::build::repo::{self, control, control::Paragraph};
use crate::build::resolve::relation::Names;
use crate::build::resolve::{self, INSTALLED, Package, Problem, Universe};

/// What a role's steps and the vendor installer install when the recipe
/// does not say: the vendor's `install.sh db` installs
/// `postgresql-<major>`, the keepalived step `keepalived`; the dispatchers
/// run Docker, and the leader's installer checks the database with `psql`.
pub fn default_packages(role: Role, postgresql: u32) -> Vec<String> {
    match role {
        Role::DbMaster | Role::DbReplica => {
            vec![format!("postgresql-{postgresql}"), "keepalived".into()]
        }
        Role::Leader => vec![
            "docker.io".into(),
            format!("postgresql-client-{postgresql}"),
        ],
        Role::Manager => vec!["docker.io".into()],
    }
}

/// Where the installed base came from.
#[derive(Debug, Clone, Serialize)]
pub struct Base {
    /// `media.base_status`'s path, or `main disc priorities`.
    pub source: String,
    /// Packages counted as installed.
    pub packages: usize,
}

/// One role's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct RoleReport {
    pub role: Role,
    /// The recipe's hosts with this role.
    pub hosts: Vec<String>,
    /// What is installed for it, as `apt-get install` names them.
    pub packages: Vec<String>,
    /// `recipe` (from `[packages]`) or `default`.
    pub list: &'static str,
    /// What apt would install or upgrade (`name version on disc`).
    pub installs: Vec<String>,
    /// The same, each with its architecture (what a closure subset takes).
    #[serde(skip)]
    pub picked: Vec<resolve::Picked>,
    pub problems: Vec<Problem>,
}

/// The whole check: `airlock check --json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No role has a problem.
    pub ok: bool,
    /// Packages in the repository (of the recipe's architectures).
    pub repository: usize,
    pub base: Base,
    /// The recipe's roles, in the order db-master, db-replica, leader,
    /// manager.
    pub roles: Vec<RoleReport>,
}

/// The check for a planned recipe: reads the discs' indexes and the base
/// status file, then [`evaluate`]s.
pub fn check_discs(recipe: &Recipe, plan: &Plan) -> Result<Report> {
    disc_check(recipe, plan).map(|(_, _, report)| report)
}

/// (disc role, paragraph) of every package a catalog lists.
type Catalog = Vec<(String, Paragraph)>;

/// The discs' own catalog, the installed base over it and the check.
fn disc_check(recipe: &Recipe, plan: &Plan) -> Result<(Catalog, Installed, Report)> {
    let discs = plan
        .media
        .sources()
        .into_iter()
        .map(|(role, path)| match path {
            Some(p) => Ok((role, p.clone())),
            None => bail!("media.main: not set; `airlock check` needs the main disc"),
        })
        .collect::<Result<Vec<_>>>()?;
    let catalog = repo::disc_catalog(&discs)?;
    let repository = catalog_packages(&catalog)?;
    let installed = installed_base(&catalog, &repository, read_base(plan)?.as_ref())?;
    let report = evaluate(recipe, plan, repository, &installed)?;
    Ok((catalog, installed, report))
}

/// `repository.subset = "closure"`: the pool paths of every package some
/// role installs, resolved over the discs' own indexes as [`check_discs`]
/// does, with the check's report and the installed base it counted: the
/// subset leaves that base out, so a check over the subset needs it given.
pub fn closure_paths(
    recipe: &Recipe,
    plan: &Plan,
) -> Result<(BTreeSet<String>, Installed, Report)> {
    let (catalog, installed, report) = disc_check(recipe, plan)?;
    let mut paths = BTreeSet::new();
    for picked in report.roles.iter().flat_map(|r| &r.picked) {
        let resolve::Picked {
            name,
            version,
            arch,
            disc,
        } = picked;
        let files: Vec<String> = catalog
            .iter()
            .filter(|(d, p)| {
                d == disc
                    && p.get("Package").map(str::trim) == Some(name)
                    && p.get("Version").map(str::trim) == Some(version)
                    && p.get("Architecture").unwrap_or("all").trim() == arch
            })
            .filter_map(|(_, p)| p.get("Filename").map(String::from))
            .collect();
        if files.is_empty() {
            bail!("{name} {version} ({arch}) on {disc}: no Filename in its disc's index");
        }
        paths.extend(files);
    }
    Ok((paths, installed, report))
}

/// The base status file's paragraphs with its path, when the recipe names
/// one.
pub fn read_base(plan: &Plan) -> Result<Option<(String, Vec<Paragraph>)>> {
    let Some(path) = &plan.media.base_status else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "media.base_status: reading {} (copy /var/lib/dpkg/status from the reference VM)",
            path.display()
        )
    })?;
    let paragraphs = control::parse_all(&text).map_err(|e| {
        anyhow::anyhow!(
            "media.base_status: {}: {e}: not a dpkg status file",
            path.display()
        )
    })?;
    Ok(Some((path.display().to_string(), paragraphs)))
}

/// The check over a catalog's packages ([`catalog_packages`]) and the
/// installed base ([`installed_base`]).
pub fn evaluate(
    recipe: &Recipe,
    plan: &Plan,
    repository: Vec<Package>,
    installed: &Installed,
) -> Result<Report> {
    let base = installed.base.clone();
    let universe = Universe::new(
        repository,
        installed.packages.clone(),
        &plan.repository.architectures,
    );
    let roles = role_lists(recipe, plan)
        .into_iter()
        .map(|(role, (hosts, packages, list))| {
            let outcome = resolve::resolve(&universe, &packages);
            RoleReport {
                role,
                hosts,
                packages,
                list,
                installs: outcome.installs,
                picked: outcome.picked,
                problems: outcome.problems,
            }
        })
        .collect::<Vec<_>>();
    Ok(Report {
        ok: roles.iter().all(|r| r.problems.is_empty()),
        repository: universe.available_count(),
        base,
        roles,
    })
}

/// Every catalog paragraph (disc role, control paragraph) as a package,
/// read once for the installed base and the check; a malformed relation
/// field is an error (apt would refuse the index too).
pub fn catalog_packages(catalog: &[(String, Paragraph)]) -> Result<Vec<Package>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut names = Names::default();
    for (disc, p) in catalog {
        match Package::from_paragraph(p, disc, &mut names) {
            Ok(pkg) => out.push(pkg),
            Err(e) => errors.push(e),
        }
    }
    if let Some(first) = errors.first() {
        bail!(
            "{} package(s) with relation fields apt cannot read, first {first}",
            errors.len()
        );
    }
    Ok(out)
}

/// The packages counted as installed on the reference VM, and where
/// that comes from.
#[derive(Debug, Clone)]
pub struct Installed {
    pub base: Base,
    pub packages: Vec<Package>,
}

/// The installed base for a check over `catalog` (whose packages are
/// `repository`): the status file's (path and paragraphs) installed
/// packages, or `catalog`'s main disc `required` and `important` ones (the
/// newest of each). Read from the whole discs, it also serves a check over
/// a subset of them.
pub fn installed_base(
    catalog: &[(String, Paragraph)],
    repository: &[Package],
    status: Option<&(String, Vec<Paragraph>)>,
) -> Result<Installed> {
    let (packages, base) = base_packages(catalog, repository, status)?;
    Ok(Installed { base, packages })
}

/// The installed base: the status file's installed packages, or the main
/// disc's `required` and `important` ones (the newest of each).
fn base_packages(
    catalog: &[(String, Paragraph)],
    repository: &[Package],
    status: Option<&(String, Vec<Paragraph>)>,
) -> Result<(Vec<Package>, Base)> {
    let mut names = Names::default();
    let packages = match status {
        Some((path, paragraphs)) => paragraphs
            .iter()
            .filter(|p| resolve::is_installed(p))
            .map(|p| Package::from_paragraph(p, INSTALLED, &mut names))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("media.base_status: {path}: {e}"))?,
        None => {
            let mut newest: BTreeMap<&str, &Package> = BTreeMap::new();
            for ((disc, p), pkg) in catalog.iter().zip(repository) {
                let priority = p.get("Priority").map(str::trim).unwrap_or_default();
                if disc == "main" && matches!(priority, "required" | "important") {
                    let slot = newest.entry(&pkg.name).or_insert(pkg);
                    if pkg.version > slot.version {
                        *slot = pkg;
                    }
                }
            }
            newest
                .into_values()
                .map(|p| Package {
                    origin: INSTALLED.into(),
                    ..p.clone()
                })
                .collect()
        }
    };
    let base = Base {
        source: status.map_or_else(|| "main disc priorities".into(), |(p, _)| p.clone()),
        packages: packages.len(),
    };
    Ok((packages, base))
}

/// The recipe's roles with their hosts and package lists.
type RoleList = (Vec<String>, Vec<String>, &'static str);

fn role_lists(recipe: &Recipe, plan: &Plan) -> BTreeMap<Role, RoleList> {
    let mut roles: BTreeMap<Role, RoleList> = BTreeMap::new();
    for h in &plan.hosts {
        let entry = roles
            .entry(h.role)
            .or_insert_with(|| match recipe.packages.for_role(h.role) {
                Some(list) => (Vec::new(), list.clone(), "recipe"),
                None => (
                    Vec::new(),
                    default_packages(h.role, plan.database.postgresql),
                    "default",
                ),
            });
        entry.0.push(h.name.clone());
    }
    roles
}

/// The report for people: a line per role, then each problem.
pub fn to_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "repository: {} package(s); base: {} package(s) installed ({})",
        r.repository, r.base.packages, r.base.source
    );
    for role in &r.roles {
        let verdict = if role.problems.is_empty() {
            format!("ok, {} package(s) to install", role.installs.len())
        } else {
            format!("{} problem(s)", role.problems.len())
        };
        let _ = writeln!(
            out,
            "{} ({}): {} [{}]: {verdict}",
            role.role,
            role.hosts.join(", "),
            role.packages.join(" "),
            role.list
        );
        for p in &role.problems {
            let _ = writeln!(out, "  {}: {p}", role.role);
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if r.ok {
            "complete: apt can install every role's packages"
        } else {
            "INCOMPLETE: name the missing packages' discs in [media] (an update disc), or change [packages]"
        }
    );
    out
}

/// The build's refusal of an incomplete bundle: a failed check (exit 1),
/// which the command line tells apart from an I/O error.
#[derive(Debug, thiserror::Error)]
#[error(
    "the bundle would be incomplete; nothing was written:\n{report}pass --allow-incomplete to build it anyway, or see `airlock check {recipe}`"
)]
pub struct Incomplete {
    report: String,
    recipe: String,
}

/// [`Incomplete`] for report `r` of the recipe at `recipe`.
pub fn refuse(r: &Report, recipe: &Path) -> anyhow::Error {
    Incomplete {
        report: to_text(r),
        recipe: recipe.display().to_string(),
    }
    .into()
}
