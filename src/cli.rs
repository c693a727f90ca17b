//! The `airlock` command line: clap definitions and one `match` over them.
//!
//! Exit codes, for every subcommand: 0 ok, 1 the check failed (the recipe is
//! inconsistent, verification failed), 2 usage or I/O error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::plan::{self, MediaCheck, Severity};
use crate::recipe;

/// What a command decided, mapped onto the exit-code contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: the check failed; the reasons were printed.
    CheckFailed,
}

/// Exit code for usage and I/O errors.
pub const EXIT_USAGE_OR_IO: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "Build verified install bundles for an air-gapped Space VDI 5.4 cluster",
    long_about = "Build verified install bundles for an air-gapped Space VDI 5.4 cluster.\n\n\
        airlock reads a cluster recipe (TOML) and the Astra Linux SE 1.7 and vendor discs, \
        and writes one bundle: a signed apt repository, a cloud-init seed per VM and the \
        airlock-firstboot runner that turns each cloned VM into its role.\n\n\
        Exit codes: 0 ok, 1 the check failed, 2 usage or I/O error.",
    help_expected = true,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a recipe and show every value each host will use
    #[command(
        long_about = "Check a recipe and show every value each host will use.\n\n\
            Resolves the recipe into the per-host plan (role, FQDN, address, gateway, DNS, \
            VRRP state and priority, peers, VIP, replication source, where a manager gets the \
            swarm join token) and prints it as a table, or as JSON with --json.\n\n\
            Every problem is listed with the file, line, column and key (e.g. \
            `host[3].ip`). Media paths that do not exist are warnings here and errors \
            for `airlock build`.\n\n\
            Exit codes: 0 the recipe is consistent (warnings allowed), 1 it is not \
            (every problem is listed), 2 the recipe could not be read.",
        after_help = "Examples:\n  \
            airlock plan recipes/space-vdi-5.4-ha.toml\n  \
            airlock plan site.toml --json | jq '.plan.hosts[] | {name, ip, vrrp}'"
    )]
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The cluster recipe (TOML, `version = 1`)
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Print the plan and the problems as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Parses the command line and runs it; the whole of `airlock`'s `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("airlock: error: {e:#}");
            ExitCode::from(EXIT_USAGE_OR_IO)
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<Status> {
    match cli.command {
        Command::Plan(args) => cmd_plan(&args),
    }
}

fn cmd_plan(args: &PlanArgs) -> Result<Status> {
    let (recipe, source) = match recipe::load(&args.recipe) {
        Ok(loaded) => loaded,
        Err(e) if e.is_io() => return Err(e.into()),
        Err(e) => {
            if args.json {
                let out = serde_json::json!({
                    "ok": false,
                    "problems": [{ "severity": "error", "message": e.to_string() }],
                    "plan": null,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                eprintln!("{e}");
            }
            return Ok(Status::CheckFailed);
        }
    };
    let outcome = plan::resolve(&recipe, &source, MediaCheck::Warn);
    let errors = outcome.errors().count();
    if args.json {
        let out = serde_json::json!({
            "ok": errors == 0,
            "problems": outcome.problems,
            "plan": outcome.plan,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut stdout = std::io::stdout().lock();
        if let Some(plan) = &outcome.plan {
            stdout.write_all(plan.to_table().as_bytes())?;
        }
        stdout.flush()?;
        for p in &outcome.problems {
            eprintln!("{p}");
        }
        if errors > 0 {
            let warnings = outcome.problems.len() - errors;
            eprintln!(
                "{}: {errors} error(s){}; nothing was planned",
                args.recipe.display(),
                if warnings > 0 {
                    format!(", {warnings} warning(s)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(
        if outcome
            .problems
            .iter()
            .any(|p| p.severity == Severity::Error)
        {
            Status::CheckFailed
        } else {
            Status::Ok
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
