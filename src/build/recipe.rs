//! The cluster recipe: one TOML file that describes one site.
//!
//! The file is versioned (`version = 1`, read first) and strict: an unknown
//! key, a wrong type or a missing field is an error that names the file, the
//! line and column, and the key path (`host[3].rol`), and suggests the close
//! spelling when there is one. Nothing here touches the disk beyond reading
//! the recipe itself; consistency across fields is the job of [`crate::build::plan`].

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The recipe format this build of airlock reads.
pub const CURRENT_VERSION: i64 = 1;

/// A parsed recipe, version 1.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Format version of the file. Always 1 for this model.
    pub version: i64,
    /// The site's name and DNS domain.
    pub cluster: Cluster,
    /// The one IPv4 network every host of the cluster sits on.
    pub network: Network,
    /// Where the install discs are, at build time.
    #[serde(default)]
    pub media: Media,
    /// The apt repository the VMs will use.
    #[serde(default)]
    pub repository: Repository,
    /// The packages each role installs, for `airlock check`.
    #[serde(default, skip_serializing_if = "Packages::is_default")]
    pub packages: Packages,
    /// The PostgreSQL pair (or single server) behind the dispatchers.
    pub database: Database,
    /// The virtual machines, one `[[host]]` table each.
    #[serde(rename = "host", default)]
    pub hosts: Vec<Host>,
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Short name of the cluster (an RFC 1123 label), used in instance ids and
    /// the key's user id.
    pub name: String,
    /// DNS domain of the hosts; each host's FQDN is `<name>.<domain>`.
    pub domain: String,
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The hosts' network in CIDR notation, e.g. `10.10.143.0/24`.
    pub cidr: Ipv4Net,
    /// Default gateway, inside `cidr`.
    pub gateway: Ipv4Addr,
    /// DNS servers, in order of preference.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Name of the NIC on the cloned VMs (used when a host has no `mac`).
    #[serde(default = "default_interface")]
    pub interface: String,
}

fn default_interface() -> String {
    "eth0".to_string()
}

/// `[media]`: each path is an `.iso` file or a directory holding `pool/` and
/// `dists/`. Relative paths are taken from the recipe's directory.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// The Astra Linux SE 1.7 "main" install disc.
    pub main: Option<PathBuf>,
    /// The Astra Linux SE 1.7 "devel" disc.
    pub devel: Option<PathBuf>,
    /// Update discs (`1.7.1-update.iso`, …), merged after main and devel
    /// in this order; every version of a package is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<PathBuf>,
    /// The vendor's Space Dispatcher disc (holds `install.sh`).
    pub vendor: Option<PathBuf>,
    /// `/var/lib/dpkg/status` exported from the reference VM: what is
    /// installed before any role runs (`airlock check`). Without it, the
    /// main disc's `Priority: required` and `important` packages count as
    /// installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_status: Option<PathBuf>,
}

/// `[packages]`: what each role's steps and the vendor installer install,
/// as `apt-get install` names them. `airlock check` (and `build`) resolve
/// each list with its whole dependency closure against the discs and the
/// base. A role left out keeps airlock's list (`airlock check` prints it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Packages {
    /// Default: `postgresql-<database.postgresql>`, `keepalived`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_master: Option<Vec<String>>,
    /// Default: as `db-master`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_replica: Option<Vec<String>>,
    /// Default: `docker.io`, `postgresql-client-<database.postgresql>`
    /// (the installer checks the database with `psql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<Vec<String>>,
    /// Default: `docker.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Vec<String>>,
}

impl Packages {
    fn is_default(&self) -> bool {
        *self == Packages::default()
    }

    /// The recipe's list for `role`, if it gives one.
    pub fn for_role(&self, role: Role) -> Option<&Vec<String>> {
        match role {
            Role::DbMaster => self.db_master.as_ref(),
            Role::DbReplica => self.db_replica.as_ref(),
            Role::Leader => self.leader.as_ref(),
            Role::Manager => self.manager.as_ref(),
        }
    }
}

/// `[repository]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// apt suite the VMs use; the vendor installer expects `1.7_x86-64`.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Components listed in the VMs' apt sources.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Architectures the VMs install.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    /// What of the discs the repository holds: `all` (both whole discs),
    /// or `closure` (only what the roles' packages need, as `airlock check`
    /// resolves them).
    #[serde(default, skip_serializing_if = "Subset::is_all")]
    pub subset: Subset,
}

/// `repository.subset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subset {
    #[default]
    All,
    Closure,
}

impl Subset {
    fn is_all(&self) -> bool {
        *self == Subset::All
    }
}

impl Default for Repository {
    fn default() -> Self {
        Repository {
            suite: default_suite(),
            components: default_components(),
            architectures: default_architectures(),
            subset: Subset::All,
        }
    }
}

/// The suite name Astra SE 1.7 discs use and the vendor installer writes.
pub fn default_suite() -> String {
    crate::build::repo::ASTRA_SUITE.to_string()
}

fn default_components() -> Vec<String> {
    crate::build::repo::ASTRA_COMPONENTS
        .map(String::from)
        .to_vec()
}

fn default_architectures() -> Vec<String> {
    vec!["amd64".to_string()]
}

/// `[database]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The virtual IP the dispatchers connect to; required with a db-replica.
    pub vip: Option<Ipv4Addr>,
    /// VRRP router id, 1..=255, shared by both peers (there is only one).
    pub virtual_router_id: Option<i64>,
    /// PostgreSQL port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// PostgreSQL major version on the VMs (Astra SE 1.7 ships 11).
    #[serde(default = "default_postgresql")]
    pub postgresql: i64,
    /// The one database user: the vendor installer creates it, the
    /// dispatchers log in with it and the replica replicates with it.
    pub user: String,
    /// What happens when the master dies.
    #[serde(default)]
    pub failover: Failover,
    /// How the VRRP peers find each other.
    #[serde(default)]
    pub vrrp: VrrpMode,
    /// What a former primary does when it finds its peer promoted:
    /// "manual" (stays read-only until a person runs `airlock-firstboot
    /// rejoin`) or "auto" (re-joins as a standby by itself).
    #[serde(default)]
    pub rejoin: Rejoin,
    /// Commits wait until the standby has them, so a failover loses no
    /// acknowledged commit; while the standby is gone the primary serves
    /// alone and says it is unprotected.
    #[serde(default)]
    pub synchronous: bool,
    /// File holding the DB password (one line). Without it, the password is
    /// generated at build time. The password itself never goes in the recipe.
    pub password_file: Option<PathBuf>,
}

fn default_port() -> u16 {
    5432
}

fn default_postgresql() -> i64 {
    11
}

pub use crate::shared::role::{Failover, Rejoin, Role, VrrpMode};

/// One `[[host]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Hostname (an RFC 1123 label).
    pub name: String,
    /// What the VM becomes.
    pub role: Role,
    /// Static IPv4 address, inside `network.cidr`.
    pub ip: Ipv4Addr,
    /// MAC address of the VM's NIC, `52:54:00:12:34:56`; lets a clone find its
    /// payload and pins the network config to that NIC.
    pub mac: Option<String>,
    /// SMBIOS system UUID (`/sys/class/dmi/id/product_uuid`), another way for a
    /// clone to find its payload.
    pub uuid: Option<String>,
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a value in the recipe, shown as `host[3].role`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// Parses `host[3].role` (the form [`fmt::Display`] writes).
    pub fn parse(s: &str) -> KeyPath {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                if open > 0 {
                    segs.push(Seg::Key(rest[..open].to_string()));
                }
                rest = &rest[open..];
                while let Some(close) = rest.find(']') {
                    match rest[1..close].parse() {
                        Ok(i) => segs.push(Seg::Index(i)),
                        Err(_) => segs.push(Seg::Key(rest[1..close].to_string())),
                    }
                    rest = &rest[close + 1..];
                }
            } else {
                segs.push(Seg::Key(rest.to_string()));
            }
        }
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Where in the recipe file something is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// An error in the recipe's text or shape (not its consistency).
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("reading recipe {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {}{message}{}", file.display(), loc_suffix(location), path_prefix(key), hint_suffix(hint))]
    Invalid {
        file: PathBuf,
        location: Option<Location>,
        key: Option<String>,
        message: String,
        hint: Option<String>,
    },
}

impl RecipeError {
    /// True when the file could not be read at all (an I/O error, exit 2),
    /// false when its content is wrong (exit 1).
    pub fn is_io(&self) -> bool {
        matches!(self, RecipeError::Read { .. })
    }
}

fn loc_suffix(loc: &Option<Location>) -> String {
    loc.map(|l| format!(":{}:{}", l.line, l.column))
        .unwrap_or_default()
}

fn path_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .filter(|k| !k.is_empty())
        .map(|k| format!("{k}: "))
        .unwrap_or_default()
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

/// The recipe file's text, kept to point problems at their line and column.
#[derive(Debug, Clone)]
pub struct Source {
    /// The recipe's path as the user gave it.
    pub path: PathBuf,
    /// The whole text.
    pub text: String,
}

impl Source {
    /// The directory relative media paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Line and column of a byte offset.
    pub fn location_of(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }

    /// Where the value at `path` is written, or the closest enclosing table
    /// that is written (a missing key points at its table).
    pub fn locate(&self, path: &KeyPath) -> Option<Location> {
        self.locate_all(std::slice::from_ref(path)).pop().flatten()
    }

    /// [`Source::locate`] for many paths with one parse of the text and
    /// one line index: a recipe with tens of thousands of problems is
    /// located in linear time.
    pub fn locate_all(&self, paths: &[KeyPath]) -> Vec<Option<Location>> {
        let Ok(root) = toml::de::DeTable::parse(&self.text) else {
            return vec![None; paths.len()];
        };
        let lines = LineIndex::new(&self.text);
        paths
            .iter()
            .map(|path| {
                let mut span = root.span();
                let mut table = Some(root.get_ref());
                let mut array: Option<&toml::de::DeArray<'_>> = None;
                for seg in &path.0 {
                    let next = match (seg, table, array) {
                        (Seg::Key(k), Some(t), _) => t.get(k.as_str()),
                        (Seg::Index(i), _, Some(a)) => a.get(*i),
                        _ => None,
                    };
                    let Some(value) = next else { break };
                    span = value.span();
                    table = None;
                    array = None;
                    match value.get_ref() {
                        toml::de::DeValue::Table(t) => table = Some(t),
                        toml::de::DeValue::Array(a) => array = Some(a),
                        _ => {}
                    }
                }
                Some(lines.location(&self.text, span.start))
            })
            .collect()
    }
}

/// Where each line starts, for turning many offsets into lines quickly.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    fn location(&self, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let line = self.0.partition_point(|&s| s <= offset);
        let start = self.0[line - 1];
        let column = text[start..offset].chars().count() + 1;
        Location { line, column }
    }
}

/// Reads and parses the recipe at `path`.
pub fn load(path: &Path) -> Result<(Recipe, Source), RecipeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let source = Source {
        path: path.to_path_buf(),
        text,
    };
    let recipe = parse(&source)?;
    Ok((recipe, source))
}

/// Parses recipe text: the version first, then the model of that version.
pub fn parse(source: &Source) -> Result<Recipe, RecipeError> {
    let invalid = |location, key: Option<String>, message: String, hint| RecipeError::Invalid {
        file: source.path.clone(),
        location,
        key,
        message,
        hint,
    };

    let doc = toml::de::DeTable::parse(&source.text).map_err(|e| {
        let location = e.span().map(|s| source.location_of(s.start));
        invalid(location, None, first_line(e.message()), None)
    })?;

    match doc.get_ref().get("version") {
        None => {
            return Err(invalid(
                Some(source.location_of(0)),
                Some("version".into()),
                "missing field `version`".into(),
                Some(format!(
                    "start the recipe with `version = {CURRENT_VERSION}`"
                )),
            ));
        }
        Some(v) => {
            let n = v
                .get_ref()
                .as_integer()
                .and_then(|i| i.as_str().parse::<i64>().ok());
            if n != Some(CURRENT_VERSION) {
                return Err(invalid(
                    Some(source.location_of(v.span().start)),
                    Some("version".into()),
                    format!("unsupported recipe version {}", &source.text[v.span()]),
                    Some(format!("this airlock reads version {CURRENT_VERSION}")),
                ));
            }
        }
    }

    let de = toml::Deserializer::parse(&source.text).map_err(|e| {
        let location = e.span().map(|s| source.location_of(s.start));
        invalid(location, None, first_line(e.message()), None)
    })?;
    serde_path_to_error::deserialize::<_, Recipe>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = first_line(inner.message());
        let key = key_for(&path, &message);
        // The deserializer's span is the best location; without it, find
        // the key path in the document.
        let location = inner
            .span()
            .map(|s| source.location_of(s.start))
            .or_else(|| source.locate(&KeyPath::parse(&key)));
        let hint = suggestion(&message);
        invalid(location, Some(key), message, hint)
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The key path to report: serde's path, completed with the field a
/// "missing field" / "unknown field" message names.
fn key_for(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(end) = rest.find('`')
        {
            let field = &rest[..end];
            if path.ends_with(field) {
                return path.to_string();
            }
            return if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
        }
    }
    path.to_string()
}

/// "did you mean `role`?" for serde's unknown field / unknown variant messages.
fn suggestion(message: &str) -> Option<String> {
    let (given, rest) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split_once('`'))?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    closest(given, &expected).map(|best| format!("did you mean `{best}`?"))
}

/// The candidate closest to `given`, if it is close enough to be a typo.
pub fn closest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(given, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            path: PathBuf::from("site.toml"),
            text: text.to_string(),
        }
    }

    const MINIMAL: &str = r#"version = 1
[cluster]
name = "lab"
domain = "lab.example"
[network]
cidr = "192.0.2.0/24"
gateway = "192.0.2.1"
[database]
user = "dbuser"
[[host]]
name = "db1"
role = "db-master"
ip = "192.0.2.10"
[[host]]
name = "disp1"
role = "leader"
ip = "192.0.2.20"
"#;

    #[test]
    fn minimal_recipe_gets_defaults() {
        let r = parse(&src(MINIMAL)).unwrap();
        assert_eq!(r.repository.suite, "1.7_x86-64");
        assert_eq!(r.repository.components, ["main", "contrib", "non-free"]);
        assert_eq!(r.database.port, 5432);
        assert_eq!(r.database.postgresql, 11);
        assert_eq!(r.database.failover, Failover::Promote);
        assert_eq!(r.network.interface, "eth0");
        assert_eq!(r.hosts[1].role, Role::Leader);
    }

    #[test]
    fn unknown_key_names_path_line_and_suggestion() {
        let text = MINIMAL.replace("role = \"leader\"", "rol = \"leader\"");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.starts_with("site.toml:16:1: host[1].rol: unknown field `rol`"),
            "{e}"
        );
        assert!(e.contains("did you mean `role`?"), "{e}");
    }

    #[test]
    fn update_discs_are_a_list_in_order_and_default_to_none() {
        assert!(parse(&src(MINIMAL)).unwrap().media.updates.is_empty());
        let text = MINIMAL.replace(
            "[database]",
            "[media]\nmain = \"main.iso\"\nupdates = [\"1.7.1-update.iso\", \"up/1.7.2\"]\n[database]",
        );
        let r = parse(&src(&text)).unwrap();
        assert_eq!(
            r.media.updates,
            [PathBuf::from("1.7.1-update.iso"), PathBuf::from("up/1.7.2")]
        );
        // A recipe without update discs serialises as before.
        let none = toml::to_string(&parse(&src(MINIMAL)).unwrap()).unwrap();
        assert!(!none.contains("updates"), "{none}");
    }

    #[test]
    fn a_misspelt_or_single_update_disc_is_refused_with_its_path() {
        let text = MINIMAL.replace("[database]", "[media]\nupdate = [\"u.iso\"]\n[database]");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.starts_with("site.toml:9:1: media.update: unknown field `update`"),
            "{e}"
        );
        assert!(e.contains("did you mean `updates`?"), "{e}");
        let text = MINIMAL.replace("[database]", "[media]\nupdates = \"u.iso\"\n[database]");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.contains("site.toml:9:11: media.updates: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn packages_per_role_and_the_base_status_are_read_and_strict() {
        let r = parse(&src(MINIMAL)).unwrap();
        assert_eq!(r.packages, Packages::default());
        assert_eq!(r.media.base_status, None);
        // Left out, they are left out of the recipe a bundle keeps.
        let kept = toml::to_string(&r).unwrap();
        assert!(
            !kept.contains("packages") && !kept.contains("base_status"),
            "{kept}"
        );
        let text = MINIMAL.replace(
            "[database]",
            "[media]\nbase_status = \"ref/status\"\n[packages]\ndb-master = [\"postgresql-11\", \"keepalived\", \"chrony\"]\nmanager = []\n[database]",
        );
        let r = parse(&src(&text)).unwrap();
        assert_eq!(r.media.base_status, Some(PathBuf::from("ref/status")));
        assert_eq!(
            r.packages.for_role(Role::DbMaster).unwrap(),
            &["postgresql-11", "keepalived", "chrony"]
        );
        assert_eq!(r.packages.for_role(Role::Manager).unwrap().len(), 0);
        assert_eq!(r.packages.for_role(Role::Leader), None);
        let text = MINIMAL.replace("[database]", "[packages]\ndb_master = [\"x\"]\n[database]");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.starts_with("site.toml:9:1: packages.db_master: unknown field `db_master`"),
            "{e}"
        );
        assert!(e.contains("did you mean `db-master`?"), "{e}");
        let text = MINIMAL.replace(
            "[database]",
            "[packages]\nleader = \"docker.io\"\n[database]",
        );
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(e.contains("packages.leader: invalid type: string"), "{e}");
    }

    #[test]
    fn unknown_variant_is_suggested() {
        let text = MINIMAL.replace("\"leader\"", "\"ledaer\"");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.contains("site.toml:16:8: host[1].role: unknown variant `ledaer`"),
            "{e}"
        );
        assert!(e.contains("did you mean `leader`?"), "{e}");
    }

    #[test]
    fn wrong_type_names_path() {
        let text = MINIMAL
            .replace("port", "x")
            .replace("user = \"dbuser\"", "user = \"dbuser\"\nport = \"5432\"");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.starts_with("site.toml:10:8: database.port: invalid type: string"),
            "{e}"
        );
    }

    #[test]
    fn missing_field_names_table_and_field() {
        let text = MINIMAL.replace("ip = \"192.0.2.20\"\n", "");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(e.contains("host[1].ip: missing field `ip`"), "{e}");
        assert!(e.starts_with("site.toml:14:1:"), "{e}");
    }

    #[test]
    fn bad_address_names_path() {
        let text = MINIMAL.replace("192.0.2.20", "192.0.2.300");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.starts_with("site.toml:17:6: host[1].ip: invalid IPv4 address"),
            "{e}"
        );
    }

    #[test]
    fn version_is_read_first() {
        let text = MINIMAL.replace("version = 1", "version = 2\nfuture_key = true");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(
            e.contains("site.toml:1:11: version: unsupported recipe version 2"),
            "{e}"
        );
        let e = parse(&src(&MINIMAL.replace("version = 1\n", "")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `version`"), "{e}");
    }

    #[test]
    fn toml_syntax_error_has_location() {
        let text = MINIMAL.replace("name = \"lab\"", "name = lab");
        let e = parse(&src(&text)).unwrap_err().to_string();
        assert!(e.starts_with("site.toml:3:8: "), "{e}");
    }

    #[test]
    fn key_path_round_trips_and_locates() {
        let p = KeyPath::parse("host[1].ip");
        assert_eq!(p.to_string(), "host[1].ip");
        assert_eq!(
            src(MINIMAL).locate(&p),
            Some(Location {
                line: 17,
                column: 6
            })
        );
        assert_eq!(
            src(MINIMAL).locate(&KeyPath::parse("database.vip")),
            Some(Location { line: 8, column: 1 })
        );
    }

    #[test]
    fn closest_only_suggests_typos() {
        assert_eq!(closest("rol", &["name", "role"]), Some("role"));
        assert_eq!(closest("colour", &["name", "role"]), None);
    }
}
