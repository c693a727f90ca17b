//! `airlock-firstboot`: the runner on each cloned VM. The command line and
//! its exit codes; the work is in the other modules of [`crate::vm`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::shared::exit;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::shared::journal::{Journal, StepState};
use crate::shared::paths;
use crate::shared::role::RoleFile;
use crate::shared::writer::Writer as _;
use crate::vm::engine::{Ctx, WaitTimeout, under};
use crate::vm::exec::{Exec, System};

#[derive(Debug, Parser)]
#[command(
    name = "airlock-firstboot",
    version = crate::shared::version(),
    about = "Turn this cloned VM into its Space VDI cluster role",
    long_about = "Turn this cloned VM into its Space VDI cluster role.\n\n\
        airlock-firstboot.service runs `airlock-firstboot run` at every boot. It finds \
        who this VM is (the role file cloud-init wrote from the VM's cidata seed, the seed \
        disc read directly, or this VM's MAC or SMBIOS UUID in the inventory `prepare` left \
        on the image) and runs its role as named steps: common (hostname, repository, \
        clone hygiene), then PostgreSQL + keepalived (db-master, db-replica) or the vendor \
        installer's swarm init / join (leader, manager). Each step is recorded in \
        /var/lib/airlock/journal; a step whose effect holds is skipped, so the runner may \
        be run again at any time, also after a power cut.\n\n\
        Exit codes of `run`: 0 the role is complete, 1 a step failed (see `status`), \
        75 a wait ran out and the run will be retried (the service restarts it), \
        2 usage or I/O error.",
    help_expected = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Reads or prepares an image directory instead of this machine.
#[derive(Debug, clap::Args)]
pub struct RootArg {
    /// Treat this directory as / (a clone's or the reference VM's disk, mounted)
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Perform this VM's role, step by step, and join the cluster
    #[command(after_help = "Examples:\n  \
        airlock-firstboot run                               # what the service runs at boot\n  \
        airlock-firstboot run --bundle /media/airlock       # find this VM in another bundle's inventory")]
    Run(RunArgs),
    /// Show the role, each step's state, what it waits for, the last error; with --cluster, every host's
    #[command(
        long_about = "Show this host's role, each step's state, what it waits for and the last error.\n\n\
            With --cluster (as root, on any host of the cluster): ask every other host at once \
            over the peer channel (SSH as airlock-peer, host keys pinned, at most 3 s each) \
            and show every host's runner state (step, wait, error), which DB server is the \
            primary and which the standby (timeline, replication lag in bytes and seconds), \
            who holds the VIP, the swarm's managers and whether each is reachable. A host that \
            does not answer is named with the reason. Exit status 0 only when the whole \
            cluster is ready (every runner done, exactly one primary, the standby streaming, \
            the VIP on the primary only, every manager reachable), 1 otherwise, with every \
            reason; two primaries are reported as SPLIT BRAIN. --json prints the same as one \
            JSON document (ClusterStatus, version 1).",
        after_help = "Examples:\n  airlock-firstboot status\n  airlock-firstboot status --json\n  \
        airlock-firstboot status --root /mnt/clone-disk     # a clone's disk, mounted elsewhere\n  \
        sudo airlock-firstboot status --cluster              # the whole cluster; exit 0 when ready\n  \
        sudo airlock-firstboot status --cluster --json | jq '.ready, .not_ready'"
    )]
    Status(StatusArgs),
    /// Prepare the reference VM from the bundle and seal it for cloning (run once, before cloning)
    #[command(
        long_about = "Prepare the reference VM from the bundle and seal it for cloning.\n\n\
            Run once on the reference VM (Astra Linux SE 1.7), with the bundle mounted or \
            copied, before making the clones. It checks the bundle against its SHA256SUMS, \
            keeps the signed repository and the vendor disc with the bundle's SHA256SUMS in \
            /opt/airlock/bundles/<sha256> (/opt/airlock/current points there; \
            /opt/airlock/repo and /opt/airlock/vendor link through it, and /opt/main and \
            /opt/devel to the repository: the vendor installer uses those; `update` moves \
            it on with a delta), copies the inventory with every host's payload to /opt/airlock \
            (for clones that boot without a seed; each clone keeps only its own), trusts the \
            archive key, installs this runner and airlock-firstboot.service, then seals the \
            image: it records the image's machine id and SSH host keys (no clone keeps them), \
            empties /etc/machine-id, removes /var/lib/dbus/machine-id and the SSH host keys, \
            and cleans cloud-init's state. Every mode is set explicitly, whatever the umask. \
            It refuses a VM that already has a role.\n\n\
            A delta (`airlock build --base`) is taken with --base OLD, the earlier bundle's \
            directory it was built against (the old disc or stick): the whole new bundle \
            is made in /var/tmp/airlock-bundle from the two, its signatures checked with \
            OLD's own archive-keyring.gpg and every file with the new SHA256SUMS (as \
            `airlock apply` does), prepared from, and removed after. A wrong or missing \
            base is refused with both manifest hashes named. A delta written in volumes \
            (`airlock build --base --volume-size`) is taken as a bundle's volumes are: \
            --bundle once per volume, in any order (or the directory holding volumes/), \
            each checked alone (with OLD's keys) and copied, the missing ones asked for on \
            a terminal; a missing volume, a damaged one or one of another delta is \
            refused, named.",
        after_help = "Examples:\n  sudo /media/airlock/bin/airlock-firstboot prepare --bundle /media/airlock\n  \
            sudo airlock-firstboot prepare --bundle bundle --root /mnt/reference-disk\n  \
            sudo /media/cdrom/bin/airlock-firstboot prepare --bundle /media/cdrom   (a bundle in volumes: insert the next disc when asked)\n  \
            sudo airlock-firstboot prepare --bundle /mnt/v01 --bundle /mnt/v02 --bundle /mnt/v03\n  \
            sudo /media/old/bin/airlock-firstboot prepare --bundle /media/usb/delta-v2 --base /media/old   (a delta and the bundle it applies to)\n  \
            sudo /media/old/bin/airlock-firstboot prepare --bundle /mnt/d01 --bundle /mnt/d02 --base /media/old   (a delta in volumes)"
    )]
    Prepare(PrepareArgs),
    /// Move this VM's repository on to the next bundle with a delta (`airlock build --base`)
    #[command(
        long_about = "Move this VM's repository and vendor disc on to the next bundle with a \
            delta (the directory `airlock build --base` wrote, its tar, or its volumes: \
            --bundle once per volume, in any order, each checked alone with the keys this \
            VM trusts and copied; on a terminal the missing ones are asked for, one disc \
            after the other; a volume that does not verify (exit 1), a missing one or one \
            of another delta (exit 2) is refused, named, with nothing changed).\n\n\
            `prepare` keeps what a VM uses of its bundle (the signed repository, the vendor \
            disc, the runner, the bundle's keyring, SHA256SUMS and its signature) in \
            /opt/airlock/bundles/<sha256 of that SHA256SUMS>, and /opt/airlock/current \
            points there; /opt/airlock/repo (apt's source, and /opt/main and /opt/devel \
            for the vendor installer) and /opt/airlock/vendor are links through it.\n\n\
            update checks that the delta was built against that bundle (its BASE names the \
            sha256 of this VM's SHA256SUMS; another base is refused with both hashes named \
            and nothing changed), makes the new bundle's repository and vendor disc beside \
            the old one from the files the delta carries and those this VM has, checks the \
            delta's signatures and every file against the new signed SHA256SUMS with the \
            archive key this VM already trusts (/etc/apt/trusted.gpg.d/airlock-archive.gpg; \
            never a key in the delta), writes it to the disk, and only then points \
            /opt/airlock/current at it with one rename. Interrupted at any point (a power \
            cut, a kill, a full disk, a damaged delta), the VM keeps the old bundle whole, \
            or has the new one whole; run update again. The old bundle is removed after \
            the switch. Applying the same delta again says \"already at …\" and changes \
            nothing.\n\n\
            Just before the switch, the new bundle's archive-keyring.gpg becomes the keyring \
            this VM trusts, for apt and for the next update (\"now trusting keys: …\"), once \
            it verifies the bundle's own SHA256SUMS and InRelease; a new runner \
            (bin/airlock-firstboot) replaces /usr/local/sbin/airlock-firstboot. A signing key \
            is rolled over through a bundle both keys sign (`airlock build --key OLD --key \
            NEW`); a delta signed by no key this VM trusts is refused, both named.\n\n\
            One prepare or update at a time: each holds /opt/airlock/lock (flock, its pid \
            in it) while it runs; another is refused at once.\n\n\
            It says what changed: packages upgraded, added and removed, files of the \
            repository and vendor disc, and the files of the bundle a VM does not keep \
            (recipe, seeds, payloads: a changed plan reaches new clones only through a \
            reference VM prepared from the whole new bundle). Then run `apt-get update`. \
            The files it keeps from the old bundle are hard links: the disk needs room \
            for what the delta carries (and, from a tar or volumes, its unpacked copy) \
            until the switch.\n\n\
            Exit codes: 0 updated or already there, 1 the delta does not make a bundle \
            that verifies with the keys this VM trusts (nothing changed), 2 usage or I/O \
            error, a wrong base, or another prepare or update running.",
        after_help = "Examples:\n  \
            sudo airlock-firstboot update --bundle /media/usb/delta-v2\n  \
            sudo airlock-firstboot update --bundle /media/cdrom   (a delta in volumes: insert the next disc when asked)\n  \
            sudo airlock-firstboot update --bundle /mnt/d01 --bundle /mnt/d02\n  \
            sudo apt-get update && sudo apt-get upgrade\n  \
            sudo airlock-firstboot update --bundle delta-v2 --root /mnt/reference-disk   (an image, mounted)\n\n\
            Which bundle this VM has, and which a delta applies to:\n  \
            sha256sum /opt/airlock/current/SHA256SUMS;  cat /media/usb/delta-v2/BASE"
    )]
    Update(UpdateArgs),
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
    Token(RootArg),
    /// Run by PostgreSQL's unit before each start: never a second writable primary
    #[command(
        name = "pg-guard",
        long_about = "Run by PostgreSQL's unit before each start of a cluster (a drop-in the \
            pg-config step installs on the DB servers of a pair): never a second writable \
            primary.\n\n\
            When the local cluster would start as a primary, it asks the peer (for up to 20 s) \
            whether it is in recovery. A peer that is the primary means this server is the old \
            master coming back after a failover: its cluster starts in standby mode \
            (read-only), /var/lib/airlock/fenced.json says why, and `status` shows it. Nothing \
            is deleted. An unreachable peer is named and the cluster starts as it was. Exits \
            1 (PostgreSQL does not start) only when it cannot decide or cannot fence.",
        after_help = "Example:\n  systemctl cat postgresql@11-main   # shows ExecStartPre=/usr/local/sbin/airlock-firstboot pg-guard %i"
    )]
    PgGuard(PgGuardArgs),
    /// Make this former primary a streaming standby of its peer, the primary now
    #[command(
        long_about = "Make this DB server, a former primary, a streaming standby of its peer.\n\n\
            After a failover the old master comes back read-only (`status` says NOT A \
            PRIMARY). Its writes after the failover exist only here; when you have decided \
            they may go, run this on it. The peer must answer as the primary, else nothing \
            is changed. PostgreSQL is stopped; the data directory is copied aside \
            (DATA.airlock-old-SECONDS, never deleted: remove it yourself once you are \
            sure); pg_rewind rewinds the cluster to the peer's timeline (wal_log_hints is \
            on from the pg-config step), or, when it cannot, a base backup replaces it; the \
            replication slot is made on the peer; the fence record goes; PostgreSQL starts \
            as a standby, and this waits until it streams. Exits 0 when it streams, 1 when a \
            check refused, 75 when the wait ran out.",
        after_help = "Example (on the old master, as root):\n  airlock-firstboot status     # NOT A PRIMARY: its peer db2 is the primary now\n  airlock-firstboot rejoin\n  airlock-firstboot status     # streaming from db2"
    )]
    Rejoin(RejoinArgs),
    /// Answer another cluster host's question (the peer user's forced SSH command)
    #[command(
        long_about = "Answer another cluster host's question.\n\n\
            The forced command of the peer user's SSH key on every host \
            (restrict,command=\"airlock-firstboot answer\"): the question is what the \
            client asked (SSH_ORIGINAL_COMMAND), or QUESTION when a person runs it. It \
            answers one line and never a secret. Questions:\n\n  \
            reach DBHOST   can this host reach DBHOST's PostgreSQL port? up, down (the \
            host refused) or unreachable, with the reason. The dispatchers answer it as \
            the DB pair's witnesses.\n\n  \
            status         this host's status as one line of JSON (HostStatus, version 1): \
            the runner's state from its journal; on a DB server the state root writes to \
            /run/airlock/db-state.json every second, and how old it is; on a dispatcher \
            the swarm's nodes (`docker node ls`, through the one sudo rule of the peer \
            user). `status --cluster` asks it.\n\n\
            Exits 2 for any other question.",
        after_help = "Examples (on a DB server, as root):\n  ssh -i /etc/airlock/ssh/peer_client_key -o UserKnownHostsFile=/etc/airlock/ssh/cluster_known_hosts airlock-peer@DISPATCHER reach db1\n  \
            runuser -u airlock-peer -- airlock-firstboot answer status   # what the others are told"
    )]
    Answer(AnswerArgs),
    /// keepalived's check on a DB server: the split-brain guard (exit 0: may hold the VIP)
    #[command(
        long_about = "keepalived's check on the DB servers of a pair, every second: the \
            split-brain guard, with the dispatchers as witnesses.\n\n\
            On the primary: exit 0 while it reaches its peer or a majority of the \
            dispatchers. When it reaches neither, exit 1 (keepalived gives up the VIP), and \
            when that lasts a second more, PostgreSQL is stopped and \
            /var/lib/airlock/fenced.json says why: an isolated old master takes no write \
            the cluster would lose (within 6 s of the cut). Once it reaches them again, \
            PostgreSQL starts, and its start guard decides whether as the primary.\n\n\
            On the standby: exit 0 while the primary's PostgreSQL answers, or while a \
            majority of the voters (this server and the dispatchers, asked over SSH) \
            cannot reach it; else exit 1, so a cut between the DB servers alone never \
            gives the VIP to the standby. A fenced server always exits 1.\n\n\
            The verdict and its reason are in /run/airlock/quorum.json and in `status`; \
            each change is logged to syslog (tag airlock-quorum).",
        after_help = "Example:\n  airlock-firstboot quorum; echo $?\n  cat /run/airlock/quorum.json"
    )]
    Quorum(RootArg),
    /// keepalived's notify_master: promote the standby if the witnesses agree
    #[command(
        long_about = "keepalived's notify_master on the DB servers of a pair: this host took \
            the VIP. A standby is promoted only when its peer does not answer as a primary \
            and a majority of the voters (this server and the dispatchers) cannot reach \
            the peer's PostgreSQL. When some voter got no answer at all (the old primary \
            may be isolated rather than dead), it first waits until the old primary has \
            surely stopped itself (6 s after it was lost). Otherwise it gives the VIP back \
            for 10 s and says why (syslog tag airlock-promote, and `status`).",
        after_help = "Example:\n  journalctl -t airlock-promote"
    )]
    Promote(RootArg),
    /// Write this host's as-built report: every installed package with its hashes, changed files, the journal
    #[command(
        long_about = "Write this host's as-built report: what it runs, package by package, in a \
            form `airlock report check` holds against the bundle at the secure site.\n\n\
            The report (JSON, versioned) names the host, its role, cluster and instance id \
            (from the role file), this runner's version, the kernel and /etc/os-release, the \
            runner's journal and the PostgreSQL start guard's records, and every installed \
            package (dpkg-query; status \"install ok installed\") with its name, version and \
            architecture, the SHA-256 of its .deb as apt's index recorded it (one apt-cache \
            call), the SHA-256 of dpkg's copy of the package's md5sums \
            (/var/lib/dpkg/info/PACKAGE.md5sums), and the files `dpkg --verify` reports as \
            changed. What cannot be collected (no apt, an unreadable journal) is noted in \
            the report, not fatal. Nothing on the host is changed.\n\n\
            --out writes a report holding this host, atomically; --host-only prints this \
            host's section as JSON on stdout (to put a cluster's sections together).",
        after_help = "Examples:\n  \
            airlock-firstboot report --out /root/spdb1-as-built.json\n  \
            airlock-firstboot report --host-only | jq '.packages | length'\n  \
            airlock-firstboot report --root /mnt/clone-disk --out clone.json   # a clone's disk, mounted\n\n\
            Then, at the secure site:\n  \
            airlock report check spdb1-as-built.json --bundle /media/airlock"
    )]
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("output").required(true).args(["out", "host_only"]))]
pub struct ReportArgs {
    /// Write the report (JSON) to FILE, atomically
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print only this host's section as JSON on stdout
    #[arg(long)]
    pub host_only: bool,
    #[command(flatten)]
    pub root: RootArg,
}

#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// The question (default: $SSH_ORIGINAL_COMMAND)
    #[arg(value_name = "QUESTION")]
    pub question: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RejoinArgs {
    /// Upper bound of the wait for streaming, in seconds
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub wait: u64,
    /// Do not print the `+ command` lines
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The role file (default: /etc/airlock/role.toml under --root)
    #[arg(long, value_name = "PATH")]
    pub role_file: Option<PathBuf>,
    /// A bundle to find this VM in (inventory.toml, by MAC or SMBIOS UUID) when it has no role
    /// file and no seed (default: the inventory `prepare` left in /opt/airlock)
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
    /// The bundle directory (as written by `airlock build`), or one of its volumes (repeat --bundle for each; on a terminal the missing ones are asked for, one disc after the other)
    #[arg(long, value_name = "DIR", required = true)]
    pub bundle: Vec<PathBuf>,
    /// With a delta as --bundle (from `airlock build --base`: its directory, tar, or its volumes, one --bundle each): the earlier bundle's directory it was built against
    #[arg(long, value_name = "OLD")]
    pub base: Option<PathBuf>,
    #[command(flatten)]
    pub root: RootArg,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The delta directory (from `airlock build --base`), its tar (`--tar`), or one of its volumes (`--volume-size`: repeat --bundle for each; on a terminal the missing ones are asked for), built against the bundle this VM has
    #[arg(long, value_name = "DIR", required = true)]
    pub bundle: Vec<PathBuf>,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub root: RootArg,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the state and the journal as JSON (with --cluster: the whole cluster's status)
    #[arg(long)]
    pub json: bool,
    /// Ask every host of the cluster and judge whether the whole cluster is ready (as root)
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub root: RootArg,
}

#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// The role file (default: /etc/airlock/role.toml under --root)
    #[arg(long, value_name = "PATH")]
    pub role_file: Option<PathBuf>,
    /// Print the whole role file as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub root: RootArg,
}

#[derive(Debug, clap::Args)]
pub struct PgGuardArgs {
    /// The cluster being started (systemd's %i, e.g. 11-main); for the log
    #[arg(value_name = "INSTANCE")]
    pub instance: Option<String>,
}

/// The runner's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock-firstboot: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn cmd_run(args: &RunArgs) -> Result<ExitCode> {
    let root = Path::new("/");
    let role_path =
        crate::vm::discovery::find_role(root, args.role_file.as_deref(), args.bundle.as_deref())?;
    let role = RoleFile::load(&role_path)?;
    let steps = crate::vm::roles::steps_for(&role);
    let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
    let before = Journal::load(&under(root, paths::JOURNAL))?;
    // A journal of another instance (a changed plan, a re-used disk) starts over.
    let journal = match &before {
        Some(j) if j.instance_id == role.instance_id && j.steps.len() == names.len() => j.clone(),
        _ => Journal::new(&role.host.name, role.host.role, &role.instance_id, &names),
    };
    let exec = System { quiet: args.quiet };
    let ctx = Ctx::new(root, &role, &exec, args.wait, before.as_ref(), journal);
    eprintln!(
        "airlock-firstboot: {} is {} of cluster {}",
        role.host.name, role.host.role, role.cluster
    );
    match crate::vm::engine::run_steps(&ctx, &steps) {
        Ok(()) => {
            eprintln!("airlock-firstboot: {} is complete", role.host.role);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("airlock-firstboot: {e:#}");
            if e.downcast_ref::<WaitTimeout>().is_some() {
                eprintln!("airlock-firstboot: will retry");
                Ok(ExitCode::from(exit::RETRY))
            } else {
                eprintln!(
                    "airlock-firstboot: failed; fix the cause and run again (finished steps are skipped)"
                );
                Ok(ExitCode::from(exit::FAILED))
            }
        }
    }
}

/// Where the run stands, in one word.
fn state_of(j: &Journal) -> &'static str {
    if j.complete() {
        "done"
    } else if j.steps.iter().any(|s| s.state == StepState::Failed) {
        "failed"
    } else if j.waiting_for.is_some() || j.steps.iter().any(|s| s.state == StepState::Waiting) {
        "waiting"
    } else {
        "in progress"
    }
}

/// `status --cluster`: every host's status, judged; exit 0 only when the
/// whole cluster is ready.
fn cmd_cluster_status(args: &StatusArgs) -> Result<ExitCode> {
    let root = &args.root.root;
    let exec = System { quiet: true };
    let uid = exec.run(&crate::vm::exec::Cmd::new("id").arg("-u"))?;
    if uid.stdout.trim() != "0" {
        anyhow::bail!(
            "status --cluster asks the other hosts with the peer key ({}), which only root may read: run it as root",
            paths::PEER_CLIENT_KEY
        );
    }
    let role = RoleFile::load(&under(root, paths::ROLE_FILE))?;
    let cs = crate::vm::clusterstatus::cluster_status(root, &exec, &role);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cs)?);
    } else {
        print!("{}", crate::vm::clusterstatus::to_text(&cs));
    }
    Ok(if cs.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILED)
    })
}

fn cmd_status(args: &StatusArgs) -> Result<ExitCode> {
    if args.cluster {
        return cmd_cluster_status(args);
    }
    let root = &args.root.root;
    let path = under(root, paths::JOURNAL);
    let fence = crate::vm::guard::Fence::load(root);
    let promoted = crate::vm::guard::promoted(root);
    let quorum = crate::vm::quorum::last_state(root);
    let Some(j) = Journal::load(&path)? else {
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "state": "not started", "journal": null, "fenced": fence, "promoted": promoted, "quorum": quorum })
            );
        } else {
            println!("not started: no journal at {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let state = state_of(&j);
    if args.json {
        let v = serde_json::json!({
            "state": state, "journal": j, "fenced": fence, "promoted": promoted, "quorum": quorum,
            "synchronous": crate::vm::sync::describe(root),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &fence {
        let data = RoleFile::load(&under(root, paths::ROLE_FILE))
            .ok()
            .and_then(|r| r.host.postgres.map(|p| p.data_dir))
            .unwrap_or_else(|| "the data directory".into());
        println!("*** {} ***\n", f.explain(Path::new(&data)));
    }
    if let Some(t) = promoted {
        println!(
            "This DB server was promoted to primary by keepalived at {} (a failover).\n",
            crate::shared::timefmt::rfc2822_utc(t)
        );
    }
    if let Some(line) = crate::vm::sync::describe(root) {
        println!("{line}\n");
    }
    if let Some(q) = &quorum {
        println!(
            "Split-brain guard ({}): {}: {}\n",
            crate::shared::timefmt::rfc2822_utc(q.checked_at),
            q.verdict,
            q.reason
        );
    }
    print!("{}", j.to_text());
    Ok(ExitCode::SUCCESS)
}

fn cmd_role(args: &RoleArgs) -> Result<ExitCode> {
    let path = args
        .role_file
        .clone()
        .unwrap_or_else(|| under(&args.root.root, paths::ROLE_FILE));
    let rf = RoleFile::load(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rf)?);
        return Ok(ExitCode::SUCCESS);
    }
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
    Ok(ExitCode::SUCCESS)
}

fn cmd_token(root: &Path) -> Result<ExitCode> {
    let path = under(root, paths::TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => match crate::vm::edits::find_swarm_token(&t) {
            Some(token) => {
                println!("{token}");
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("{} does not hold a swarm join token", path.display());
                Ok(ExitCode::from(exit::FAILED))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("no join token yet: the leader has not finished `swarm init`");
            Ok(ExitCode::from(exit::FAILED))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn cmd_pg_guard(args: &PgGuardArgs) -> ExitCode {
    let exec = System { quiet: true };
    let what = args.instance.as_deref().unwrap_or("PostgreSQL");
    match crate::vm::guard::pg_guard(Path::new("/"), &exec, crate::vm::guard::PEER_WAIT) {
        Ok(said) => {
            eprintln!("airlock-firstboot pg-guard {what}: {said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "airlock-firstboot pg-guard {what}: cannot decide whether this server may start as a primary, so it does not start: {e:#}"
            );
            ExitCode::from(exit::FAILED)
        }
    }
}

/// Warns when Astra's closed software environment would refuse this runner.
fn zps_check(root: &Path) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    if let Ok(bytes) = std::fs::read(&me)
        && let Some(hint) = crate::vm::zps::zps_hint(root, &bytes, &me.display().to_string())
    {
        eprintln!("airlock-firstboot: hint: {hint}");
    }
}

/// `prepare` from a bundle directory, or from its volumes: each checked
/// alone and copied as it comes (one disc drive), the missing ones asked
/// for on a terminal, the whole verified, then prepared from.
fn cmd_prepare(args: &PrepareArgs) -> Result<Vec<String>> {
    use crate::shared::volumes;
    use std::io::IsTerminal;
    let root = &args.root.root;
    if let Some(base) = &args.base {
        return prepare_from_delta(root, &args.bundle, base);
    }
    if let Some(d) = args
        .bundle
        .iter()
        .find(|b| crate::shared::delta::is_delta(b))
    {
        anyhow::bail!(
            "{} is a delta (it has BASE): give the earlier bundle it applies to with --base OLD",
            d.display()
        );
    }
    let Some(volume_dirs) = volumes::given_volumes(&args.bundle)? else {
        let [bundle] = args.bundle.as_slice() else {
            anyhow::bail!(
                "several --bundle given, but none is a volume of a bundle (a directory with VOLUMES): give one bundle directory, or its volumes"
            );
        };
        return crate::vm::prepare::prepare(root, bundle);
    };
    let assembled = under(root, paths::ASSEMBLED_BUNDLE);
    let mut a = volumes::Assembly::new(
        &assembled,
        crate::shared::manifest::Trust::own(),
        std::io::stderr().is_terminal(),
    )?;
    for dir in &volume_dirs {
        let name = a.add(dir)?;
        eprintln!("volume {name}: verified and copied from {}", dir.display());
    }
    ask_for_missing(&mut a)?;
    a.finish(&assembled)?;
    let done = crate::vm::prepare::prepare(root, &assembled);
    let _ = std::fs::remove_dir_all(&assembled);
    let mut done = done?;
    done.insert(
        0,
        format!(
            "assembled the bundle from {} volume(s) in {} (removed after)",
            volume_dirs.len().max(1),
            paths::ASSEMBLED_BUNDLE
        ),
    );
    Ok(done)
}

/// On a terminal, asks for each volume still missing (one disc drive: the
/// next disc), until the table is complete or an empty line.
pub(crate) fn ask_for_missing(a: &mut crate::shared::volumes::Assembly) -> Result<()> {
    use std::io::IsTerminal;
    while !a.missing().is_empty() && std::io::stdin().is_terminal() {
        let missing = a.missing();
        eprint!(
            "Insert volume {} (still missing: {}) and type the directory it is mounted on (empty line: stop): ",
            missing[0],
            missing.join(", ")
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let dir = line.trim();
        if dir.is_empty() {
            break;
        }
        match a.add(Path::new(dir)) {
            Ok(name) => eprintln!("volume {name}: verified and copied"),
            Err(e) => eprintln!("{e:#}"),
        }
    }
    Ok(())
}

/// `prepare --bundle DELTA --base OLD`: the whole new bundle made from the
/// delta (its directory, tar or volumes) and its base (checked with the
/// base's keyring), then prepared from.
fn prepare_from_delta(root: &Path, bundles: &[PathBuf], base: &Path) -> Result<Vec<String>> {
    use std::io::IsTerminal;
    let assembled = under(root, paths::ASSEMBLED_BUNDLE);
    let progress = std::io::stderr().is_terminal();
    // Its volumes are checked as they come with the base's keys.
    let trust = crate::shared::delta::base_trust(base, bundles);
    let delta = crate::shared::delta::open(
        bundles,
        &assembled,
        trust.as_ref(),
        Some(base),
        progress,
        &mut |a| ask_for_missing(a),
    )?;
    let applied = crate::shared::delta::apply(&delta, base, &assembled, None, progress)?;
    if !applied.ok {
        let _ = std::fs::remove_dir_all(&assembled);
        let first: Vec<String> = applied
            .problems
            .iter()
            .take(5)
            .map(|p| format!("{} {}: {}", p.kind, p.path, p.detail))
            .collect();
        anyhow::bail!(
            "the delta {} does not make a bundle that verifies ({} problem(s)): {}; nothing was prepared",
            delta.name.display(),
            applied.problems.len(),
            first.join("; ")
        );
    }
    let done = crate::vm::prepare::prepare(root, &assembled);
    let _ = std::fs::remove_dir_all(&assembled);
    let mut done = done?;
    let from = match delta.volumes {
        0 => delta.name.display().to_string(),
        n => format!("{n} volume(s) {}", names(bundles)),
    };
    done.insert(
        0,
        format!(
            "made the new bundle (SHA256SUMS {}) from the delta {from} ({} files) and the base {} ({} files), checked with the base's keyring, in {} (removed after)",
            applied.new,
            applied.from_delta,
            base.display(),
            applied.from_base,
            paths::ASSEMBLED_BUNDLE
        ),
    );
    Ok(done)
}

/// Paths for a message, space separated.
fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            zps_check(Path::new("/"));
            cmd_run(&args)
        }
        Command::Prepare(args) => {
            zps_check(&args.root.root);
            let _lock = crate::vm::lock::Lock::take(&args.root.root, "prepare")?;
            for c in cmd_prepare(&args)? {
                println!("  {c}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Update(args) => cmd_update(&args),
        Command::Status(args) => cmd_status(&args),
        Command::Role(args) => cmd_role(&args),
        Command::Token(r) => cmd_token(&r.root),
        Command::PgGuard(args) => Ok(cmd_pg_guard(&args)),
        Command::Rejoin(args) => cmd_rejoin(&args),
        Command::Answer(args) => cmd_answer(&args),
        Command::Quorum(r) => cmd_quorum(&r.root),
        Command::Promote(r) => cmd_promote(&r.root),
        Command::Report(args) => cmd_report(&args),
    }
}

fn cmd_update(args: &UpdateArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let root = &args.root.root;
    let _lock = crate::vm::lock::Lock::take(root, "update")?;
    let progress = std::io::stderr().is_terminal();
    let u = match crate::vm::update::update(root, &args.bundle, progress, &mut ask_for_missing) {
        Ok(u) => u,
        Err(e) if e.downcast_ref::<crate::vm::update::Refused>().is_some() => {
            eprintln!("airlock-firstboot update: REFUSED: {e:#}");
            return Ok(ExitCode::from(exit::FAILED));
        }
        Err(e) => return Err(e),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&u)?);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &u.warnings {
        eprintln!("airlock-firstboot update: warning: {w}");
    }
    if u.already {
        println!(
            "already at the bundle whose SHA256SUMS has sha256 {} (the one this delta makes): nothing changed",
            u.new
        );
        return Ok(ExitCode::SUCCESS);
    }
    let c = &u.changes;
    println!(
        "updated: {} now points at the bundle whose SHA256SUMS has sha256 {}\n  (was {}; {} file(s) from the delta, {} kept from the old bundle, verified with {})",
        paths::CURRENT_BUNDLE,
        u.new,
        u.old,
        u.from_delta,
        u.from_kept,
        paths::TRUSTED_KEYRING
    );
    let packages = c.package_lines();
    println!(
        "packages: {}",
        if packages.is_empty() {
            "none changed"
        } else {
            ""
        }
    );
    for line in packages {
        println!("  {line}");
    }
    println!(
        "files of the repository, vendor disc and runner: {} added, {} removed, {} changed",
        c.files_added, c.files_removed, c.files_changed
    );
    if !c.elsewhere.is_empty() {
        println!(
            "not applied here ({} file(s) of the bundle a VM does not keep changed: {}): a changed plan reaches new clones through a reference VM prepared from the whole new bundle",
            c.elsewhere.len(),
            c.elsewhere_short()
        );
    }
    if u.trust_changed {
        println!(
            "now trusting keys: {} (the new bundle's archive-keyring.gpg, in {}: apt and the next update check with it)",
            u.trusted.join(", "),
            paths::TRUSTED_KEYRING
        );
    } else {
        println!("trusted keys unchanged: {}", u.trusted.join(", "));
    }
    if u.runner_replaced {
        println!(
            "installed the new bundle's runner as {} (a runner already running keeps its old file until it ends)",
            paths::RUNNER
        );
    }
    println!("next: apt-get update (apt reads {} anew)", paths::REPO_ROOT);
    Ok(ExitCode::SUCCESS)
}

fn cmd_report(args: &ReportArgs) -> Result<ExitCode> {
    let root = &args.root.root;
    // A query: the `+ command` lines would only clutter it.
    let exec = System { quiet: true };
    let now = crate::shared::journal::now();
    let host = crate::vm::report::collect(root, &exec, now)?;
    for note in &host.notes {
        eprintln!("airlock-firstboot report: note: {note}");
    }
    let Some(out) = &args.out else {
        println!("{}", serde_json::to_string_pretty(&host)?);
        return Ok(ExitCode::SUCCESS);
    };
    let summary = format!(
        "{} ({} of cluster {}): {} packages, {} with the .deb's hash from apt's index, {} changed file(s){}",
        host.host,
        host.role,
        host.cluster,
        host.packages.len(),
        host.packages
            .iter()
            .filter(|p| !p.deb_sha256.is_empty())
            .count(),
        host.packages.iter().map(|p| p.changed.len()).sum::<usize>() + host.changed_unowned.len(),
        if host.files_verified {
            ""
        } else {
            " (dpkg --verify did not run)"
        }
    );
    let mut report =
        crate::shared::report::Report::of_host(host, crate::shared::timefmt::rfc3339_utc(now));
    // On the host itself (not a mounted disk): the whole cluster as it
    // stands, asked over the peer channel.
    if root == Path::new("/")
        && let Ok(role) = RoleFile::load(&under(root, paths::ROLE_FILE))
    {
        report.cluster_status = Some(crate::vm::clusterstatus::cluster_status(root, &exec, &role));
    }
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    let name = out
        .file_name()
        .with_context(|| format!("--out {}: name a file", out.display()))?;
    let dir = out.parent().unwrap_or(Path::new(""));
    crate::shared::writer::RootWriter::new(dir)
        .write(&name.to_string_lossy(), text.as_bytes(), 0o644)
        .with_context(|| format!("writing the report {}", out.display()))?;
    println!("wrote {}: {summary}", out.display());
    println!(
        "check it at the secure site: airlock report check {} --bundle BUNDLE",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The role file and the journal (or a fresh one) of the host at `root`.
fn role_and_journal(root: &Path) -> Result<(RoleFile, Journal)> {
    let role = RoleFile::load(&under(root, paths::ROLE_FILE))?;
    let journal = Journal::load(&under(root, paths::JOURNAL))?.unwrap_or_else(|| {
        let names: Vec<&str> = crate::vm::roles::steps_for(&role)
            .iter()
            .map(|s| s.name)
            .collect();
        Journal::new(&role.host.name, role.host.role, &role.instance_id, &names)
    });
    Ok((role, journal))
}

/// Says `line` on stderr and to syslog under `tag`.
fn log_to_syslog(exec: &dyn crate::vm::exec::Exec, tag: &str, line: &str) {
    eprintln!("{tag}: {line}");
    let _ = exec.output(&crate::vm::exec::Cmd::new("logger").args(["-t", tag, line]));
}

fn cmd_quorum(root: &Path) -> Result<ExitCode> {
    let (role, journal) = role_and_journal(root)?;
    let exec = System { quiet: true };
    if !crate::vm::quorum::applies(&role) {
        println!("not a DB server of a pair that promotes: nothing to guard");
        return Ok(ExitCode::SUCCESS);
    }
    let before = crate::vm::quorum::last_state(root);
    let ctx = Ctx::new(root, &role, &exec, 0, None, journal);
    let (code, verdict, reason) = match crate::vm::quorum::check(&ctx) {
        Ok(crate::vm::quorum::Verdict::Ok(r)) => (ExitCode::SUCCESS, "ok", r),
        Ok(crate::vm::quorum::Verdict::Out(r)) => (ExitCode::from(exit::FAILED), "out", r),
        Err(e) => (ExitCode::from(exit::FAILED), "error", format!("{e:#}")),
    };
    let changed = before.is_none_or(|b| b.reason != reason);
    if changed {
        log_to_syslog(&exec, "airlock-quorum", &format!("{verdict}: {reason}"));
    } else {
        println!("{verdict}: {reason}");
    }
    // After the decision: what `status --cluster` shows of this DB server.
    if let Err(e) = crate::vm::clusterstatus::write_db_state(root, &exec, &role) {
        log_to_syslog(
            &exec,
            "airlock-quorum",
            &format!("cannot write the DB state for status --cluster: {e:#}"),
        );
    }
    Ok(code)
}

fn cmd_promote(root: &Path) -> Result<ExitCode> {
    let (role, journal) = role_and_journal(root)?;
    let exec = System { quiet: true };
    let ctx = Ctx::new(root, &role, &exec, 0, None, journal);
    match crate::vm::quorum::promote(&ctx) {
        Ok(said) => {
            log_to_syslog(&exec, "airlock-promote", &said);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            log_to_syslog(
                &exec,
                "airlock-promote",
                &format!("promotion failed: {e:#}"),
            );
            Ok(ExitCode::from(exit::FAILED))
        }
    }
}

fn cmd_answer(args: &AnswerArgs) -> Result<ExitCode> {
    let question = if args.question.is_empty() {
        std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default()
    } else {
        args.question.join(" ")
    };
    let role = RoleFile::load(&under(&args.root.root, paths::ROLE_FILE))?;
    match crate::vm::peer::answer(&System { quiet: true }, &args.root.root, &role, &question) {
        Ok(said) => {
            println!("{said}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("airlock-firstboot answer: {e:#}");
            Ok(ExitCode::from(exit::ERROR))
        }
    }
}

fn cmd_rejoin(args: &RejoinArgs) -> Result<ExitCode> {
    let root = Path::new("/");
    let (role, journal) = role_and_journal(root)?;
    let exec = System { quiet: args.quiet };
    let ctx = Ctx::new(root, &role, &exec, args.wait, None, journal);
    match crate::vm::rejoin::rejoin(&ctx) {
        Ok(r) => {
            let how = match &r.method {
                crate::vm::rejoin::Method::Rewind => "pg_rewind".to_string(),
                crate::vm::rejoin::Method::BaseBackup(why) => {
                    format!("a base backup (pg_rewind could not: {why})")
                }
            };
            println!(
                "{} streams from {} ({}) now, rejoined with {how}.\nThe old data directory is kept at {}: remove it once you are sure nothing in it is needed.",
                role.host.name,
                r.peer.name,
                r.peer.ip,
                r.old_data.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.downcast_ref::<WaitTimeout>().is_some() => {
            eprintln!("airlock-firstboot rejoin: {e:#}");
            Ok(ExitCode::from(exit::RETRY))
        }
        Err(e) => {
            eprintln!("airlock-firstboot rejoin: {e:#}");
            Ok(ExitCode::from(exit::FAILED))
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
