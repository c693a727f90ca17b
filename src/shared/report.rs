//! The as-built report: what each host of a cluster runs, package by
//! package, with the hashes that tie each installed package to the `.deb`
//! it came from, the files dpkg says were changed since, and the runner's
//! journal. `airlock-firstboot report` writes it on a VM (one host's
//! section, [`HostReport`], is self-contained so a cluster-wide report is
//! the sections of every host put together); `airlock report check` holds
//! it against a bundle at the secure site.
//!
//! The format is JSON and versioned: a reader refuses a `version` newer
//! than [`REPORT_VERSION`] instead of misreading it, and anything that is
//! not a report at all (a truncated file, another program's JSON) with an
//! error saying which.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::shared::journal::Journal;
use crate::shared::role::Role;

/// The version of the report format this airlock writes and reads.
pub const REPORT_VERSION: u32 = 1;

/// A report of one or more hosts of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    /// When the report was put together (RFC 3339, UTC).
    pub generated: String,
    pub cluster: String,
    pub hosts: Vec<HostReport>,
    /// `status --cluster` as the reporting host saw it when it wrote the
    /// report (absent for a mounted disk, or when it could not ask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_status: Option<crate::shared::status::ClusterStatus>,
}

/// One host's section: everything known about it, collected on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub version: u32,
    /// The host's name, role, cluster and instance id, from its role file.
    pub host: String,
    pub role: Role,
    pub cluster: String,
    pub instance_id: String,
    /// When this section was collected (RFC 3339, UTC).
    pub collected: String,
    /// The `airlock-firstboot` that collected it.
    pub runner_version: String,
    /// The running kernel's release (`uname -r`); none for an image that is
    /// not running.
    pub kernel: Option<String>,
    /// The fields of `/etc/os-release`.
    pub os_release: BTreeMap<String, String>,
    /// The runner's journal of steps, as it is.
    pub journal: Option<Journal>,
    /// The PostgreSQL start guard's fence record (`fenced.json`), as it is.
    pub fenced: Option<serde_json::Value>,
    /// When keepalived promoted this server (seconds since the epoch).
    pub promoted: Option<i64>,
    /// Every installed package (dpkg status "install ok installed").
    pub packages: Vec<Package>,
    /// Whether `dpkg --verify` ran; when it did not, `notes` says why and
    /// which files were changed is not known.
    pub files_verified: bool,
    /// Files `dpkg --verify` reports as changed that no package's file list
    /// names (normally none: changed files are listed under their package).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_unowned: Vec<ChangedFile>,
    /// What could not be collected, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The SHA-256 of the package's `.deb` as apt's indexes list it: one,
    /// normally; none when no configured source lists this version; more
    /// when sources disagree about the bytes of the same version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deb_sha256: Vec<String>,
    /// The SHA-256 of `/var/lib/dpkg/info/PACKAGE.md5sums`: dpkg copies the
    /// `.deb`'s own `md5sums` control member there verbatim (it writes one
    /// of its own for a package without).
    pub md5sums_sha256: Option<String>,
    /// The package's files `dpkg --verify` reports as changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<ChangedFile>,
}

/// One line of `dpkg --verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub path: String,
    /// dpkg's nine check characters: `??5??????` (the digest differs) or
    /// `missing  `.
    pub checks: String,
    /// A configuration file (dpkg's `c`).
    pub conffile: bool,
    /// Why dpkg could not check it (`Permission denied`), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChangedFile {
    /// What dpkg found, in words.
    pub fn what(&self) -> String {
        let mut s = if self.checks.starts_with("missing") {
            "missing".to_string()
        } else if self.checks.as_bytes().get(2) == Some(&b'5') {
            "contents changed".to_string()
        } else {
            format!("changed ({})", self.checks.trim_end())
        };
        if self.conffile {
            s.push_str(", a configuration file");
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(" ({e})"));
        }
        s
    }
}

impl Report {
    /// A report holding one host's section.
    pub fn of_host(host: HostReport, generated: String) -> Report {
        Report {
            version: REPORT_VERSION,
            generated,
            cluster: host.cluster.clone(),
            hosts: vec![host],
            cluster_status: None,
        }
    }

    /// Reads a report file: a whole report or one host's section (what
    /// `airlock-firstboot report --host-only` prints).
    pub fn load(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading the report {}; make one on a VM with `airlock-firstboot report --out FILE`",
                path.display()
            )
        })?;
        Report::parse(&text, &path.display().to_string())
    }

    /// Parses a report's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Report> {
        let value = json_value(text, origin)?;
        if value.get("hosts").is_some() {
            check_version(&value, origin, "report")?;
            if let Some(hosts) = value["hosts"].as_array() {
                for (i, h) in hosts.iter().enumerate() {
                    check_version(h, &format!("{origin}: hosts[{i}]"), "host section")?;
                }
            }
            let r: Report = typed(value, origin)?;
            for h in &r.hosts {
                h.check_hashes(origin)?;
            }
            Ok(r)
        } else if value.get("packages").is_some() {
            let h = HostReport::from_value(value, origin)?;
            Ok(Report {
                version: REPORT_VERSION,
                generated: h.collected.clone(),
                cluster: h.cluster.clone(),
                hosts: vec![h],
                cluster_status: None,
            })
        } else {
            bail!(
                "{origin} is not an airlock as-built report (it has neither `hosts` nor `packages`); make one on a VM with `airlock-firstboot report --out FILE`"
            )
        }
    }
}

impl HostReport {
    /// Parses one host's section (`airlock-firstboot report --host-only`).
    pub fn parse(text: &str, origin: &str) -> Result<HostReport> {
        HostReport::from_value(json_value(text, origin)?, origin)
    }

    fn from_value(value: serde_json::Value, origin: &str) -> Result<HostReport> {
        check_version(&value, origin, "host section")?;
        let h: HostReport = typed(value, origin)?;
        h.check_hashes(origin)?;
        Ok(h)
    }

    /// Every hash is a SHA-256 in lower-case hex.
    fn check_hashes(&self, origin: &str) -> Result<()> {
        for p in &self.packages {
            for h in p.deb_sha256.iter().chain(&p.md5sums_sha256) {
                if h.len() != 64
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    bail!(
                        "{origin}: host {}, package {} {}: {h:?} is not a SHA-256 (64 lower-case hex digits); the report was damaged, make it again",
                        self.host,
                        p.name,
                        p.version
                    );
                }
            }
        }
        Ok(())
    }
}

fn json_value(text: &str, origin: &str) -> Result<serde_json::Value> {
    if text.trim().is_empty() {
        bail!(
            "{origin} is empty, not an airlock as-built report; make it again with `airlock-firstboot report --out FILE`"
        );
    }
    serde_json::from_str(text).map_err(|e| {
        if e.is_eof() {
            anyhow::anyhow!(
                "{origin} ends early (line {}): the report is truncated; copy it again or make it again with `airlock-firstboot report --out FILE`",
                e.line()
            )
        } else {
            anyhow::anyhow!(
                "{origin} is not JSON ({e}), so not an airlock as-built report; make one with `airlock-firstboot report --out FILE`"
            )
        }
    })
}

fn check_version(value: &serde_json::Value, origin: &str, what: &str) -> Result<()> {
    let Some(v) = value.get("version").and_then(serde_json::Value::as_u64) else {
        bail!(
            "{origin} is not an airlock as-built {what}: it has no `version`; make one with `airlock-firstboot report --out FILE`"
        );
    };
    if v > u64::from(REPORT_VERSION) {
        bail!(
            "{origin}: {what} version {v} is newer than this airlock reads ({REPORT_VERSION}); check it with the airlock of the same release as the airlock-firstboot that wrote it"
        );
    }
    if v == 0 {
        bail!(
            "{origin}: {what} version 0 does not exist; the file was not written by airlock-firstboot"
        );
    }
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value, origin: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!(
            "{origin} is not a valid airlock as-built report ({e}); make it again with `airlock-firstboot report --out FILE`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HostReport {
        HostReport {
            version: REPORT_VERSION,
            host: "spdb1".into(),
            role: Role::DbMaster,
            cluster: "vdi".into(),
            instance_id: "i-1".into(),
            collected: "2026-01-01T00:00:00Z".into(),
            runner_version: "0.1.0".into(),
            kernel: Some("6.1.0-18-amd64".into()),
            os_release: BTreeMap::from([("ID".into(), "astra".into())]),
            journal: None,
            fenced: None,
            promoted: None,
            packages: vec![Package {
                name: "hello".into(),
                version: "2.10-3".into(),
                architecture: "amd64".into(),
                deb_sha256: vec!["a".repeat(64)],
                md5sums_sha256: Some("b".repeat(64)),
                changed: vec![],
            }],
            files_verified: true,
            changed_unowned: vec![],
            notes: vec![],
        }
    }

    fn err(text: &str) -> String {
        format!("{:#}", Report::parse(text, "r.json").unwrap_err())
    }

    #[test]
    fn a_report_and_a_host_section_both_read_back() {
        let host = sample();
        let whole = Report::of_host(host.clone(), "2026-01-02T00:00:00Z".into());
        let text = serde_json::to_string_pretty(&whole).unwrap();
        assert_eq!(Report::parse(&text, "r.json").unwrap(), whole);
        let section = serde_json::to_string(&host).unwrap();
        let r = Report::parse(&section, "h.json").unwrap();
        assert_eq!((r.cluster.as_str(), &r.hosts[..]), ("vdi", &[host][..]));
    }

    #[test]
    fn a_truncated_report_is_refused_as_truncated() {
        let text = serde_json::to_string_pretty(&sample()).unwrap();
        for cut in [text.len() / 3, text.len() - 2] {
            let e = err(&text[..cut]);
            assert!(
                e.contains("r.json ends early") && e.contains("truncated"),
                "{e}"
            );
        }
        assert!(err("").contains("r.json is empty"));
    }

    #[test]
    fn foreign_files_are_not_reports() {
        let e = err("{\"name\": \"x\", \"dependencies\": {}}");
        assert!(
            e.contains("r.json is not an airlock as-built report"),
            "{e}"
        );
        let e = err("Package: hello\nVersion: 1\n");
        assert!(e.contains("r.json is not JSON"), "{e}");
        let e = err("{\"packages\": []}");
        assert!(e.contains("has no `version`"), "{e}");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["packages"] = serde_json::json!("many");
        let e = err(&v.to_string());
        assert!(e.contains("not a valid airlock as-built report"), "{e}");
    }

    #[test]
    fn a_newer_version_is_refused() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = serde_json::json!(2);
        let e = err(&v.to_string());
        assert!(
            e.contains("host section version 2 is newer than this airlock reads (1)"),
            "{e}"
        );
        let mut whole =
            serde_json::to_value(Report::of_host(sample(), "2026-01-02T00:00:00Z".into())).unwrap();
        whole["hosts"][0]["version"] = serde_json::json!(7);
        let e = err(&whole.to_string());
        assert!(
            e.contains("hosts[0]: host section version 7 is newer"),
            "{e}"
        );
    }

    #[test]
    fn a_damaged_hash_is_refused() {
        let mut h = sample();
        h.packages[0].md5sums_sha256 = Some("xyz".into());
        let e = err(&serde_json::to_string(&h).unwrap());
        assert!(
            e.contains("package hello 2.10-3: \"xyz\" is not a SHA-256"),
            "{e}"
        );
    }

    #[test]
    fn changed_files_say_what_changed() {
        let mut c = ChangedFile {
            path: "/etc/x".into(),
            checks: "??5??????".into(),
            conffile: true,
            error: None,
        };
        assert_eq!(c.what(), "contents changed, a configuration file");
        c.checks = "missing  ".into();
        c.conffile = false;
        c.error = Some("Permission denied".into());
        assert_eq!(c.what(), "missing (Permission denied)");
    }
}
