//! The engine that runs a role: named steps, each with a check (does its
//! effect hold?) and an action. A step whose effect holds is skipped, so
//! re-runs and runs after a power cut converge on the same state.
//!
//! Every path on the VM is taken under `ctx.root` (`/` on a VM, a temporary
//! directory in unit tests), every file is written atomically, every command,
//! pause and probe goes through the one [`Exec`]; waits are bounded, and the
//! journal says what a step waits for while it waits.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::shared::journal::{Journal, StepState};
use crate::shared::paths;
use crate::shared::role::RoleFile;
use crate::shared::writer::{RootWriter, Writer};
use crate::vm::exec::Exec;

/// A wait that ran out: the runner exits "will retry" (75) and says what it
/// waited for.
#[derive(Debug, thiserror::Error)]
#[error("gave up after {seconds} s waiting for {what}{}", last.as_ref().map(|l| format!("; the last attempt said: {l}")).unwrap_or_default())]
pub struct WaitTimeout {
    pub what: String,
    pub seconds: u64,
    pub last: Option<String>,
}

/// Everything a step needs.
pub struct Ctx<'a> {
    pub root: &'a Path,
    pub role: &'a RoleFile,
    pub exec: &'a dyn Exec,
    /// Upper bound of each wait, seconds.
    pub wait_bound: u64,
    /// The journal as it was before this run (what was done on this VM).
    pub before: Option<&'a Journal>,
    /// This run's journal, saved at every change (also during waits).
    pub journal: RefCell<Journal>,
    pub journal_path: PathBuf,
}

/// One step of a role.
pub struct Step {
    pub name: &'static str,
    /// Does the step's effect hold?
    pub check: fn(&Ctx) -> Result<bool>,
    pub apply: fn(&Ctx) -> Result<()>,
}

impl<'a> Ctx<'a> {
    /// A context for `role` under `root`, journal at its usual place.
    pub fn new(
        root: &'a Path,
        role: &'a RoleFile,
        exec: &'a dyn Exec,
        wait_bound: u64,
        before: Option<&'a Journal>,
        journal: Journal,
    ) -> Ctx<'a> {
        Ctx {
            root,
            role,
            exec,
            wait_bound,
            before,
            journal: RefCell::new(journal),
            journal_path: under(root, paths::JOURNAL),
        }
    }

    /// `p` (absolute on the VM) under the root.
    pub fn path(&self, p: &str) -> PathBuf {
        under(self.root, p)
    }

    /// Reads a file on the VM; a missing file reads as empty.
    pub fn read(&self, p: &str) -> String {
        fs::read_to_string(self.path(p)).unwrap_or_default()
    }

    /// Writes a file on the VM atomically; returns whether it changed.
    pub fn write(&self, vm_path: &str, content: &str, mode: u32) -> Result<bool> {
        RootWriter::new(self.root).write(vm_path.trim_start_matches('/'), content.as_bytes(), mode)
    }

    /// Replaces a file on the VM atomically, keeping its mode and owner.
    pub fn rewrite(&self, vm_path: &str, content: &str) -> Result<bool> {
        let mode = crate::shared::writer::mode_of(&self.path(vm_path)).unwrap_or(0o644);
        self.write(vm_path, content, mode)
    }

    fn save(&self) -> Result<()> {
        self.journal.borrow_mut().save(&self.journal_path)
    }

    /// Waits until `attempt` succeeds, backing off from 1 to 5 s, at most
    /// `wait_bound` seconds. While it waits, the journal names what it waits
    /// for, since when, and what the last attempt said (`Err(why)`).
    pub fn wait_for(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> std::result::Result<(), String>,
    ) -> Result<()> {
        let start = self.exec.now();
        let mut pause = Duration::from_secs(1);
        let mut announced = false;
        loop {
            let last = match attempt() {
                Ok(()) => {
                    if announced {
                        self.journal.borrow_mut().stop_waiting();
                        self.save()?;
                    }
                    return Ok(());
                }
                Err(why) => why,
            };
            let changed = if announced {
                self.journal.borrow_mut().attempted(&last)
            } else {
                eprintln!(
                    "airlock-firstboot: waiting for {what} (at most {} s)",
                    self.wait_bound
                );
                let mut j = self.journal.borrow_mut();
                j.start_waiting(what);
                j.attempted(&last);
                announced = true;
                true
            };
            if changed {
                if !last.is_empty() {
                    eprintln!("airlock-firstboot: not yet: {last}");
                }
                self.save()?;
            }
            if (self.exec.now() - start).as_secs() >= self.wait_bound {
                return Err(WaitTimeout {
                    what: what.to_string(),
                    seconds: self.wait_bound,
                    last: (!last.is_empty()).then_some(last),
                }
                .into());
            }
            self.exec.sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// [`Ctx::wait_for`] with a yes/no check.
    pub fn wait_until(&self, what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
        self.wait_for(what, || if check() { Ok(()) } else { Err(String::new()) })
    }

    /// The step `name` was done on this VM before this run.
    pub fn done_before(&self, name: &str) -> bool {
        self.before
            .and_then(|j| j.step(name))
            .is_some_and(|s| s.state == StepState::Done)
    }
}

/// `path` (absolute on the VM) under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Runs the steps, recording each in the journal. A failing step's error is
/// returned after it is recorded.
pub fn run_steps(ctx: &Ctx, steps: &[Step]) -> Result<()> {
    for step in steps {
        run_step(ctx, step).map_err(|e| e.context(format!("step {}", step.name)))?;
    }
    Ok(())
}

fn run_step(ctx: &Ctx, step: &Step) -> Result<()> {
    let was_done = ctx
        .journal
        .borrow()
        .step(step.name)
        .is_some_and(|s| s.state == StepState::Done);
    // A done step is skipped when its effect still holds; an interrupted or
    // failed one is checked too, and re-applied when needed.
    if (step.check)(ctx).unwrap_or(false) {
        if !was_done {
            ctx.journal.borrow_mut().set(
                step.name,
                StepState::Done,
                Some("already in place".into()),
            );
            ctx.save()?;
        }
        return Ok(());
    }
    ctx.journal
        .borrow_mut()
        .set(step.name, StepState::Running, None);
    ctx.save()?;
    eprintln!("airlock-firstboot: step {}", step.name);
    let result = (step.apply)(ctx).and_then(|()| {
        if (step.check)(ctx)? {
            Ok(())
        } else {
            Err(anyhow!(
                "the step ran, but its effect does not hold afterwards"
            ))
        }
    });
    let mut j = ctx.journal.borrow_mut();
    match &result {
        Ok(()) => {
            j.set(step.name, StepState::Done, None);
            j.last_error = None;
        }
        Err(e) => {
            let text = format!("{e:#}");
            if let Some(w) = e.downcast_ref::<WaitTimeout>() {
                j.set(step.name, StepState::Waiting, Some(w.what.clone()));
            } else {
                j.set(step.name, StepState::Failed, Some(first_line(&text)));
            }
            j.last_error = Some(text);
        }
    }
    drop(j);
    ctx.save().context("saving the journal")?;
    result
}

/// The first line of a message, for a step's one-line note.
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::exec::Recording;
    use crate::vm::testing::{fixture_role, journal_for};

    #[test]
    fn a_wait_names_what_it_waits_for_and_the_last_cause_while_it_waits() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("disp2");
        let fake = Recording::new();
        let ctx = Ctx::new(dir.path(), &role, &fake, 3, None, journal_for(&role));
        let long = format!("Invalid user airlock-token {}", "x".repeat(300));
        let mut seen = Vec::new();
        let err = ctx
            .wait_for("the join token from the leader disp1", || {
                // What status shows in the middle of the wait.
                let j = Journal::load(&ctx.journal_path).ok().flatten();
                seen.push(j.map_or((None, None), |j| (j.waiting_for, j.last_attempt)));
                Err(long.clone())
            })
            .unwrap_err();
        let w = err.downcast_ref::<WaitTimeout>().unwrap();
        assert_eq!(w.last.as_deref(), Some(long.as_str()), "not cut");
        // From the second attempt on, the saved journal says what and why.
        assert_eq!(seen[0], (None, None));
        assert_eq!(
            seen[1],
            (
                Some("the join token from the leader disp1".to_string()),
                Some(long.clone())
            )
        );
        assert!(fake.log().iter().any(|l| l.starts_with("sleep ")));
    }

    #[test]
    fn a_failed_step_is_recorded_and_the_run_stops_there() {
        let dir = tempfile::tempdir().unwrap();
        let role = fixture_role("db1");
        let fake = Recording::new();
        let mut journal = journal_for(&role);
        journal.steps.truncate(0);
        for n in ["a", "b"] {
            journal
                .steps
                .push(crate::shared::journal::StepRecord::pending(n));
        }
        let ctx = Ctx::new(dir.path(), &role, &fake, 0, None, journal);
        let steps = [
            Step {
                name: "a",
                check: |c| Ok(c.path("/a").exists()),
                apply: |c| c.write("/a", "x", 0o644).map(|_| ()),
            },
            Step {
                name: "b",
                check: |_| Ok(false),
                apply: |_| anyhow::bail!("b broke"),
            },
        ];
        let e = run_steps(&ctx, &steps).unwrap_err();
        assert_eq!(format!("{e:#}"), "step b: b broke");
        let j = Journal::load(&ctx.journal_path).unwrap().unwrap();
        assert_eq!(j.step("a").unwrap().state, StepState::Done);
        assert_eq!(j.step("b").unwrap().state, StepState::Failed);
        assert_eq!(j.last_error.as_deref(), Some("b broke"));
    }
}
