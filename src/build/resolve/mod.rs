//! Whether apt can install a role's packages: their whole `Pre-Depends` and
//! `Depends` closure against the merged repository plus the reference VM's
//! installed base, with version constraints, alternatives, virtual packages
//! (versioned `Provides` too), `Breaks` and `Conflicts`.
//!
//! Pure: the input is control paragraphs already read (the repository's,
//! the base's), the output is what would be installed and every problem,
//! each with the chain of relations that needs it. The rules are apt's, so
//! the integration test can hold apt itself up as the oracle: apt installs
//! the *candidate* of a package (the newest version, or the installed one
//! when nothing newer is there) and never an older version to satisfy a
//! constraint; a dependency already satisfied by what is installed or
//! chosen stays as it is; of alternatives the first that can be had wins; a
//! virtual package asked for by name needs exactly one provider.

pub mod relation;
pub mod version;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::build::repo::control::Paragraph;
use relation::{Alternatives, Name, Names, Relation};
use version::Version;

/// Where a package is: `installed` (the base) or a disc's role.
pub const INSTALLED: &str = "installed";

/// One version of one package, with the relations the check reads.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: Name,
    pub version: Version,
    pub arch: Name,
    /// The disc it is on (`main`, `devel`, `update1`, …) or [`INSTALLED`].
    pub origin: Name,
    /// `Pre-Depends` then `Depends`.
    pub depends: Vec<Alternatives>,
    pub provides: Vec<Relation>,
    /// `Conflicts` and `Breaks` (both forbid the pair being installed).
    pub conflicts: Vec<Relation>,
}

impl Package {
    /// Reads the fields the check needs from a control paragraph, each
    /// name and version shared through `names`; a malformed relation is an
    /// error naming the package and the field.
    pub fn from_paragraph(
        p: &Paragraph,
        origin: &str,
        names: &mut Names,
    ) -> Result<Package, String> {
        let name = p.get("Package").map(str::trim).unwrap_or_default();
        let version = p.get("Version").map(str::trim).unwrap_or_default();
        if name.is_empty() || version.is_empty() {
            return Err(format!("{origin}: a paragraph without Package or Version"));
        }
        let mut field = |f: &str| {
            relation::parse_field(p.get(f).unwrap_or_default(), names)
                .map_err(|e| format!("{origin}: {name} {version}: {f}: {e}"))
        };
        let flat = |alts: Vec<Alternatives>| alts.into_iter().flat_map(|a| a.0).collect::<Vec<_>>();
        let mut depends = field("Pre-Depends")?;
        depends.extend(field("Depends")?);
        let mut conflicts = flat(field("Conflicts")?);
        conflicts.extend(flat(field("Breaks")?));
        let provides = flat(field("Provides")?);
        Ok(Package {
            name: names.get(name),
            version: Version::from(names.get(version)),
            arch: names.get(p.get("Architecture").unwrap_or("all").trim()),
            origin: names.get(origin),
            depends,
            provides,
            conflicts,
        })
    }

    /// `name version`.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// `name version on main` / `name version in the base`.
    fn whereabouts(&self) -> String {
        if &*self.origin == INSTALLED {
            format!("{} installed in the base", self.label())
        } else {
            format!("{} on {}", self.label(), self.origin)
        }
    }
}

/// Whether a dpkg status paragraph is an installed package
/// (`Status: install ok installed`, or `hold ok installed`).
pub fn is_installed(p: &Paragraph) -> bool {
    p.get("Status")
        .and_then(|s| s.split_whitespace().nth(2))
        .is_some_and(|s| s == "installed")
}

/// Every package apt could see: the repository's (of the wanted
/// architectures) and the installed base.
#[derive(Debug, Default)]
pub struct Universe {
    /// By name, newest first.
    available: BTreeMap<Name, Vec<Package>>,
    installed: BTreeMap<Name, Package>,
    /// Virtual name → (provider name, its version, the provided version).
    providers: BTreeMap<Name, Vec<(Name, Version, Option<Version>)>>,
}

impl Universe {
    /// `repository`: packages of any architecture (those not in
    /// `architectures` nor `all` are left out); `base`: installed ones.
    pub fn new(repository: Vec<Package>, base: Vec<Package>, architectures: &[String]) -> Universe {
        let mut u = Universe::default();
        for p in repository
            .into_iter()
            .filter(|p| &*p.arch == "all" || architectures.iter().any(|a| **a == *p.arch))
        {
            u.available.entry(p.name.clone()).or_default().push(p);
        }
        for list in u.available.values_mut() {
            list.sort_by(|a, b| b.version.cmp(&a.version));
            list.dedup_by(|a, b| a.version == b.version);
        }
        for p in base {
            u.installed.insert(p.name.clone(), p);
        }
        let all: Vec<&Package> = u
            .installed
            .values()
            .chain(u.available.values().flatten())
            .collect();
        let mut providers: BTreeMap<Name, Vec<(Name, Version, Option<Version>)>> = BTreeMap::new();
        for p in all {
            for v in &p.provides {
                providers.entry(v.name.clone()).or_default().push((
                    p.name.clone(),
                    p.version.clone(),
                    v.constraint.as_ref().map(|(_, ver)| ver.clone()),
                ));
            }
        }
        u.providers = providers;
        u
    }

    /// Packages in the repository (of the wanted architectures).
    pub fn available_count(&self) -> usize {
        self.available.values().map(Vec::len).sum()
    }

    /// What apt would install for `name`: the newest available version, or
    /// the installed one when it is as new.
    fn candidate(&self, name: &str) -> Option<&Package> {
        let newest = self.available.get(name).and_then(|l| l.first());
        match (self.installed.get(name), newest) {
            (Some(i), Some(n)) if n.version > i.version => Some(n),
            (Some(i), _) => Some(i),
            (None, n) => n,
        }
    }

    /// Providers of `name` whose candidate provides it acceptably for `rel`.
    fn providers_for(&self, rel: &Relation) -> Vec<&Package> {
        let mut out: Vec<&Package> = Vec::new();
        for (pname, pversion, provided) in self.providers.get(&rel.name).into_iter().flatten() {
            let ok = match (&rel.constraint, provided) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(_), Some(v)) => rel.accepts(v),
            };
            if let Some(c) = self
                .candidate(pname)
                .filter(|c| ok && c.version == *pversion)
                && !out.iter().any(|p| p.name == c.name)
            {
                out.push(c);
            }
        }
        out
    }

    /// What is there of `name` (every version, providers), for messages.
    fn instead(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .installed
            .get(name)
            .into_iter()
            .chain(self.available.get(name).into_iter().flatten())
            .map(Package::whereabouts)
            .collect();
        for (pname, pversion, provided) in self.providers.get(name).into_iter().flatten() {
            let what = match provided {
                Some(v) => format!("{name} (= {v})"),
                None => name.to_string(),
            };
            out.push(format!("{pname} {pversion} provides {what}"));
        }
        out.dedup();
        out
    }
}

/// What kind of problem a role has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Nothing of that name on any disc, in the base, or providing it.
    Missing,
    /// The package is there, but what apt would install does not satisfy
    /// the constraint.
    Version,
    /// Two packages that would be installed together conflict (or break
    /// one another).
    Conflict,
    /// A virtual package asked for by name that several packages provide.
    Ambiguous,
}

/// One reason a role cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: Kind,
    /// The relations from the role's package down to the one that fails
    /// (`["keepalived", "libnl-3-200 (>= 3.2.7)"]`).
    pub chain: Vec<String>,
    /// Why it fails (`not on any disc`).
    pub reason: String,
    /// What is there instead (`libnl-3-200 3.2.2 on main`).
    pub instead: Vec<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {}", self.chain.join(" → "), self.reason)?;
        if !self.instead.is_empty() {
            write!(f, " (there is {})", self.instead.join(", "))?;
        }
        Ok(())
    }
}

/// What installing a role's packages would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Packages apt would install or upgrade, as `name version on disc`.
    pub installs: Vec<String>,
    /// The same packages, each as (name, version, architecture, disc).
    #[serde(skip)]
    pub picked: Vec<Picked>,
    pub problems: Vec<Problem>,
}

/// A package the resolver picked from a disc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The role of the disc it is on (`main`, `devel`, `update1`…).
    pub disc: String,
}

/// Resolves `wanted` (package names, as `apt-get install` takes them).
pub fn resolve(u: &Universe, wanted: &[String]) -> Outcome {
    let mut r = Resolver {
        u,
        chosen: u.installed.iter().map(|(n, p)| (&**n, p)).collect(),
        queue: VecDeque::new(),
        problems: Vec::new(),
    };
    r.request(wanted);
    r.walk_dependencies();
    r.check_conflicts();
    let from_discs = || r.chosen.values().filter(|p| &*p.origin != INSTALLED);
    Outcome {
        installs: from_discs().map(|p| p.whereabouts()).collect(),
        picked: from_discs()
            .map(|p| Picked {
                name: p.name.to_string(),
                version: p.version.to_string(),
                arch: p.arch.to_string(),
                disc: p.origin.to_string(),
            })
            .collect(),
        problems: r.problems,
    }
}

struct Resolver<'u> {
    u: &'u Universe,
    /// What will be on the machine: the base, then every package picked.
    chosen: BTreeMap<&'u str, &'u Package>,
    /// Picked packages whose dependencies are still to be walked, with the
    /// chain that brought them in.
    queue: VecDeque<(&'u Package, Vec<String>)>,
    problems: Vec<Problem>,
}

impl<'u> Resolver<'u> {
    /// Phase 1: each wanted package, as `apt-get install NAME` reads it.
    fn request(&mut self, wanted: &[String]) {
        for name in wanted {
            let chain = vec![name.clone()];
            let rel = Relation {
                name: name.as_str().into(),
                constraint: None,
            };
            let real = self.u.candidate(name).is_some();
            let providers = self.u.providers_for(&rel);
            if !real && providers.len() > 1 {
                let names: Vec<String> = providers.iter().map(|p| p.label()).collect();
                self.problems.push(Problem {
                    kind: Kind::Ambiguous,
                    chain,
                    reason: "a virtual package with several providers: name one of them".into(),
                    instead: names,
                });
                continue;
            }
            self.need(&Alternatives(vec![rel]), chain);
        }
    }

    /// Phase 2: the dependencies of every package picked, breadth first.
    fn walk_dependencies(&mut self) {
        while let Some((pkg, chain)) = self.queue.pop_front() {
            for alts in &pkg.depends {
                let mut next = chain.clone();
                next.push(alts.to_string());
                self.need(alts, next);
            }
        }
    }

    /// One dependency: satisfied already, or the first alternative that
    /// can be had is picked; otherwise a problem.
    fn need(&mut self, alts: &Alternatives, chain: Vec<String>) {
        if alts.0.iter().any(|r| self.satisfied(r)) {
            return;
        }
        for rel in &alts.0 {
            if let Some(pick) = self.pickable(rel) {
                self.chosen.insert(&pick.name, pick);
                self.queue.push_back((pick, chain));
                return;
            }
        }
        self.problems.push(self.unsatisfiable(alts, chain));
    }

    /// Whether what is chosen (or installed) satisfies `rel`, by name or
    /// by a `Provides`.
    fn satisfied(&self, rel: &Relation) -> bool {
        if self
            .chosen
            .get(&*rel.name)
            .is_some_and(|p| rel.accepts(&p.version))
        {
            return true;
        }
        self.u
            .providers
            .get(&rel.name)
            .into_iter()
            .flatten()
            .any(|(pname, pversion, provided)| {
                let provides_ok = match (&rel.constraint, provided) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(_), Some(v)) => rel.accepts(v),
                };
                provides_ok
                    && self
                        .chosen
                        .get(&**pname)
                        .is_some_and(|p| p.version == *pversion)
            })
    }

    /// The package apt would take for `rel`: the real package's candidate
    /// when it satisfies `rel`, else the first provider that does.
    fn pickable(&self, rel: &Relation) -> Option<&'u Package> {
        if let Some(c) = self.u.candidate(&rel.name)
            && rel.accepts(&c.version)
        {
            return Some(c);
        }
        self.u.providers_for(rel).into_iter().next()
    }

    /// Why none of `alts` can be had, with what is there instead.
    fn unsatisfiable(&self, alts: &Alternatives, chain: Vec<String>) -> Problem {
        let mut instead = Vec::new();
        let mut kind = Kind::Missing;
        let mut reason = "not on any disc".to_string();
        for rel in &alts.0 {
            let there = self.u.instead(&rel.name);
            if let Some(c) = self.u.candidate(&rel.name) {
                kind = Kind::Version;
                if self
                    .u
                    .available
                    .get(&rel.name)
                    .is_some_and(|l| l.len() > 1 || &*c.origin == INSTALLED)
                {
                    reason = format!(
                        "not on any disc (apt takes the newest, {}, and no older one)",
                        c.label()
                    );
                }
            } else if !there.is_empty() {
                kind = Kind::Version;
            }
            instead.extend(there);
        }
        if alts.0.len() > 1 && kind == Kind::Missing {
            reason = "none of the alternatives is on any disc".into();
        }
        Problem {
            kind,
            chain,
            reason,
            instead,
        }
    }

    /// Phase 3: no two packages that would be installed together conflict
    /// or break each other (at least one of them picked here).
    fn check_conflicts(&mut self) {
        let chosen: Vec<&Package> = self.chosen.values().copied().collect();
        for p in chosen.iter().filter(|p| &*p.origin != INSTALLED) {
            for q in &chosen {
                if q.name == p.name {
                    continue;
                }
                for (a, b) in [(*p, *q), (*q, *p)] {
                    if let Some(rel) = a.conflicts.iter().find(|c| hits(c, b)) {
                        self.push_conflict(a, rel, b);
                    }
                }
            }
        }
    }

    fn push_conflict(&mut self, a: &Package, rel: &Relation, b: &Package) {
        let problem = Problem {
            kind: Kind::Conflict,
            chain: vec![a.label(), format!("conflicts with {rel}")],
            reason: format!(
                "{} would be installed too{}",
                b.label(),
                if &*b.origin == INSTALLED {
                    " (it is installed in the base: apt would remove it)"
                } else {
                    ""
                }
            ),
            instead: Vec::new(),
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }
}

/// Whether conflict `c` (of another package) names `b` or something `b`
/// provides.
fn hits(c: &Relation, b: &Package) -> bool {
    if c.name == b.name {
        return c.accepts(&b.version);
    }
    b.provides.iter().any(|v| {
        v.name == c.name
            && match (&c.constraint, &v.constraint) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(_), Some((_, pv))) => c.accepts(pv),
            }
    })
}

#[cfg(test)]
mod tests;
