//! The runner's journal, `/var/lib/airlock/journal`: one record per step
//! (state, times, a short reason), what the runner waits for, the last error.
//! Written atomically (temporary file, fsync, rename), so a power cut leaves
//! the previous journal or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::shared::role::Role;

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Waiting,
    Failed,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub state: StepState,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    /// Why it failed, what it waits for, or what it did.
    pub note: Option<String>,
}

/// The whole journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub host: String,
    pub role: Role,
    pub instance_id: String,
    pub steps: Vec<StepRecord>,
    /// What the running step waits for, while it waits.
    pub waiting_for: Option<String>,
    /// Since when (seconds since the epoch).
    #[serde(default)]
    pub waiting_since: Option<i64>,
    /// What the last attempt of the wait said, whole.
    #[serde(default)]
    pub last_attempt: Option<String>,
    pub last_error: Option<String>,
    pub updated: i64,
}

impl StepRecord {
    /// A step not started yet.
    pub fn pending(name: &str) -> StepRecord {
        StepRecord {
            name: name.to_string(),
            state: StepState::Pending,
            started: None,
            finished: None,
            note: None,
        }
    }
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Journal {
    /// A journal with every step pending.
    pub fn new(host: &str, role: Role, instance_id: &str, steps: &[&str]) -> Journal {
        Journal {
            version: 1,
            host: host.into(),
            role,
            instance_id: instance_id.into(),
            steps: steps.iter().map(|s| StepRecord::pending(s)).collect(),
            waiting_for: None,
            waiting_since: None,
            last_attempt: None,
            last_error: None,
            updated: now(),
        }
    }

    /// Reads the journal at `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<Journal>> {
        match fs::read_to_string(path) {
            Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| {
                format!(
                    "reading the journal {} (delete it to start over)",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes atomically, mode 0644 whatever the umask: the peer user
    /// reads it to answer `status` for the other hosts. It holds no secret
    /// (passwords go on stdin, commands show the join token as `***`, and
    /// a token in a command's output is masked here).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated = now();
        let dir = path.parent().expect("the journal path has a directory");
        crate::shared::writer::create_dirs(dir)?;
        let tmp = dir.join(".journal.new");
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let text = crate::shared::status::mask_tokens(&serde_json::to_string_pretty(self)?);
        f.write_all(text.as_bytes())?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} into place", path.display()))?;
        Ok(())
    }

    /// The running step starts waiting for `what`.
    pub fn start_waiting(&mut self, what: &str) {
        self.waiting_for = Some(what.to_string());
        self.waiting_since = Some(now());
        self.last_attempt = None;
    }

    /// Records what the last attempt of a wait said; returns whether that
    /// changed (an empty answer records nothing new).
    pub fn attempted(&mut self, said: &str) -> bool {
        let said = (!said.is_empty()).then(|| said.to_string());
        if said.is_some() && said != self.last_attempt {
            self.last_attempt = said;
            return true;
        }
        false
    }

    /// The wait is over.
    pub fn stop_waiting(&mut self) {
        self.waiting_for = None;
        self.waiting_since = None;
        self.last_attempt = None;
    }

    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn set(&mut self, name: &str, state: StepState, note: Option<String>) {
        let t = now();
        if let Some(s) = self.steps.iter_mut().find(|s| s.name == name) {
            if state == StepState::Running {
                s.started = Some(t);
                s.finished = None;
            }
            if state != StepState::Waiting {
                self.waiting_for = None;
                self.waiting_since = None;
                self.last_attempt = None;
            }
            if matches!(state, StepState::Done | StepState::Failed) {
                s.finished = Some(t);
            }
            s.state = state;
            s.note = note;
        }
    }

    /// Every step done.
    pub fn complete(&self) -> bool {
        self.steps.iter().all(|s| s.state == StepState::Done)
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} ({}), instance {}\n",
            self.host, self.role, self.instance_id
        );
        for step in &self.steps {
            let state = format!("{:?}", step.state).to_lowercase();
            s.push_str(&format!(
                "  {:<8} {:<20} {}\n",
                state,
                step.name,
                step.note.as_deref().unwrap_or("")
            ));
        }
        if let Some(w) = &self.waiting_for {
            let since = self
                .waiting_since
                .map(|t| {
                    format!(
                        " (since {}, {} s)",
                        crate::shared::timefmt::rfc2822_utc(t),
                        now() - t
                    )
                })
                .unwrap_or_default();
            s.push_str(&format!("waiting for: {w}{since}\n"));
            if let Some(a) = &self.last_attempt {
                s.push_str(&format!("last attempt: {a}\n"));
            }
        }
        if let Some(e) = &self.last_error {
            s.push_str(&format!("last error: {e}\n"));
        }
        s.push_str(if self.complete() {
            "state: done\n"
        } else {
            "state: not done\n"
        });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("var/lib/airlock/journal");
        let mut j = Journal::new("db1", Role::DbMaster, "iid", &["a", "b"]);
        j.set("a", StepState::Running, None);
        j.set("a", StepState::Done, Some("ok".into()));
        j.save(&p).unwrap();
        let back = Journal::load(&p).unwrap().unwrap();
        assert_eq!(back.step("a").unwrap().state, StepState::Done);
        assert!(!back.complete());
        assert!(!dir.path().join("var/lib/airlock/.journal.new").exists());
        assert!(back.to_text().contains("done     a"));
    }

    #[test]
    fn the_journal_is_world_readable_whatever_the_umask_and_holds_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("var/lib/airlock/journal");
        let mut j = Journal::new("disp1", Role::Leader, "iid", &["install-leader"]);
        j.last_error = Some("install.sh said: docker swarm join --token SWMTKN-1-abc-def x".into());
        j.save(&p).unwrap();
        assert_eq!(crate::shared::writer::mode_of(&p), Some(0o644));
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("--token SWMTKN-1-*** x"), "{text}");
        assert!(!text.contains("abc-def"));
    }
}
