//! `airlock-firstboot`: the runner on each cloned VM.
//!
//! It reads the role file the seed wrote (`/etc/airlock/role.toml`) and
//! reports where the VM stands. Paths are taken under `--root` (default `/`),
//! so tests run it against a temporary root.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::journal::{Journal, StepState};
use crate::role::{RoleFile, paths};

#[derive(Debug, Parser)]
#[command(
    name = "airlock-firstboot",
    version,
    about = "Turn this cloned VM into its Space VDI cluster role",
    long_about = "Turn this cloned VM into its Space VDI cluster role.\n\n\
        Reads the role file written by the VM's cidata seed (/etc/airlock/role.toml), \
        or finds this VM in a bundle's inventory.toml by its MAC or SMBIOS UUID, and \
        runs its role as named steps: common (hostname, repository, clone hygiene), \
        then PostgreSQL + keepalived (db-master, db-replica) or the vendor installer's \
        swarm init / join (leader, manager). Each step is recorded in \
        /var/lib/airlock/journal; a step whose effect holds is skipped, so the runner \
        may be run again at any time, also after a power cut.\n\n\
        Exit codes of `run`: 0 the role is complete, 1 a step failed (see `status`), \
        75 a wait ran out and the run will be retried (the service restarts it), \
        2 usage or I/O error.",
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
    /// Perform this VM's role, step by step, and join the cluster
    #[command(after_help = "Examples:\n  \
        airlock-firstboot run\n  \
        airlock-firstboot run --bundle /media/airlock     # no seed: find this VM by MAC/UUID")]
    Run(RunArgs),
    /// Show the role, each step's state, what it waits for, the last error
    #[command(
        after_help = "Examples:\n  airlock-firstboot status\n  airlock-firstboot status --json"
    )]
    Status(StatusArgs),
    /// Prepare the reference VM from the bundle and seal it for cloning (run once, before cloning)
    #[command(
        long_about = "Prepare the reference VM from the bundle and seal it for cloning.\n\n\
            Run once on the reference VM (Astra Linux SE 1.7), with the bundle mounted or \
            copied, before making the clones. It checks the bundle against its SHA256SUMS, \
            copies the signed repository to /opt/airlock/repo and links /opt/main and \
            /opt/devel to it (the vendor installer uses those), copies the vendor disc to \
            /opt/airlock/vendor, trusts the archive key, installs this runner and \
            airlock-firstboot.service, then seals the image: empty /etc/machine-id, no SSH \
            host keys, cloud-init clean, no journal. It refuses a VM that already has a role.",
        after_help = "Example:\n  sudo /media/airlock/bin/airlock-firstboot prepare --bundle /media/airlock"
    )]
    Prepare(PrepareArgs),
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
pub struct RunArgs {
    /// The role file (default: /etc/airlock/role.toml under --root)
    #[arg(long, value_name = "PATH")]
    pub role_file: Option<PathBuf>,
    /// A bundle to find this VM in (inventory.toml, by MAC or SMBIOS UUID) when it has no role file
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Upper bound of each wait, in seconds
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub wait: u64,
    /// Do not print the `+ command` lines
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// The bundle directory (as written by `airlock build`)
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the journal as JSON
    #[arg(long)]
    pub json: bool,
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

/// Exit status: a wait ran out, the service will run us again.
pub const EXIT_RETRY: u8 = 75;

/// Finds this VM's role file: `--role-file`, the one cloud-init wrote, or the
/// bundle's inventory by MAC or SMBIOS UUID (then the payload's files are put
/// in place first, as cloud-init would have).
fn find_role(root: &Path, args: &RunArgs) -> Result<PathBuf> {
    if let Some(p) = &args.role_file {
        return Ok(p.clone());
    }
    let default = under(root, paths::ROLE_FILE);
    if default.is_file() {
        return Ok(default);
    }
    if let Some(seed) = find_seed(root) {
        eprintln!(
            "airlock-firstboot: no role file; reading the seed {} directly",
            seed.display()
        );
        apply_seed(root, &seed)?;
        if default.is_file() {
            return Ok(default);
        }
    }
    let Some(bundle) = &args.bundle else {
        anyhow::bail!(
            "no role file at {}: boot the VM with its cidata seed, or pass --bundle with the bundle so it can find itself by MAC or SMBIOS UUID",
            default.display()
        );
    };
    let inv_path = bundle.join("inventory.toml");
    let inv: crate::seed::Inventory = toml::from_str(
        &std::fs::read_to_string(&inv_path)
            .with_context(|| format!("reading {}", inv_path.display()))?,
    )
    .with_context(|| format!("reading {}", inv_path.display()))?;
    let macs = local_macs(root);
    let uuid = std::fs::read_to_string(under(root, "/sys/class/dmi/id/product_uuid"))
        .map(|u| u.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let host = inv
        .hosts
        .iter()
        .find(|h| {
            h.mac.as_ref().is_some_and(|m| macs.contains(m))
                || h.uuid.as_ref().is_some_and(|u| !uuid.is_empty() && *u == uuid)
        })
        .with_context(|| {
            format!(
                "{} has no host with this VM's MAC ({}) or SMBIOS UUID ({}); add `mac` or `uuid` to the recipe's host, or boot with the seed",
                inv_path.display(),
                if macs.is_empty() { "none found".to_string() } else { macs.join(", ") },
                if uuid.is_empty() { "unknown" } else { &uuid }
            )
        })?;
    eprintln!(
        "airlock-firstboot: this VM is {} ({}) by the inventory",
        host.name, host.role
    );
    // Put the payload's files in place, as cloud-init would have.
    let rootfs = bundle.join(&host.payload).join("rootfs");
    let mut w = crate::writer::RootWriter::new(root);
    for e in walkdir::WalkDir::new(&rootfs) {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(&rootfs).expect("under rootfs");
        use std::os::unix::fs::PermissionsExt;
        let mode = e.metadata()?.permissions().mode() & 0o7777;
        crate::writer::Writer::write(
            &mut w,
            &rel.to_string_lossy(),
            &std::fs::read(e.path())?,
            mode,
        )?;
    }
    Ok(default)
}

/// The seed disc (label `cidata`): udev's by-label link, else the first
/// block device whose ISO 9660 volume id is `cidata`.
fn find_seed(root: &Path) -> Option<PathBuf> {
    let by_label = under(root, "/dev/disk/by-label/cidata");
    if by_label.exists() {
        return Some(by_label);
    }
    let blocks = std::fs::read_dir(under(root, "/sys/class/block")).ok()?;
    let mut names: Vec<String> = blocks
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| under(root, &format!("/dev/{n}")))
        .find(|dev| {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = match std::fs::File::open(dev) {
                Ok(f) => f,
                Err(_) => return false,
            };
            let mut pvd = [0u8; 72];
            f.seek(SeekFrom::Start(16 * 2048)).is_ok()
                && f.read_exact(&mut pvd).is_ok()
                && &pvd[1..6] == b"CD001"
                && String::from_utf8_lossy(&pvd[40..72]).trim() == crate::seed::SEED_LABEL
        })
}

/// Puts the files of the seed's payload tar in place (what cloud-init's
/// write_files would have done), reading the ISO directly: no mount.
fn apply_seed(root: &Path, seed: &Path) -> Result<()> {
    let file = std::fs::File::open(seed)
        .with_context(|| format!("opening the seed {}", seed.display()))?;
    let len = file
        .metadata()
        .ok()
        .map(|m| m.len())
        .filter(|l| *l > 0)
        .unwrap_or(u64::MAX);
    let medium_files = crate::iso::list_files(&file, len)
        .with_context(|| format!("reading the seed {}", seed.display()))?;
    let entry = medium_files
        .iter()
        .find(|f| f.path == crate::seed::SEED_PAYLOAD_TAR)
        .with_context(|| {
            format!(
                "the seed {} has no {}: it was made by an older airlock; attach the seed of this bundle",
                seed.display(),
                crate::seed::SEED_PAYLOAD_TAR
            )
        })?;
    let mut bytes = Vec::with_capacity(entry.size as usize);
    if let crate::media::Location::Extents(ext) = &entry.location {
        use std::os::unix::fs::FileExt;
        for &(off, n) in ext {
            let start = bytes.len();
            bytes.resize(start + n as usize, 0);
            file.read_exact_at(&mut bytes[start..], off)
                .with_context(|| format!("reading the seed {}", seed.display()))?;
        }
    }
    let mut w = crate::writer::RootWriter::new(root);
    let mut archive = tar::Archive::new(&bytes[..]);
    for e in archive.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        let mode = e.header().mode()? & 0o7777;
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut content)?;
        // check_rel refuses absolute paths and '..'.
        crate::writer::Writer::write(&mut w, &path, &content, mode)
            .with_context(|| format!("putting {path} from the seed in place"))?;
    }
    Ok(())
}

/// MAC addresses of this VM's NICs.
fn local_macs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(under(root, "/sys/class/net")) {
        for e in rd.flatten() {
            if let Ok(m) = std::fs::read_to_string(e.path().join("address")) {
                let m = m.trim().to_ascii_lowercase();
                if m.len() == 17 && m != "00:00:00:00:00:00" {
                    out.push(m);
                }
            }
        }
    }
    out.sort();
    out
}

fn cmd_run(root: &Path, args: &RunArgs) -> Result<ExitCode> {
    let role_path = find_role(root, args)?;
    let role = RoleFile::load(&role_path)?;
    let steps = crate::steps::steps_for(&role);
    let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
    let journal_path = under(root, paths::JOURNAL);
    let before = Journal::load(&journal_path)?;
    // A journal of another instance (a changed plan, a re-used disk) starts over.
    let mut journal = match &before {
        Some(j) if j.instance_id == role.instance_id && j.steps.len() == names.len() => j.clone(),
        _ => Journal::new(&role.host.name, role.host.role, &role.instance_id, &names),
    };
    let ctx = crate::steps::Ctx {
        root,
        role: &role,
        runner: crate::runner::Runner { quiet: args.quiet },
        wait_bound: args.wait,
        before: before.as_ref(),
    };
    eprintln!(
        "airlock-firstboot: {} is {} of cluster {}",
        role.host.name, role.host.role, role.cluster
    );
    match crate::steps::run_steps(&ctx, &steps, &mut journal, &journal_path) {
        Ok(()) => {
            eprintln!("airlock-firstboot: {} is complete", role.host.role);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("airlock-firstboot: {e:#}");
            if e.downcast_ref::<crate::steps::WaitTimeout>().is_some() {
                eprintln!("airlock-firstboot: will retry");
                Ok(ExitCode::from(EXIT_RETRY))
            } else {
                eprintln!(
                    "airlock-firstboot: failed; fix the cause and run again (finished steps are skipped)"
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn cmd_status(root: &Path, args: &StatusArgs) -> Result<ExitCode> {
    let path = under(root, paths::JOURNAL);
    let Some(j) = Journal::load(&path)? else {
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "state": "not started", "journal": null })
            );
        } else {
            println!("not started: no journal at {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let state = if j.complete() {
        "done"
    } else if j.steps.iter().any(|s| s.state == StepState::Failed) {
        "failed"
    } else if j.waiting_for.is_some() {
        "waiting"
    } else {
        "in progress"
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "state": state, "journal": j }))?
        );
    } else {
        print!("{}", j.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Warns when Astra's closed software environment would refuse this runner.
fn zps_check(root: &Path) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    if let Ok(bytes) = std::fs::read(&me)
        && let Some(hint) = crate::elfcheck::zps_hint(root, &bytes, &me.display().to_string())
    {
        eprintln!("airlock-firstboot: hint: {hint}");
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(cli.command, Command::Run(_) | Command::Prepare(_)) {
        zps_check(&cli.root);
    }
    match cli.command {
        Command::Run(args) => cmd_run(&cli.root, &args),
        Command::Prepare(args) => {
            let changed = crate::prepare::prepare(
                &cli.root,
                &args.bundle,
                &crate::runner::Runner::default(),
            )?;
            for c in changed {
                println!("  {c}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => cmd_status(&cli.root, &args),
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
