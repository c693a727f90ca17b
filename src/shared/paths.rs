//! Where things are on a VM, and the names both wings use for them.

/// The role file.
pub const ROLE_FILE: &str = "/etc/airlock/role.toml";
/// The DB password, one line, 0600 (db hosts and the leader).
pub const DB_PASSWORD: &str = "/etc/airlock/db-password";
/// keepalived's scripts (root-owned directory, for enable_script_security).
pub const KEEPALIVED_SCRIPTS: &str = "/etc/airlock/keepalived";
/// apt sources for the local repository (with signed-by).
pub const APT_SOURCES: &str = "/etc/apt/sources.list.d/airlock.list";
/// The runner's journal of steps.
pub const JOURNAL: &str = "/var/lib/airlock/journal";
/// The swarm join token, root only (leader).
pub const TOKEN_FILE: &str = "/var/lib/airlock/swarm-manager-token";
/// authorized_keys of the token user on the leader.
pub const TOKEN_AUTHORIZED_KEYS: &str = "/etc/airlock/ssh/token_authorized_keys";
/// The managers' client key for fetching the token (0600).
pub const TOKEN_CLIENT_KEY: &str = "/etc/airlock/ssh/token_client_key";
/// The leader's host key, pinned on managers.
pub const LEADER_KNOWN_HOSTS: &str = "/etc/airlock/ssh/leader_known_hosts";
/// The key every host uses to ask another a question (0600).
pub const PEER_CLIENT_KEY: &str = "/etc/airlock/ssh/peer_client_key";
/// authorized_keys of the peer user: the key, forced to `answer`.
pub const PEER_AUTHORIZED_KEYS: &str = "/etc/airlock/ssh/peer_authorized_keys";
/// Every host's SSH host key, pinned.
pub const CLUSTER_KNOWN_HOSTS: &str = "/etc/airlock/ssh/cluster_known_hosts";
/// The runner binary on the VM.
pub const RUNNER: &str = "/usr/local/sbin/airlock-firstboot";
/// Its systemd unit.
pub const UNIT: &str = "/etc/systemd/system/airlock-firstboot.service";
/// The unit's link that starts it at every boot.
pub const UNIT_WANTS: &str =
    "/etc/systemd/system/multi-user.target.wants/airlock-firstboot.service";
/// apt settings for the cluster's repository (a VM clock behind the build).
pub const APT_CONF: &str = "/etc/apt/apt.conf.d/50airlock";
/// The static address, written by the runner when cloud-init did not
/// configure this instance (Astra SE 1.7 uses ifupdown).
pub const IFUPDOWN_FILE: &str = "/etc/network/interfaces.d/airlock";
/// The instance id cloud-init applied last.
pub const CLOUD_INSTANCE_ID: &str = "/var/lib/cloud/data/instance-id";
/// The prepared image's own identity (machine ids, SSH host keys), which
/// no clone may keep.
pub const IMAGE_IDENTITY: &str = "/var/lib/airlock/image-identity.json";
/// The bundle's inventory and payloads on a prepared image, for clones
/// that boot without a seed.
pub const PREPARED_INVENTORY: &str = "/opt/airlock/inventory.toml";
pub const PREPARED_PAYLOADS: &str = "/opt/airlock/payloads";
/// PostgreSQL's start guard, a drop-in for every cluster's unit.
pub const PG_GUARD_DROPIN: &str = "/etc/systemd/system/postgresql@.service.d/airlock-guard.conf";
/// Written by the start guard: this server was kept read-only because its
/// peer is the primary.
pub const FENCED: &str = "/var/lib/airlock/fenced.json";
/// 1 while the local PostgreSQL is down, 0 while it runs: written by
/// its unit (the drop-in), watched by keepalived (inotify), so the VIP
/// leaves a dead server at once instead of after a health check.
pub const PG_DOWN: &str = "/var/lib/airlock/postgresql-down";
/// The split-brain guard's last verdict (tmpfs: a reboot starts afresh).
pub const QUORUM_STATE: &str = "/run/airlock/quorum.json";
/// Written once the DB pair has run whole: from then on an isolated
/// primary fences itself.
pub const QUORUM_ARMED: &str = "/var/lib/airlock/quorum-armed";
/// Synchronous replication: since when the primary serves without waiting
/// for a standby (it degraded).
pub const SYNC_UNPROTECTED: &str = "/var/lib/airlock/sync-unprotected";
/// Since when no standby streams from this primary.
pub const SYNC_ABSENT_SINCE: &str = "/run/airlock/sync-absent-since";
/// When the primary last had this standby in sync (the promotion rule).
pub const SYNC_LAST_STREAMING: &str = "/run/airlock/sync-last-streaming";
/// The WAL receiver connection the primary last said was in sync.
pub const SYNC_CONNECTION: &str = "/run/airlock/sync-connection";
/// Where `prepare` puts a bundle together from its volumes (removed after).
pub const ASSEMBLED_BUNDLE: &str = "/var/tmp/airlock-bundle";
/// Written by keepalived's notify script when it promoted this server.
pub const PROMOTED: &str = "/var/lib/airlock/promoted";
/// A DB server's state for the peer user (`status`): written every second
/// by root, readable by everyone, gone at a reboot (tmpfs).
pub const DB_STATE: &str = "/run/airlock/db-state.json";
/// On a dispatcher: lets the peer user run exactly [`PEER_SWARM_COMMAND`]
/// as root, to answer `status` with the swarm's nodes.
pub const PEER_SUDOERS: &str = "/etc/sudoers.d/airlock-peer";
/// The one command the peer user may run through sudo (read-only).
pub const PEER_SWARM_COMMAND: [&str; 5] =
    ["/usr/bin/docker", "node", "ls", "--format", "{{json .}}"];

/// Where the merged, signed repository lives on every VM: a link into
/// [`CURRENT_BUNDLE`].
pub const REPO_ROOT: &str = "/opt/airlock/repo";
/// What a prepared VM keeps of each bundle it had (the repository, the
/// vendor disc, the signed manifest), one directory each, named by the
/// sha256 of its `SHA256SUMS`.
pub const BUNDLES: &str = "/opt/airlock/bundles";
/// A link to the bundle in use in [`BUNDLES`]; [`REPO_ROOT`] and
/// [`VENDOR_DIR`] are links through it, so one rename switches both.
pub const CURRENT_BUNDLE: &str = "/opt/airlock/current";
/// Held (flock) by `prepare` and `update` for as long as they run, with
/// the holder's pid in it: one at a time.
pub const LOCK: &str = "/opt/airlock/lock";
/// The paths the vendor installer writes into sources.list and insists on.
pub const VENDOR_REPO_PATHS: [&str; 2] = ["/opt/main", "/opt/devel"];
/// The archive key, trusted system-wide (the vendor's sources.list lines
/// carry no `signed-by`).
pub const TRUSTED_KEYRING: &str = "/etc/apt/trusted.gpg.d/airlock-archive.gpg";
/// Where the vendor disc's content is put on a VM: a link into
/// [`CURRENT_BUNDLE`].
pub const VENDOR_DIR: &str = "/opt/airlock/vendor";
/// The `Label` of the repository's Release; apt settings name it.
pub const REPO_LABEL: &str = "airlock";
/// The dedicated user on the leader whose only command prints the join token.
pub const TOKEN_USER: &str = "airlock-token";
/// The user on every host whose only command answers another host's
/// questions (`airlock-firstboot answer`).
pub const PEER_USER: &str = "airlock-peer";
/// How every Docker Swarm join token starts.
pub const SWARM_TOKEN_PREFIX: &str = "SWMTKN-1-";
/// The replication slot the replica creates on the master.
pub const REPLICATION_SLOT: &str = "replica";
/// The volume label cloud-init's NoCloud datasource looks for.
pub const SEED_LABEL: &str = "cidata";
/// The file in each seed that holds the payload's files as a tar, for a
/// clone without cloud-init: `airlock-firstboot` reads it from the seed.
pub const SEED_PAYLOAD_TAR: &str = "airlock-payload.tar";
