//! `airlock-firstboot`: the runner on each cloned VM.
//!
//! It reads the role file the seed wrote (`/etc/airlock/role.toml`) and
//! reports where the VM stands. Paths are taken under `--root` (default `/`),
//! so tests run it against a temporary root.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::role::{RoleFile, paths};

#[derive(Debug, Parser)]
#[command(
    name = "airlock-firstboot",
    version,
    about = "Turn this cloned VM into its Space VDI cluster role",
    long_about = "Turn this cloned VM into its Space VDI cluster role.\n\n\
        Reads the role file written by the VM's cidata seed (/etc/airlock/role.toml) \
        and reports where the VM stands.\n\n\
        Exit codes: 0 ok, 1 failed, 2 usage or I/O error.",
    help_expected = true
)]
pub struct Cli {
    /// Treat this directory as / (for tests and for preparing an image)
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show who this VM is: host, role, address, peers
    #[command(after_help = "Example:\n  airlock-firstboot role")]
    Role(RoleArgs),
    /// Print the swarm manager join token (the leader's forced SSH command)
    #[command(
        long_about = "Print the swarm manager join token.\n\n\
            Run on the leader as the forced command of the token user's SSH key \
            (restrict,command=\"airlock-firstboot token\"): managers fetch the token with \
            their bundle key over SSH, the leader's host key pinned. Exits 1 while the \
            leader has no token yet.",
        after_help = "Example (on a manager):\n  ssh -i /etc/airlock/ssh/token_client_key airlock-token@LEADER"
    )]
    Token,
}

#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// The role file (default: /etc/airlock/role.toml under --root)
    #[arg(long, value_name = "PATH")]
    pub role_file: Option<PathBuf>,
    /// Print the whole role file as JSON
    #[arg(long)]
    pub json: bool,
}

/// `path` (absolute on the VM) under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The runner's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock-firstboot: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Role(args) => {
            let path = args
                .role_file
                .unwrap_or_else(|| under(&cli.root, paths::ROLE_FILE));
            let rf = RoleFile::load(&path)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rf)?);
            } else {
                let h = &rf.host;
                println!(
                    "{} ({}) of cluster {}: {}/{} via {}, instance {}",
                    h.fqdn, h.role, rf.cluster, h.ip, h.prefix, h.gateway, rf.instance_id
                );
                for other in rf.hosts.iter().filter(|o| o.name != h.name) {
                    println!(
                        "  peer {:<14} {:<10} {}",
                        other.name,
                        other.role.as_str(),
                        other.ip
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token => {
            let path = under(&cli.root, paths::TOKEN_FILE);
            match std::fs::read_to_string(&path) {
                Ok(t) if t.trim().starts_with("SWMTKN-1-") => {
                    println!("{}", t.trim());
                    Ok(ExitCode::SUCCESS)
                }
                Ok(_) => {
                    eprintln!("{} does not hold a swarm join token", path.display());
                    Ok(ExitCode::from(1))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("no join token yet: the leader has not finished `swarm init`");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
    }
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
