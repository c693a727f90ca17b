//! The `airlock` command line: clap definitions and one `match` over them.
//!
//! Exit codes, for every subcommand: 0 ok, 1 the check failed (the recipe is
//! inconsistent, verification failed), 2 usage or I/O error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::shared::exit;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::build::bundle;
use crate::build::cloudinit;
use crate::build::plan::{self, MediaCheck, Severity};
use crate::build::recipe;
use crate::build::repo;
use crate::build::secrets::Secrets;
use crate::build::seed;
use crate::build::sign::{self, Signers};
use crate::shared::timefmt;
use crate::shared::writer::RootWriter;

/// What a command decided, mapped onto the exit-code contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1: the check failed; the reasons were printed.
    CheckFailed,
}

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
            Resolves the recipe into the discs the repository is merged from (main, devel, \
            then the update discs, in that order), the vendor disc and the per-host plan \
            (role, FQDN, address, gateway, DNS, VRRP state and priority, peers, VIP, \
            replication source, where a manager gets the swarm join token) and prints it \
            as a table, or as JSON with --json.\n\n\
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

    /// Check that apt can install each role's packages from the discs onto the reference VM's base
    #[command(
        long_about = "Check that apt can install each role's packages from the discs onto the \
            reference VM's base, before anything is built or carried through the gate.\n\n\
            For each role of the recipe's hosts, the packages its steps and the vendor \
            installer install (the recipe's [packages] table, or airlock's list: \
            db-master and db-replica postgresql-<major> and keepalived, leader docker.io \
            and postgresql-client-<major>, manager docker.io) are resolved with their \
            whole Pre-Depends and Depends closure as apt resolves them: the newest \
            version of a package is the one installed, version constraints (<< <= = >= \
            >>), alternatives (a | b), virtual packages and versioned Provides, Breaks \
            and Conflicts. The repository is the main, devel and update discs as their \
            own Packages indexes list them (what `airlock build` checks every .deb \
            against); the base is media.base_status (a /var/lib/dpkg/status copied \
            from the reference VM) or, without it, the main disc's required and \
            important packages.\n\n\
            Each problem names the role, the chain of relations that needs the package \
            and what is there instead, e.g. `keepalived → libnl-3-200 (>= 3.2.7) → not \
            on any disc (there is libnl-3-200 3.2.2 on main)`. `airlock build` runs the \
            same check over the packages it read and refuses an incomplete bundle \
            unless --allow-incomplete.\n\n\
            Exit codes: 0 every role can be installed, 1 a problem in the recipe or a \
            role (every one is listed), 2 a disc or the status file could not be read.",
        after_help = "Examples:\n  \
            airlock check site.toml\n  \
            airlock check site.toml --json | jq '.roles[] | {role, problems: [.problems[] | .chain | join(\" → \")]}'\n\n\
            The reference VM's base, for an exact answer:\n  \
            scp ref-vm:/var/lib/dpkg/status ref-status   # then media.base_status = \"ref-status\""
    )]
    Check(CheckArgs),

    /// Build the whole bundle: signed repository, seeds, vendor disc, runner, signed SHA256SUMS
    #[command(
        long_about = "Build the whole bundle for a site.\n\n\
            Runs plan, repository (main, devel and update discs), bake, copies the vendor disc and \
            the airlock-firstboot runner, and writes DIR with a SHA256SUMS of every file \
            and its detached signature SHA256SUMS.gpg, so that `sha256sum -c SHA256SUMS` \
            and `gpgv --keyring ./archive-keyring.gpg SHA256SUMS.gpg SHA256SUMS` check it \
            with no airlock at hand. DIR/README.txt says what to do at the site.\n\n\
            The build is atomic (DIR is replaced only when everything succeeded) and, \
            given the same key, recipe, media, secrets and SOURCE_DATE_EPOCH, \
            byte-reproducible. A rebuild re-reads only changed packages. Secrets are kept \
            outside the bundle in --secrets (default: RECIPE's name with .secrets.toml).\n\n\
            --key may be given more than once: InRelease, Release.gpg and SHA256SUMS.gpg \
            then carry one signature per key, in the order given, and archive-keyring.gpg \
            holds every key. A site that trusts any one of the keys accepts the bundle (a \
            key rollover without a flag day); `airlock verify --require-signers N` asks \
            for N of them (a two-person rule).\n\n\
            --volume-size cuts the bundle into DIR/volumes/NN/ for discs or sticks, one \
            volume at a time: no file is split; each volume holds its own signed SHA256SUMS, \
            the keys, the runner, README.txt, the whole bundle's manifest (whole/) and the \
            signed table of all volumes (VOLUMES, VOLUMES.gpg: each volume's name, files, \
            bytes and the hash of its SHA256SUMS), so each one verifies alone with \
            sha256sum -c and gpgv and with `airlock verify DIR/volumes/NN`; `airlock verify \
            DIR` checks them all and names a missing or foreign one. On the reference VM, \
            `airlock-firstboot prepare` takes them one after the other. Sizes: dvd (4.7 GB), \
            dvd-dl, bd25, bd50, fat32 (4 GiB - 1: one file on a FAT32 stick), or bytes \
            with K, M or G (powers of 1024). Each file is counted in whole 2 KiB sectors, \
            as an ISO 9660 image stores it.\n\n\
            --base OLD makes DIR a delta: the bundle is built whole, but DIR receives \
            only the files whose contents OLD's SHA256SUMS does not list (new and \
            upgraded packages, changed seeds and payloads, the new indexes), the new \
            bundle's whole signed SHA256SUMS, its keys and MODES, and BASE: \
            \"<sha256 of OLD's SHA256SUMS>  SHA256SUMS\", signed in BASE.gpg. OLD is read \
            for its manifest only: a bundle directory, a bundle tar, a bundle in \
            volumes, an earlier delta (its SHA256SUMS is its whole bundle's) or a \
            SHA256SUMS file. With --tar FILE the delta is also written as one tar (the \
            head, BASE and BASE.gpg, then the files carried), which `airlock apply` and \
            `airlock-firstboot update` take as they take the directory. With \
            --volume-size the delta is cut into DIR/volumes/NN/ as a whole bundle is \
            (each volume verifies alone; --iso too), and every volume also carries BASE \
            and BASE.gpg, so any one names the base; its table names the base too. At the \
            site, `airlock apply DELTA --to OLD --out NEW` (DELTA: the directory, the tar, \
            or every volume) makes the whole new bundle again and verifies it.",
        after_help = "Examples:\n  \
            airlock keygen --out keys\n  \
            airlock build site.toml --key keys/signing-key.asc --out bundle\n  \
            airlock build site.toml --key keys/signing-key.asc --out bundle --volume-size dvd --iso\n  \
            airlock build site.toml --key keys/signing-key.asc --out bundle --tar bundle.tar\n\n\
            A delta against what the site has (keep each delivered bundle's SHA256SUMS):\n  \
            airlock build site.toml --key keys/signing-key.asc --base delivered/v1.SHA256SUMS --out delta-v2\n  \
            airlock build site.toml --key keys/signing-key.asc --base delta-v2 --out delta-v3\n  \
            airlock build site.toml --key keys/signing-key.asc --base delivered/v2.SHA256SUMS --out delta-v3 --volume-size dvd --iso\n\n\
            Key rollover, one build signed by the old and the new key, later ones by the new key alone:\n  \
            airlock build site.toml --key old/signing-key.asc --key new/signing-key.asc --out bundle\n\n\
            Two-person rule, each officer's key:\n  \
            airlock build site.toml --key alice/signing-key.asc --key bob/signing-key.asc --out bundle"
    )]
    Build(BuildArgs),

    /// Check a bundle (directory or tar) against its signed SHA256SUMS
    #[command(
        long_about = "Check a bundle, a directory or a tar, against its signed SHA256SUMS.\n\n\
            Verifies the signatures of SHA256SUMS with the keys of --keyring (default: the \
            bundle's own archive-keyring.gpg, which proves only that the bundle is consistent: \
            pass the key you received separately to prove where it comes from), then hashes \
            every file. Reports every problem: modified, missing, extra or unreadable files, a \
            bad or missing signature, and tar entries with absolute paths, '..' or links \
            (never followed or extracted).\n\n\
            --keyring may be given more than once; --require-signers N (default 1) asks for \
            good signatures by N distinct keys of those keyrings (the same key twice counts \
            once), and fewer is a failure naming who signed and who did not. A signature by \
            a key the keyrings do not hold is named and not counted; a bad one by a key they \
            hold fails the check.\n\n\
            Exit codes: 0 all good, 1 verification failed, 2 usage or I/O error.",
        after_help = "Examples:\n  \
            airlock verify bundle --keyring /media/usb/archive-keyring.gpg\n  \
            airlock verify bundle.tar --json\n  \
            airlock verify bundle --keyring alice.gpg --keyring bob.gpg --require-signers 2\n\n\
            Without airlock: cd bundle && sha256sum -c SHA256SUMS && gpgv --keyring ./archive-keyring.gpg SHA256SUMS.gpg SHA256SUMS"
    )]
    Verify(VerifyArgs),

    /// Show what a bundle holds: cluster, hosts, discs, signers, runner, volumes
    #[command(
        long_about = "Show what a bundle holds, read from the bundle itself once it verified.\n\n\
            First verifies BUNDLE exactly as `airlock verify` does (--keyring and \
            --require-signers as there); a bundle that does not verify is not inspected: \
            its problems are listed and the exit code is 1. Then shows the cluster and its \
            hosts (role, address, MAC, SMBIOS UUID, seed), the discs the repository was \
            merged from with their package counts and sizes (from sbom.cdx.json), who \
            signed SHA256SUMS and when (fingerprint and user id), the runner's version \
            and the newest glibc it needs (Astra SE 1.7 has 2.28), the volumes of a \
            bundle in volumes, and the completeness verdict: `airlock check` over the \
            bundle's own recipe and Packages, with the main disc's required and important \
            packages as the installed base (a bundle does not carry the reference VM's \
            dpkg status). Every file shown is checked against the manifest \
            that verified.\n\n\
            BUNDLE is a bundle directory, its tar (.tar or .tar.gz, read as a stream, \
            never extracted) or a directory of volumes (DIR/volumes/NN/, all of them). \
            One volume alone and a delta are refused: a volume holds only its share \
            (`airlock verify` checks it alone), a delta only what its base lacks (apply it \
            first).\n\n\
            Exit codes: 0 shown, 1 the bundle does not verify, 2 usage or I/O error.",
        after_help = "Examples:\n  \
            airlock inspect bundle --keyring keys/archive-keyring.gpg\n  \
            airlock inspect bundle.tar --json | jq '.sources'\n  \
            airlock inspect bundle-in-volumes --keyring site-archive-keyring.gpg"
    )]
    Inspect(InspectArgs),

    /// Show what a new bundle changes against an old one: packages, each host's payload, the runner
    #[command(
        long_about = "Show what a new bundle changes against an old one: the document to read \
            and sign before a transfer.\n\n\
            Verifies both bundles first, exactly as `airlock verify` does (--keyring and \
            --require-signers apply to both); one that does not verify is not compared (exit 1). \
            Then lists:\n\
            - packages added, removed, upgraded and downgraded (versions in Debian order: \
            epoch, upstream, revision, `~` before anything) and rebuilt (same version, other \
            bytes), each with the disc it came from (from sbom.cdx.json; `?` for a bundle \
            built before SBOMs), read from the repository's own Packages indexes;\n\
            - per host, each file of its payload and its seed that is added, removed or \
            changed, with the lines removed (-) and added (+). The DB password and private \
            keys are never shown: their files say only that they changed, and any line of \
            another file (user-data) that holds a line of theirs reads `[secret masked]`;\n\
            - the runner's version and hash;\n\
            - every other file that differs (recipe, README, inventory, vendor disc, keys).\n\n\
            OLD and NEW are bundle directories, tars or directories of volumes. A delta \
            or a single volume is refused: apply the delta first, gather the volumes.\n\n\
            Exit codes: 0 compared (whatever changed), 1 a bundle does not verify, 2 usage \
            or I/O error.",
        after_help = "Examples:\n  \
            airlock diff delivered/v1 bundle --keyring keys/archive-keyring.gpg\n  \
            airlock diff v1.tar v2.tar > transfer-v2.txt\n  \
            airlock diff v1 v2 --json | jq '.packages.upgraded'"
    )]
    Diff(DiffArgs),

    /// Make the whole new bundle from a delta and the bundle it was built against, and verify it
    #[command(
        long_about = "Make the whole new bundle from a delta (`airlock build --base`) and the \
            earlier bundle it was built against, and verify it.\n\n\
            DELTA is the delta's directory, its tar (`build --base --tar`), or its volumes \
            (`build --base --volume-size`): each volume given (DIR/volumes/NN, in any order, \
            or DIR holding them all) is checked alone against its signed SHA256SUMS and the \
            signed table, with the keys the delta is checked with (OLD's, or --keyring), \
            copied beside NEW, and the delta they make is then applied as the directory \
            is; a volume that does not verify is refused, named (exit 1), and a missing \
            one or one of another delta or bundle too (exit 2), with nothing written.\n\n\
            OLD is the earlier bundle's directory or its tar (as `build --tar` wrote it, \
            plain or gzip): a tar is never extracted whole; its head (SHA256SUMS, the keys, \
            MODES) is read first, then the files NEW takes from it are copied out in one \
            pass.\n\n\
            The delta's BASE names the sha256 of the earlier bundle's SHA256SUMS; an OLD \
            whose SHA256SUMS has another hash, or none, is refused with both hashes named. \
            The signatures of the new SHA256SUMS and of BASE are checked with the keys of \
            OLD's own archive-keyring.gpg (it must be the one OLD's SHA256SUMS lists): a \
            delta is accepted when a key the site already trusts signed it. --keyring \
            (repeatable) and --require-signers check with the keys delivered separately \
            instead, as `airlock verify` does; a key rollover that the base does not know \
            yet needs them. The delta's own keyring is never trusted.\n\n\
            Before anything is written, every path of the new manifest is checked as \
            verify checks it (no '..', absolute path, control character, path listed \
            twice or both as a file and a directory), and the delta is refused if it holds \
            a link, a special file, or a file the new manifest does not list. NEW is then \
            put together in a staging directory beside it: the files the delta carries, \
            and every other file copied from OLD where OLD's manifest lists the same \
            sha256 (at any path). It is verified there exactly as `airlock verify` would, \
            with the same keys, and renamed into place only when it verifies: nothing \
            half-written is ever left at NEW. NEW may be OLD itself (updated in place); \
            applying the same delta again is harmless (NEW is made again, the same; in \
            place, an OLD that is already the new bundle is only verified).\n\n\
            Exit codes: 0 NEW made and verified, 1 the delta or the bundle it makes does \
            not verify (every problem is listed; nothing written), 2 usage or I/O error, \
            or a wrong or missing base.",
        after_help = "Examples:\n  \
            airlock apply /media/usb/delta-v2 --to bundle-v1 --out bundle-v2\n  \
            airlock apply /media/usb/delta-v2 --to bundle --out bundle      (in place)\n  \
            airlock apply /media/usb/delta-v2 --to bundle-v1.tar --out bundle-v2\n  \
            airlock apply /media/cdrom1 /media/cdrom2 /media/cdrom3 --to bundle-v1 --out bundle-v2   (a delta in volumes)\n  \
            airlock apply delta-v2 --to bundle-v1 --out bundle-v2 --keyring keys/archive-keyring.gpg --json\n\n\
            Which bundle a delta applies to, with stock tools:\n  \
            cat delta-v2/BASE;  cd bundle-v1 && sha256sum -c ../delta-v2/BASE\n\n\
            Checking the delta alone, with stock tools:\n  \
            cd delta-v2 && gpgv --keyring KEYRING SHA256SUMS.gpg SHA256SUMS && gpgv --keyring KEYRING BASE.gpg BASE && sha256sum -c --ignore-missing --quiet SHA256SUMS"
    )]
    Apply(ApplyArgs),

    /// Build and verify a bundle from built-in demo media (no discs needed)
    #[command(
        long_about = "Build and verify a bundle from built-in demo media.\n\n\
            Writes DIR/media (a small main and devel disc with real .deb files and their \
            own indexes, and a stand-in vendor disc), DIR/recipe.toml (the article's \
            stand), then builds DIR/bundle and DIR/bundle.tar and verifies both. Needs \
            nothing but the airlock binaries. The signing key and secrets come from a \
            fixed seed and are marked INSECURE: two runs give identical bundles, and none of \
            it may be used at a site.",
        after_help = "Example:\n  airlock demo --out /tmp/airlock-demo"
    )]
    Demo(DemoArgs),

    /// Render every VM's payload and cloud-init seed from a recipe
    #[command(
        long_about = "Render every VM's payload and cloud-init seed from a recipe.\n\n\
            Writes, for each host, DIR/payloads/HOST/ (user-data, meta-data, network-config \
            and rootfs/ with every file cloud-init writes on the VM: role file, /etc/hosts, \
            apt sources, the DB password, SSH keys of the swarm token rendezvous; the runner \
            renders keepalived.conf and the pg_hba lines from the role file) and \
            DIR/seeds/HOST.iso (ISO 9660, volume label cidata: attach it to the VM as a \
            CD-ROM), plus DIR/inventory.toml (host, MAC, SMBIOS UUID, seed).\n\n\
            Secrets (the DB password, SSH keys) are generated on the first run and kept \
            in the --secrets file (default DIR/secrets.toml, mode 0600) so later runs give \
            the same payloads; files holding them are written 0600 and nothing is \
            printed. Baking needs no install media.",
        after_help = "Examples:\n  \
            airlock bake recipes/space-vdi-5.4-ha.toml --out out\n  \
            airlock bake site.toml --out out --secrets /secure/site-secrets.toml"
    )]
    Bake(BakeArgs),

    /// Generate the site's archive signing key
    #[command(
        long_about = "Generate the site's archive signing key.\n\n\
            Writes DIR/signing-key.asc (the secret key, mode 0600, never printed), \
            DIR/archive-keyring.asc (the public key, armored) and DIR/archive-keyring.gpg \
            (the public key as a binary keyring, for apt's signed-by= and \
            /etc/apt/trusted.gpg.d/). The key is Ed25519 in the form GnuPG 2.2 (Astra SE \
            1.7) accepts. Existing files are never overwritten.",
        after_help = "Examples:\n  \
            airlock keygen --out keys\n  \
            airlock keygen --out keys --name \"Example site archive key\""
    )]
    Keygen(KeygenArgs),

    /// Work with the signed apt repository on its own
    #[command(subcommand)]
    Repo(RepoCommand),

    /// Hold the VMs' as-built reports against the bundle
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Check an as-built report against the bundle: is every installed package from it?
    #[command(
        long_about = "Check an as-built report (from `airlock-firstboot report` on the VMs) \
            against the bundle: is every package each host runs the bundle's, byte for \
            byte, and is every file of it as dpkg installed it?\n\n\
            First verifies the bundle exactly as `airlock verify` does (--keyring and \
            --require-signers as there), and refuses one that does not verify. Then reads every .deb of the bundle's repository (name, version, \
            architecture, SHA-256, and the SHA-256 of its md5sums control member) and puts \
            each installed package of each host in one class: from-bundle (same name, \
            version and architecture, and every hash the report carries matches the \
            bundle's), differs (a hash differs: both are named), not-in-bundle (the \
            bundle's nearest versions are named) or unverifiable (the report carries no \
            hash to compare). It also lists, per host, the files `dpkg --verify` found \
            changed.\n\n\
            FILE is a report (`report --out`) or one host's section (`report --host-only`).\n\n\
            Exit codes: 0 every package of every host is from-bundle and no file was \
            changed, 1 anything else (each problem is listed), 2 usage, an unreadable \
            report or bundle, or a bundle that does not verify.",
        after_help = "Examples:\n  \
            airlock report check spdb1-as-built.json --bundle bundle\n  \
            airlock report check cluster.json --bundle /media/airlock --keyring keys/archive-keyring.gpg\n  \
            airlock report check cluster.json --bundle bundle --keyring alice.gpg --keyring bob.gpg --require-signers 2\n  \
            airlock report check cluster.json --bundle bundle --json | jq '.hosts[].packages[] | select(.class != \"from-bundle\")'\n\n\
            Making the report, on a VM:\n  \
            airlock-firstboot report --out /root/spdb1-as-built.json"
    )]
    Check(ReportCheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReportCheckArgs {
    /// The as-built report (JSON from `airlock-firstboot report`)
    #[arg(value_name = "FILE")]
    pub report: PathBuf,
    /// The bundle directory the hosts were built from
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Merge the main, devel and update discs into one signed apt repository
    #[command(
        long_about = "Merge the main, devel and update discs into one signed apt repository.\n\n\
            Each disc is an .iso file (read directly: no mount, no root) or a directory \
            holding pool/ and dists/. Every .deb is read once: hashed, its control file \
            read, and copied (hard-linked from a directory on the same file system). Each \
            .deb must match the size and SHA256 its disc's own Packages index gives. \
            Update discs (--update, repeatable) are merged after main and devel, in the \
            order given, and named update1, update2, … in messages. Every version of a \
            package is kept, so apt installs the newest; identical packages on several \
            discs appear once; the same name, version and architecture with different \
            bytes is an error naming both files.\n\n\
            Writes OUT/pool/, OUT/dists/SUITE/COMPONENT/binary-ARCH/Packages{,.gz,.xz}, \
            Release, InRelease and Release.gpg. OUT is replaced only when the build \
            succeeds; a rebuild re-reads only the files that changed.\n\n\
            --key may be given more than once: InRelease and Release.gpg then carry one \
            signature per key, in the order given, and apt trusting any one of the keys \
            accepts the repository.",
        after_help = "Examples:\n  \
            airlock repo build --main astra-main.iso --devel astra-devel.iso --key keys/signing-key.asc --out repo\n  \
            airlock repo build --main astra-main.iso --devel astra-devel.iso --update 1.7.1-update.iso --update 1.7.2-update.iso --key keys/signing-key.asc --out repo\n  \
            SOURCE_DATE_EPOCH=1700000000 airlock repo build --main /srv/main --key keys/signing-key.asc --out repo --json\n  \
            airlock repo build --main astra-main.iso --key old/signing-key.asc --key new/signing-key.asc --out repo\n\n\
            On a VM: deb [signed-by=/path/archive-keyring.gpg] file:///opt/airlock/repo 1.7_x86-64 main contrib non-free"
    )]
    Build(RepoBuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The cluster recipe (TOML, `version = 1`)
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// The armored secret signing key (from `airlock keygen`); repeat it to sign with several keys, in that order
    #[arg(long = "key", value_name = "SECRET.asc", required = true)]
    pub keys: Vec<PathBuf>,
    /// The bundle directory to write (replaced when the build succeeds)
    #[arg(long, value_name = "DIR", required_unless_present = "no_dir")]
    pub out: Option<PathBuf>,
    /// Also write the bundle as one deterministic tar (.tar, or .tar.gz to compress)
    #[arg(long, value_name = "FILE", required_if_eq("no_dir", "true"))]
    pub tar: Option<PathBuf>,
    /// Write only the tar (--tar), no directory: the packages are streamed from the discs into it, each checked against its disc's index as it goes (no --out); a cache beside FILE (.FILE.airlock-repo-cache.json) keeps each package's control for the next --no-dir build
    #[arg(long, requires = "tar", conflicts_with_all = ["out", "volume_size", "base"])]
    pub no_dir: bool,
    /// Secrets file to read or create (default: RECIPE with .secrets.toml)
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// The airlock-firstboot binary to ship (default: next to this airlock)
    #[arg(long, value_name = "PATH")]
    pub runner: Option<PathBuf>,
    /// Ship a runner that needs a glibc newer than Astra SE 1.7's 2.28 (for tests on other systems)
    #[arg(long)]
    pub allow_new_glibc: bool,
    /// Build even when apt could not install some role's packages from the bundle (see `airlock check`)
    #[arg(long)]
    pub allow_incomplete: bool,
    /// Add airlock's source and vendored crates (target/airlock-src.tar from `just vendor`) as source/airlock-src.tar
    #[arg(long, value_name = "TAR")]
    pub with_source: Option<PathBuf>,
    /// Cut the bundle into volumes DIR/volumes/NN/ of at most SIZE bytes, each verifying alone: dvd, dvd-dl, bd25, bd50, fat32, or bytes with a K, M or G suffix
    #[arg(long, value_name = "SIZE", value_parser = crate::build::volumes::parse_size)]
    pub volume_size: Option<u64>,
    /// With --volume-size: each volume also as DIR/volumes/NN.iso (ISO 9660, Rock Ridge, Joliet; label AIRLOCK_<CLUSTER>_NN; needs xorriso)
    #[arg(long, requires = "volume_size")]
    pub iso: bool,
    /// Write to DIR only what this earlier bundle lacks (a delta for `airlock apply`; with --volume-size, in volumes): its directory, its tar, or just its SHA256SUMS
    #[arg(long, value_name = "OLD")]
    pub base: Option<PathBuf>,
    /// Print a summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Whose signatures `verify`, `inspect`, `diff`, `report check` and `apply` accept.
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// A keyring whose keys are trusted (default: the bundle's own; for apply, OLD's); repeatable
    #[arg(long = "keyring", value_name = "FILE")]
    pub keyrings: Vec<PathBuf>,
    /// How many distinct keys of the keyrings must have signed
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub require_signers: usize,
}

impl TrustArgs {
    fn load(&self) -> Result<bundle::Trust> {
        bundle::Trust::load(&self.keyrings, self.require_signers)
    }
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle: a directory or a .tar / .tar.gz file
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle: a directory, a .tar / .tar.gz file or a directory of volumes
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print the inspection as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The bundle the site has (directory, tar or directory of volumes)
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The bundle to deliver
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print the comparison as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The delta directory (from `airlock build --base`), its tar (`--tar`), or its volumes (`--volume-size`: each DIR/volumes/NN, in any order, or DIR holding them all)
    #[arg(value_name = "DELTA", required = true, num_args = 1..)]
    pub delta: Vec<PathBuf>,
    /// The earlier bundle the delta was built against: its directory, or its tar (`build --tar`)
    #[arg(long, value_name = "OLD")]
    pub to: PathBuf,
    /// The new bundle's directory (new, empty, an earlier bundle, or OLD itself); replaced only once it verifies
    #[arg(long, value_name = "NEW")]
    pub out: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory for the demo media, recipe and bundle
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The airlock-firstboot binary to ship (default: next to this airlock)
    #[arg(long, value_name = "PATH")]
    pub runner: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BakeArgs {
    /// The cluster recipe (TOML, `version = 1`)
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Directory to write payloads/, seeds/ and inventory.toml into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Secrets file to read, or create on first use (default DIR/secrets.toml)
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write the key files into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The key's user id name
    #[arg(long, default_value = "Site archive key (airlock)")]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct RepoBuildArgs {
    /// The Astra SE 1.7 main disc: an .iso file or a directory with pool/ and dists/
    #[arg(long, value_name = "PATH")]
    pub main: PathBuf,
    /// The Astra SE 1.7 devel disc (optional), same forms as --main
    #[arg(long, value_name = "PATH")]
    pub devel: Option<PathBuf>,
    /// An update disc, same forms as --main; repeat it for several, merged after main and devel in the order given
    #[arg(long = "update", value_name = "PATH")]
    pub updates: Vec<PathBuf>,
    /// The armored secret signing key (from `airlock keygen`, or your own); repeat it to sign with several keys, in that order
    #[arg(long = "key", value_name = "SECRET.asc", required = true)]
    pub keys: Vec<PathBuf>,
    /// The repository directory to write (replaced when the build succeeds)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// apt suite (and codename) of the repository
    #[arg(long, default_value = repo::ASTRA_SUITE)]
    pub suite: String,
    /// Accept .deb files that a disc's own index does not list (they are reported)
    #[arg(long)]
    pub allow_unlisted: bool,
    /// The disc vendor's public key, to check the signature of a disc's Release
    #[arg(long, value_name = "KEYRING")]
    pub disc_keyring: Option<PathBuf>,
    /// Worker threads (default: one per core)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub jobs: usize,
    /// Print a summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The cluster recipe (TOML, `version = 1`); its [media] discs are read
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Print the verdict per role, with every problem, as JSON on stdout
    #[arg(long)]
    pub json: bool,
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
        Ok(Status::CheckFailed) => ExitCode::from(exit::FAILED),
        Err(e) => {
            eprintln!("airlock: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> Result<Status> {
    match cli.command {
        Command::Plan(args) => cmd_plan(&args),
        Command::Check(args) => cmd_check(&args),
        Command::Build(args) => cmd_build(&args),
        Command::Verify(args) => cmd_verify(&args),
        Command::Inspect(args) => cmd_inspect(&args),
        Command::Diff(args) => cmd_diff(&args),
        Command::Apply(args) => cmd_apply(&args),
        Command::Demo(args) => cmd_demo(&args),
        Command::Bake(args) => cmd_bake(&args),
        Command::Keygen(args) => cmd_keygen(&args),
        Command::Repo(RepoCommand::Build(args)) => cmd_repo_build(&args),
        Command::Report(ReportCommand::Check(args)) => cmd_report_check(&args),
    }
}

fn cmd_report_check(args: &ReportCheckArgs) -> Result<Status> {
    // The report first: a wrong file is named before minutes of hashing.
    let report = crate::shared::report::Report::load(&args.report)?;
    let meta = std::fs::metadata(&args.bundle).with_context(|| {
        format!(
            "reading the bundle {}: give the bundle directory `airlock build` wrote",
            args.bundle.display()
        )
    })?;
    if !meta.is_dir() {
        anyhow::bail!(
            "--bundle {}: give the bundle directory (unpack a bundle tar first: mkdir b && tar -xf BUNDLE.tar -C b)",
            args.bundle.display()
        );
    }
    let progress = !args.json && std::io::stderr().is_terminal();
    let trust = args.trust.load()?;
    let verified = bundle::verify_dir(&args.bundle, &trust, progress)?;
    if !verified.ok {
        for p in &verified.problems {
            eprintln!(
                "{:<10} {}: {}",
                p.kind.as_str().to_uppercase(),
                p.path,
                p.detail
            );
        }
        anyhow::bail!(
            "the bundle {} does not verify ({} problem(s), listed above): refusing to check a report against it; use an intact copy (`airlock verify` checks one)",
            args.bundle.display(),
            verified.problems.len()
        );
    }
    if verified.own_keyring && !args.json {
        eprintln!(
            "NOTE: the bundle is checked with its OWN keyring (consistent, origin not proven); pass --keyring with the key delivered separately"
        );
    }
    let index = crate::build::report::index_bundle(&args.bundle, progress)?;
    let checked = crate::build::report::check(&report, &index, &args.report, &args.bundle);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checked)?);
    } else {
        print!("{}", crate::build::report::to_text(&checked));
    }
    Ok(if checked.ok {
        Status::Ok
    } else {
        Status::CheckFailed
    })
}

/// Loads and resolves a recipe; on problems prints them and returns None.
fn plan_or_report(
    path: &std::path::Path,
    media: MediaCheck,
) -> Result<Option<(recipe::Recipe, plan::Plan)>> {
    let (recipe, source) = match recipe::load(path) {
        Ok(loaded) => loaded,
        Err(e) if e.is_io() => return Err(e.into()),
        Err(e) => {
            eprintln!("{e}");
            return Ok(None);
        }
    };
    let outcome = plan::resolve(&recipe, &source, media);
    for p in &outcome.problems {
        eprintln!("{p}");
    }
    Ok(outcome.plan.map(|plan| (recipe, plan)))
}

/// The runner shipped by default: the one `just runner` built for Astra's
/// glibc 2.28 (zigbuild or musl, profile `runner`, in the target directory
/// beside this airlock), else `airlock-firstboot` beside this binary.
fn default_runner() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let beside = exe.with_file_name("airlock-firstboot");
    let Some(dir) = exe.parent() else {
        return Ok(beside);
    };
    let profile = dir.file_name().unwrap_or_default().to_owned();
    let mut candidates = Vec::new();
    for t in ["x86_64-unknown-linux-gnu", "x86_64-unknown-linux-musl"] {
        for p in [
            std::ffi::OsStr::new("runner"),
            profile.as_os_str(),
            std::ffi::OsStr::new("release"),
        ] {
            candidates.push(dir.join("..").join(t).join(p).join("airlock-firstboot"));
        }
    }
    for c in candidates {
        if let Ok(bytes) = std::fs::read(&c)
            && crate::build::elfcheck::check_runner(&c, &bytes).is_ok()
        {
            return Ok(c);
        }
    }
    Ok(beside)
}

fn cmd_build(args: &BuildArgs) -> Result<Status> {
    let key = Signers::load(&args.keys)?;
    let secrets = args.secrets.clone().unwrap_or_else(|| {
        let stem = args
            .recipe
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recipe".into());
        args.recipe.with_file_name(format!("{stem}.secrets.toml"))
    });
    // Problems in the recipe are a failed check (exit 1), not an I/O error.
    let Some((recipe, plan)) = plan_or_report(&args.recipe, MediaCheck::Require)? else {
        eprintln!(
            "{}: fix the recipe first; nothing was built",
            args.recipe.display()
        );
        return Ok(Status::CheckFailed);
    };
    let opts = bundle::BuildOptions {
        recipe: args.recipe.clone(),
        out: match &args.out {
            Some(out) => out.clone(),
            // --no-dir: the tar's path names what is staged beside it.
            None => args.tar.clone().expect("clap requires --tar with --no-dir"),
        },
        no_dir: args.no_dir,
        key,
        key_paths: args.keys.clone(),
        secrets,
        fixed_secrets: None,
        runner: match &args.runner {
            Some(r) => r.clone(),
            None => default_runner()?,
        },
        tar: args.tar.clone(),
        time: timefmt::build_time()?,
        progress: !args.json && std::io::stderr().is_terminal(),
        check_glibc: !args.allow_new_glibc,
        source_tar: args.with_source.clone(),
        volume_size: args.volume_size,
        iso: args.iso,
        base: args.base.clone(),
        allow_incomplete: args.allow_incomplete,
    };
    let summary = match bundle::build_planned(&opts, &recipe, &plan) {
        Err(e) if e.is::<crate::build::check::Incomplete>() => {
            eprintln!("{e}");
            return Ok(Status::CheckFailed);
        }
        other => other?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_build_summary(&summary);
    }
    Ok(Status::Ok)
}

fn print_build_summary(s: &bundle::BuildSummary) {
    if let Some(d) = &s.delta {
        print_delta_summary(s, d);
        return;
    }
    println!(
        "{}: bundle for cluster {} ({} hosts), {} files, {:.1} MB, {:.1} s",
        s.out.display(),
        s.cluster,
        s.hosts,
        s.files,
        s.bytes as f64 / 1e6,
        s.seconds
    );
    if let Some(r) = &s.recovered {
        println!("  note: {r}");
    }
    // --no-dir: the output is the tar itself, and the repository was only
    // staged on the way into it.
    let streamed = s.tar.as_deref() == Some(s.out.as_path());
    if streamed {
        let mut r = s.repository.clone();
        r.out = PathBuf::from(format!("{}: repo/", s.out.display()));
        print_repo_summary(&r);
    } else {
        print_repo_summary(&s.repository);
    }
    print_completeness(&s.completeness);
    if let Some(t) = s.tar.as_ref().filter(|_| !streamed) {
        println!("  tar: {}", t.display());
    }
    if let Some(v) = &s.volumes {
        print_volumes(&s.out, v);
    }
    println!("  signed by {}", s.fingerprints.join(", "));
    match &s.secrets {
        Some(path) => println!(
            "  secrets {} {} (mode 0600, outside the bundle: keep it private, reuse it)",
            if s.secrets_created {
                "generated in"
            } else {
                "read from"
            },
            path.display()
        ),
        None => println!("  secrets: the demo's fixed secrets (INSECURE)"),
    }
    let unhashed = s.repository.pool_unchanged.len();
    if streamed && unhashed > 0 && !crate::build::bundle::gzip_named(&s.out) {
        println!(
            "  {unhashed} package(s) copied without hashing them again: an earlier build checked them in these very images, which did not change"
        );
    }
    if streamed {
        println!(
            "  check it: airlock verify {0}   or   mkdir x && tar -xf {0} -C x && cd x && sha256sum -c --quiet SHA256SUMS && gpgv --keyring ./archive-keyring.gpg SHA256SUMS.gpg SHA256SUMS",
            s.out.display()
        );
        return;
    }
    let one = match &s.volumes {
        Some(v) => s.out.join("volumes").join(&v.volumes[0].name),
        None => s.out.clone(),
    };
    println!(
        "  check it: airlock verify {}   or   cd {} && sha256sum -c --quiet SHA256SUMS && gpgv --keyring ./archive-keyring.gpg SHA256SUMS.gpg SHA256SUMS{}",
        s.out.display(),
        one.display(),
        if s.volumes.is_some() {
            " && gpgv --keyring ./archive-keyring.gpg VOLUMES.gpg VOLUMES   (each volume alike)"
        } else {
            ""
        }
    );
}

fn print_completeness(r: &crate::build::check::Report) {
    if r.ok {
        println!(
            "  complete: apt can install every role's packages ({} role(s), base: {})",
            r.roles.len(),
            r.base.source
        );
        return;
    }
    eprint!(
        "WARNING: built with --allow-incomplete:\n{}",
        crate::build::check::to_text(r)
    );
}

fn cmd_apply(args: &ApplyArgs) -> Result<Status> {
    use crate::shared::delta;
    let progress = !args.json && std::io::stderr().is_terminal();
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let mut inputs: Vec<(&str, &std::path::Path)> =
        args.delta.iter().map(|d| ("delta", d.as_path())).collect();
    if !same(&args.out, &args.to) {
        inputs.push(("base", args.to.as_path()));
    }
    crate::build::outdir::check(&args.out, crate::build::outdir::Kind::Bundle, &inputs, &[])?;
    let trust = if args.trust.keyrings.is_empty() {
        if args.trust.require_signers != 1 {
            anyhow::bail!(
                "--require-signers needs --keyring: the base's own keyring checks one signer"
            );
        }
        None
    } else {
        Some(args.trust.load()?)
    };
    // A delta's volumes are checked as they come with the keys the delta
    // will be: the ones given, or the base's own.
    let volume_trust = trust
        .clone()
        .or_else(|| delta::base_trust(&args.to, &args.delta));
    let given = match delta::open(
        &args.delta,
        &args.out,
        volume_trust.as_ref(),
        Some(&args.to),
        progress,
        &mut |_| Ok(()),
    ) {
        Ok(g) => g,
        Err(e) if e.is::<crate::shared::volumes::Unverified>() => {
            if args.json {
                let refused = serde_json::json!({"ok": false, "error": format!("{e:#}")});
                println!("{refused:#}");
            } else {
                println!(
                    "REFUSED: {e:#}; nothing was written to {}",
                    args.out.display()
                );
            }
            return Ok(Status::CheckFailed);
        }
        Err(e) => return Err(e),
    };
    let applied = delta::apply(&given, &args.to, &args.out, trust.as_ref(), progress)?;
    drop(given);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&applied)?);
    } else {
        print_applied(args, &applied);
    }
    Ok(if applied.ok {
        Status::Ok
    } else {
        Status::CheckFailed
    })
}

fn print_applied(args: &ApplyArgs, a: &crate::shared::delta::Applied) {
    for p in &a.problems {
        println!(
            "{:<10} {}: {}",
            p.kind.as_str().to_uppercase(),
            p.path,
            p.detail
        );
    }
    let keys = if a.base_keyring {
        format!(
            "the keys of {} (the base's own keyring: the new bundle is signed by a key the base trusted; pass --keyring with the key delivered separately to prove its origin)",
            args.to
                .join(crate::shared::keyring::PUBLIC_GPG_FILE)
                .display()
        )
    } else {
        args.trust
            .keyrings
            .iter()
            .map(|k| k.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !a.ok {
        println!(
            "{}: REFUSED, {} problem(s); nothing was written to {} (checked with {keys})",
            args.delta
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            a.problems.len(),
            args.out.display()
        );
        return;
    }
    if let Some(r) = &a.report {
        print_signers(r);
    }
    let files = a.report.as_ref().map_or(0, |r| r.files_checked);
    let bytes = a.report.as_ref().map_or(0, |r| r.bytes);
    if a.already {
        println!(
            "{}: already the bundle this delta makes (SHA256SUMS {})",
            args.to.display(),
            a.new
        );
    }
    println!(
        "{}: OK, {files} files, {:.1} MB verified: {} file(s) ({:.1} MB) from the delta, {} ({:.1} MB) from the base",
        args.out.display(),
        bytes as f64 / 1e6,
        a.from_delta,
        a.bytes_from_delta as f64 / 1e6,
        a.from_base,
        a.bytes_from_base as f64 / 1e6
    );
    println!(
        "  base SHA256SUMS {}\n  new  SHA256SUMS {}\n  checked with {keys}",
        a.base, a.new
    );
}

/// A delta's summary: what it carries of the whole, against which base.
fn print_delta_summary(s: &bundle::BuildSummary, d: &crate::build::delta::Summary) {
    println!(
        "{}: delta for cluster {} ({} hosts): {} of {} files, {:.1} of {:.1} MB ({:.1} MB on disc with its head), {:.1} s",
        s.out.display(),
        s.cluster,
        s.hosts,
        d.files,
        d.whole_files,
        d.bytes as f64 / 1e6,
        d.whole_bytes as f64 / 1e6,
        d.delta_bytes as f64 / 1e6,
        s.seconds
    );
    println!(
        "  applies to {} (SHA256SUMS {})\n  makes the bundle whose SHA256SUMS is {}\n  signed by {}",
        d.base_path.display(),
        d.base,
        d.new,
        s.fingerprints.join(", ")
    );
    if let Some(t) = &s.tar {
        println!("  tar: {} (the delta as one file)", t.display());
    }
    let given = match &s.volumes {
        Some(v) => {
            print_volumes(&s.out, v);
            let dir = s.out.join("volumes");
            v.volumes
                .iter()
                .map(|e| dir.join(&e.name).display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }
        None => s.tar.as_deref().unwrap_or(&s.out).display().to_string(),
    };
    println!(
        "  at the site: airlock apply {given} --to OLD --out NEW   (OLD: the bundle delivered from {})",
        d.base_path.display()
    );
}

/// The volumes a build wrote, one line each.
fn print_volumes(out: &std::path::Path, v: &crate::build::volumes::Summary) {
    println!(
        "  {} volume(s) of at most {} bytes in {}: check each alone with `airlock verify {}/NN`",
        v.volumes.len(),
        v.size,
        out.join("volumes").display(),
        out.join("volumes").display()
    );
    for e in &v.volumes {
        println!(
            "    {}: {} files, {:.1} MB",
            e.name,
            e.files,
            e.bytes as f64 / 1e6
        );
    }
}

fn cmd_inspect(args: &InspectArgs) -> Result<Status> {
    use crate::build::inspect;
    let progress = !args.json && std::io::stderr().is_terminal();
    let trust = args.trust.load()?;
    let opened = match inspect::open(&args.bundle, &trust, progress, &inspect::inspect_wants)? {
        Ok(b) => b,
        Err(unverified) => return Ok(refuse_unverified(&unverified, args.json)),
    };
    let inspection = inspect::inspect(&opened, trust.keyring.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", inspect::to_text(&inspection));
    }
    Ok(Status::Ok)
}

fn cmd_diff(args: &DiffArgs) -> Result<Status> {
    use crate::build::{diff, inspect};
    let progress = !args.json && std::io::stderr().is_terminal();
    let trust = args.trust.load()?;
    let mut opened = Vec::new();
    for path in [&args.old, &args.new] {
        match inspect::open(path, &trust, progress, &diff::diff_wants)? {
            Ok(b) => opened.push(b),
            Err(unverified) => return Ok(refuse_unverified(&unverified, args.json)),
        }
    }
    let d = diff::diff(&opened[0], &opened[1])?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", diff::to_text(&d));
    }
    Ok(Status::Ok)
}

/// A bundle that does not verify: every problem listed, exit 1.
fn refuse_unverified(u: &crate::build::inspect::Unverified, json: bool) -> Status {
    if json {
        let reports =
            serde_json::json!({"bundle": u.path, "verified": false, "reports": u.reports});
        println!("{reports:#}");
    } else {
        for r in &u.reports {
            print_report(&u.path, r);
        }
        println!(
            "{}: NOT VERIFIED, so not read any further (`airlock verify` says the same; use an intact copy or the right --keyring)",
            u.path.display()
        );
    }
    Status::CheckFailed
}

fn cmd_verify(args: &VerifyArgs) -> Result<Status> {
    let progress = !args.json && std::io::stderr().is_terminal();
    let meta = std::fs::metadata(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?;
    let trust = args.trust.load()?;
    // A delta's volume holds BASE too: it verifies alone, as a volume.
    let volume = meta.is_dir() && crate::shared::volumes::is_volume(&args.path);
    if !volume && crate::shared::delta::is_delta(&args.path) {
        anyhow::bail!(
            "{} is a delta (it has {}): it holds only what its base lacks, so it does not verify alone; `airlock apply {} --to OLD --out NEW` makes the whole bundle and verifies it",
            args.path.display(),
            crate::shared::delta::BASE,
            args.path.display()
        );
    }
    if meta.is_dir() {
        let dirs = if volume {
            Some(vec![args.path.clone()])
        } else if !args.path.join(bundle::SUMS).exists() {
            crate::shared::volumes::volume_dirs(&args.path)
        } else {
            None
        };
        if let Some(dirs) = dirs {
            return verify_volumes(args, &dirs, &trust, progress);
        }
    }
    let report = if meta.is_dir() {
        bundle::verify_dir(&args.path, &trust, progress)?
    } else {
        bundle::verify_tar(&args.path, &trust, progress)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&args.path, &report);
    }
    Ok(if report.ok {
        Status::Ok
    } else {
        Status::CheckFailed
    })
}

/// `airlock verify` on one volume, or on the volumes of a bundle written
/// in volumes: each checked alone, and which of the table's are missing.
fn verify_volumes(
    args: &VerifyArgs,
    dirs: &[PathBuf],
    trust: &bundle::Trust,
    progress: bool,
) -> Result<Status> {
    use crate::shared::volumes;
    let reports = dirs
        .iter()
        .map(|d| volumes::verify_volume(d, trust, progress))
        .collect::<Result<Vec<_>>>()?;
    let missing = if dirs.len() > 1 {
        volumes::missing_from(&reports)
    } else {
        Vec::new()
    };
    let foreign = volumes::foreign(&reports);
    let ok = reports.iter().all(|r| r.report.ok) && missing.is_empty() && foreign.is_empty();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": ok,
                "volumes": reports,
                "missing": missing,
                "foreign": foreign
                    .iter()
                    .map(|(i, why)| serde_json::json!({"volume": dirs[*i], "detail": why}))
                    .collect::<Vec<_>>(),
            }))?
        );
    } else {
        for (d, r) in dirs.iter().zip(&reports) {
            print_report(d, &r.report);
            if let (Some(name), Some(t)) = (&r.name, &r.table) {
                println!(
                    "  volume {name} of {} ({}) of cluster {}; the whole bundle's SHA256SUMS: {}",
                    t.volumes.len(),
                    t.names().join(", "),
                    t.cluster,
                    t.whole
                );
                if let Some(base) = &t.base {
                    println!(
                        "  a delta for the base whose SHA256SUMS has sha256 {base}: `airlock apply` with all {} volumes --to that bundle makes the whole new one",
                        t.volumes.len()
                    );
                }
            }
        }
        for (i, why) in &foreign {
            println!("FOREIGN    {}: {why}", dirs[*i].display());
        }
        if !missing.is_empty() {
            println!(
                "MISSING    volume(s) {}: the table lists them, {} does not hold them",
                missing.join(", "),
                args.path.display()
            );
        }
    }
    Ok(if ok { Status::Ok } else { Status::CheckFailed })
}

fn print_report(path: &std::path::Path, r: &bundle::Report) {
    for p in &r.problems {
        println!(
            "{:<10} {}: {}",
            p.kind.as_str().to_uppercase(),
            p.path,
            p.detail
        );
    }
    print_signers(r);
    if r.ok {
        println!(
            "{}: OK, {} files, {:.1} MB verified",
            path.display(),
            r.files_checked,
            r.bytes as f64 / 1e6
        );
    } else {
        println!(
            "{}: FAILED, {} problem(s) in {} files",
            path.display(),
            r.problems.len(),
            r.files_checked
        );
    }
}

/// Who signed SHA256SUMS, when its signatures were good enough.
fn print_signers(r: &bundle::Report) {
    if r.signature != "good" {
        return;
    }
    let signed: Vec<String> = r
        .signers
        .iter()
        .map(|v| {
            format!(
                "{}, signed {}",
                v.fingerprint,
                timefmt::rfc2822_utc(v.created)
            )
        })
        .collect();
    if r.own_keyring {
        eprintln!(
            "NOTE: SHA256SUMS is signed by {}, checked with the bundle's OWN keyring: this proves the bundle is consistent, not where it comes from. Compare the fingerprint{} with the one{} delivered separately, or pass --keyring.",
            signed.join("; "),
            if signed.len() == 1 { "" } else { "s" },
            if signed.len() == 1 { "" } else { "s" }
        );
        return;
    }
    match signed.as_slice() {
        [one] => println!("signature: good, by {one}"),
        many => {
            println!(
                "signature: good, by {} keys ({} required):",
                many.len(),
                r.required_signers
            );
            for s in many {
                println!("  {s}");
            }
        }
    }
    for k in &r.not_signed_by {
        println!("  not signed by {k} (not required)");
    }
    for k in &r.unknown_signers {
        println!("  also signed by {k}, a key the keyring does not hold (not counted)");
    }
}

fn cmd_demo(args: &DemoArgs) -> Result<Status> {
    let time = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(_) => timefmt::build_time()?,
        Err(_) => crate::build::demo::DEMO_TIME,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    crate::build::demo::write_media(&args.out, time)?;
    let bundle_dir = args.out.join("bundle");
    let tar = args.out.join("bundle.tar");
    let summary = bundle::build(&bundle::BuildOptions {
        recipe: args.out.join("recipe.toml"),
        out: bundle_dir.clone(),
        key: crate::build::demo::demo_key()?.into(),
        key_paths: Vec::new(),
        secrets: args.out.join("demo.secrets.toml"),
        fixed_secrets: Some(crate::build::demo::demo_secrets()?),
        runner: match &args.runner {
            Some(r) => r.clone(),
            None => default_runner()?,
        },
        tar: Some(tar.clone()),
        time,
        progress: std::io::stderr().is_terminal(),
        // The demo runs on this machine with whatever runner it has.
        check_glibc: false,
        source_tar: None,
        volume_size: None,
        iso: false,
        no_dir: false,
        base: None,
        allow_incomplete: false,
    })?;
    println!(
        "*** DEMO: the signing key and secrets are INSECURE (fixed seed). Never use them at a site. ***"
    );
    print_build_summary(&summary);
    let mut ok = true;
    for p in [&bundle_dir, &tar] {
        let report = if p.is_dir() {
            bundle::verify_dir(p, &bundle::Trust::own(), false)?
        } else {
            bundle::verify_tar(p, &bundle::Trust::own(), false)?
        };
        print_report(p, &report);
        ok &= report.ok;
    }
    println!(
        "\nLook at:\n  {}/README.txt       the site procedure for this recipe\n  {}/seeds/           one cidata seed per VM\n  {}/payloads/spdb2/   what the replica gets (role.toml, the DB password, /etc/hosts, apt sources)\n  {}/repo/dists/       the signed repository",
        bundle_dir.display(),
        bundle_dir.display(),
        bundle_dir.display(),
        bundle_dir.display()
    );
    Ok(if ok { Status::Ok } else { Status::CheckFailed })
}

fn cmd_bake(args: &BakeArgs) -> Result<Status> {
    let Some((_, plan)) = plan_or_report(&args.recipe, MediaCheck::Ignore)? else {
        eprintln!(
            "{}: fix the recipe first; nothing was baked",
            args.recipe.display()
        );
        return Ok(Status::CheckFailed);
    };
    let secrets_path = args
        .secrets
        .clone()
        .unwrap_or_else(|| args.out.join("secrets.toml"));
    let (mut secrets, created) =
        Secrets::load_or_create(&secrets_path, &plan.cluster, &plan.ssh_hosts())?;
    if let Some(file) = &plan.database.password_file {
        secrets = secrets.with_password_file(file)?;
    }
    let payloads = cloudinit::render_all(&plan, &secrets)?;
    let mut w = RootWriter::new(&args.out);
    seed::write_all(&mut w, &plan, &payloads, timefmt::build_time()?)?;
    println!(
        "{}: {} seed(s) for cluster {}",
        args.out.display(),
        payloads.len(),
        plan.cluster
    );
    for p in &payloads {
        println!(
            "  {:<24} {:<10} {:<15} {}",
            format!("seeds/{}.iso", p.host),
            p.role.host.role.as_str(),
            p.role.host.ip.to_string(),
            p.role
                .host
                .mac
                .as_deref()
                .unwrap_or("(no MAC in the recipe)")
        );
    }
    println!(
        "  secrets {} {} (mode 0600; keep it private, reuse it for later builds)",
        if created { "generated in" } else { "read from" },
        secrets_path.display()
    );
    Ok(Status::Ok)
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

fn cmd_check(args: &CheckArgs) -> Result<Status> {
    let problems_json = |problems: serde_json::Value| serde_json::json!({ "ok": false, "problems": problems, "repository": null, "base": null, "roles": [] });
    let (recipe, source) = match recipe::load(&args.recipe) {
        Ok(loaded) => loaded,
        Err(e) if e.is_io() => return Err(e.into()),
        Err(e) => {
            if args.json {
                let p = serde_json::json!([{ "severity": "error", "message": e.to_string() }]);
                println!("{}", serde_json::to_string_pretty(&problems_json(p))?);
            } else {
                eprintln!("{e}");
            }
            return Ok(Status::CheckFailed);
        }
    };
    let outcome = plan::resolve(&recipe, &source, MediaCheck::Require);
    let Some(plan) = outcome
        .plan
        .as_ref()
        .filter(|_| outcome.errors().next().is_none())
    else {
        if args.json {
            let p = serde_json::to_value(&outcome.problems)?;
            println!("{}", serde_json::to_string_pretty(&problems_json(p))?);
        } else {
            for p in &outcome.problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{}: fix the recipe first; nothing was checked",
                args.recipe.display()
            );
        }
        return Ok(Status::CheckFailed);
    };
    let report = crate::build::check::check_discs(&recipe, plan)?;
    if args.json {
        let mut out = serde_json::to_value(&report)?;
        out["problems"] = serde_json::to_value(&outcome.problems)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &outcome.problems {
            eprintln!("{p}");
        }
        print!("{}", crate::build::check::to_text(&report));
    }
    Ok(if report.ok {
        Status::Ok
    } else {
        Status::CheckFailed
    })
}

fn cmd_keygen(args: &KeygenArgs) -> Result<Status> {
    let written = sign::keygen(&args.out, &args.name)?;
    for p in written {
        println!("wrote {}", p.display());
    }
    println!(
        "keep {} secret; give archive-keyring.gpg to the VMs (signed-by= or /etc/apt/trusted.gpg.d/)",
        args.out.join(sign::SECRET_KEY_FILE).display()
    );
    Ok(Status::Ok)
}

fn cmd_repo_build(args: &RepoBuildArgs) -> Result<Status> {
    let key = Signers::load(&args.keys)?;
    let discs = repo::source_discs(&args.main, args.devel.as_deref(), &args.updates);
    let mut inputs: Vec<(&str, &std::path::Path)> = args
        .keys
        .iter()
        .map(|k| ("signing key", k.as_path()))
        .collect();
    inputs.push(("main disc", args.main.as_path()));
    if let Some(d) = &args.devel {
        inputs.push(("devel disc", d.as_path()));
    }
    for u in &args.updates {
        inputs.push(("update disc", u.as_path()));
    }
    if let Some(k) = &args.disc_keyring {
        inputs.push(("disc keyring", k.as_path()));
    }
    crate::build::outdir::check(
        &args.out,
        crate::build::outdir::Kind::Repository,
        &inputs,
        &[],
    )?;
    let previous = args.out.is_dir().then(|| args.out.clone());
    let opts = repo::Options {
        previous_cache: previous.as_ref().map(|p| p.join(repo::CACHE_FILE)),
        adopt: true,
        peek: false,
        only: None,
        previous,
        discs,
        out: args.out.clone(),
        suite: args.suite.clone(),
        components: repo::ASTRA_COMPONENTS.map(String::from).to_vec(),
        architectures: vec!["amd64".into()],
        allow_unlisted: args.allow_unlisted,
        disc_keyring: args.disc_keyring.clone(),
        time: timefmt::build_time()?,
        progress: !args.json && std::io::stderr().is_terminal(),
        jobs: args.jobs,
    };
    let summary = repo::build(&opts, &key)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_repo_summary(&summary);
    }
    Ok(Status::Ok)
}

fn print_repo_summary(s: &repo::Summary) {
    let per: Vec<String> = s.packages.iter().map(|(c, n)| format!("{n} {c}")).collect();
    println!(
        "{}: {} packages ({}), {:.1} MB, suite {}, architectures {}",
        s.out.display(),
        s.total_packages,
        per.join(", "),
        s.bytes as f64 / 1e6,
        s.suite,
        s.architectures.join(" ")
    );
    if let Some(r) = &s.recovered {
        println!("  note: {r}");
    }
    for d in &s.discs {
        println!(
            "  {} disc {}: {} .deb files, disc index {}, disc Release signature {}",
            d.role, d.source, d.debs, d.index, d.release_signature
        );
    }
    if let Some(note) = &s.cache {
        println!("  {note}");
    }
    if s.deduplicated > 0 {
        println!(
            "  {} identical package(s) on more than one disc kept once",
            s.deduplicated
        );
    }
    for u in &s.unlisted {
        println!("  accepted, not in its disc's index: {u}");
    }
    if !s.skipped.is_empty() {
        println!("  {} non-.deb file(s) in pool/ skipped", s.skipped.len());
    }
    if s.left_out > 0 {
        println!(
            "  repository.subset = \"closure\": {} package(s) the roles do not need left out",
            s.left_out
        );
    }
    println!(
        "  read {:.1} MB, reused {} unchanged package(s), {:.2} s",
        s.hashed_bytes as f64 / 1e6,
        s.reused,
        s.seconds
    );
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
