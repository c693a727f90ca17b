//! Build-time secrets: the DB password, the SSH keys of the swarm token
//! rendezvous, every host's SSH host key and the cluster's peer key (the
//! witness questions and the cluster-wide status). Generated once, kept in a 0600 TOML file for the next build,
//! written only into the payloads that need them, never printed or logged.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

/// The secrets of one cluster.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// The password of the one DB user.
    pub db_password: String,
    /// The leader's SSH host key (OpenSSH format); managers pin its public half.
    pub leader_host_key: String,
    /// The managers' key for fetching the join token from the leader.
    pub token_client_key: String,
    /// Every other host's SSH host key, by host name; each host pins all of
    /// them. Added to an older secrets file by the first build that needs
    /// them.
    #[serde(default)]
    pub host_keys: BTreeMap<String, String>,
    /// The key every host uses to ask another one a question (its forced
    /// command answers only those).
    #[serde(default)]
    pub peer_client_key: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

fn new_ssh_key(comment: &str) -> Result<String> {
    new_ssh_key_from(&mut rand::rngs::OsRng, comment)
}

/// An Ed25519 key in OpenSSH format from `rng` (the demo's is seeded).
pub fn new_ssh_key_from(
    rng: &mut (impl rand::CryptoRng + RngCore),
    comment: &str,
) -> Result<String> {
    let mut key = PrivateKey::random(rng, Algorithm::Ed25519).context("generating an SSH key")?;
    key.set_comment(comment);
    Ok(key.to_openssh(LineEnding::LF)?.to_string())
}

fn public_of(private: &str, what: &str) -> Result<String> {
    let key = PrivateKey::from_openssh(private).with_context(|| format!("reading the {what}"))?;
    Ok(key.public_key().to_openssh()?)
}

/// 24 letters and digits from the OS's random source (~142 bits).
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(24);
    let mut buf = [0u8; 1];
    while out.len() < 24 {
        rand::rngs::OsRng.fill_bytes(&mut buf);
        // Reject the top of the byte range so every letter is equally likely.
        let n = buf[0] as usize;
        if n < 256 - 256 % ALPHABET.len() {
            out.push(ALPHABET[n % ALPHABET.len()] as char);
        }
    }
    out
}

impl Secrets {
    /// Fresh secrets for `cluster`.
    pub fn generate(cluster: &str) -> Result<Secrets> {
        Ok(Secrets {
            db_password: new_password(),
            leader_host_key: new_ssh_key(&format!("leader host key, cluster {cluster}"))?,
            token_client_key: new_ssh_key(&format!(
                "{}@{cluster}",
                crate::shared::paths::TOKEN_USER
            ))?,
            host_keys: BTreeMap::new(),
            peer_client_key: String::new(),
        })
    }

    /// Adds what `hosts` need and the secrets lack (a host key for every
    /// host but the leader, the peer key), from `rng`. True when it added.
    pub fn complete(
        &mut self,
        cluster: &str,
        hosts: &[(&str, bool)],
        rng: &mut (impl rand::CryptoRng + RngCore),
    ) -> Result<bool> {
        let mut added = false;
        if self.peer_client_key.is_empty() {
            self.peer_client_key = new_ssh_key_from(
                rng,
                &format!("{}@{cluster}", crate::shared::paths::PEER_USER),
            )?;
            added = true;
        }
        for (name, is_leader) in hosts {
            if !is_leader && !self.host_keys.contains_key(*name) {
                let key = new_ssh_key_from(rng, &format!("{name} host key, cluster {cluster}"))?;
                self.host_keys.insert(name.to_string(), key);
                added = true;
            }
        }
        Ok(added)
    }

    /// The private host key of `host` (the leader's is `leader_host_key`).
    pub fn host_key(&self, host: &str, is_leader: bool) -> Result<&str> {
        if is_leader {
            return Ok(&self.leader_host_key);
        }
        self.host_keys
            .get(host)
            .map(String::as_str)
            .with_context(|| format!("the secrets hold no SSH host key for {host}"))
    }

    /// The public half of `host`'s host key.
    pub fn host_public(&self, host: &str, is_leader: bool) -> Result<String> {
        public_of(self.host_key(host, is_leader)?, &format!("{host} host key"))
    }

    /// The peer key's public half.
    pub fn peer_client_public(&self) -> Result<String> {
        public_of(&self.peer_client_key, "peer client key")
    }

    /// The leader's public host key (`ssh-ed25519 AAAA… comment`).
    pub fn leader_host_public(&self) -> Result<String> {
        public_of(&self.leader_host_key, "leader host key")
    }

    /// The managers' public client key.
    pub fn token_client_public(&self) -> Result<String> {
        public_of(&self.token_client_key, "token client key")
    }

    /// Reads `path` if it exists, else generates secrets and writes them
    /// there (mode 0600); adds what `hosts` (name, is the leader) need and
    /// the file lacks, and writes it back. Returns them and whether they
    /// were new.
    pub fn load_or_create(
        path: &Path,
        cluster: &str,
        hosts: &[(&str, bool)],
    ) -> Result<(Secrets, bool)> {
        let (mut s, new) = Secrets::read_or_generate(path, cluster)?;
        if s.complete(cluster, hosts, &mut rand::rngs::OsRng)? || new {
            s.save(path, cluster)?;
        }
        Ok((s, new))
    }

    fn save(&self, path: &Path, cluster: &str) -> Result<()> {
        let text = format!(
            "# airlock secrets of cluster {cluster}: keep this file private (mode 0600).\n# Re-used by every build, so payloads stay the same; delete it to rotate.\n{}",
            toml::to_string(self)?
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // A new file beside it, then one rename: never a half-written
        // secrets file, never one readable by others.
        let tmp = path.with_extension("toml.airlock-new");
        let _ = fs::remove_file(&tmp);
        crate::build::sign::write_secret(&tmp, text.as_bytes())?;
        fs::rename(&tmp, path)
            .with_context(|| format!("replacing {} with {}", path.display(), tmp.display()))
    }

    fn read_or_generate(path: &Path, cluster: &str) -> Result<(Secrets, bool)> {
        match fs::read_to_string(path) {
            Ok(text) => {
                // The parser's own message quotes the line: it may hold the
                // password. Say where and what, never the text.
                let s: Secrets = toml::from_str(&text).map_err(|e| {
                    let at = e
                        .span()
                        .map(|sp| {
                            let line = text[..sp.start.min(text.len())].matches('\n').count() + 1;
                            format!(" at line {line}")
                        })
                        .unwrap_or_default();
                    anyhow::anyhow!(
                        "reading the secrets file {}: not valid TOML{at}: {} (the line is not shown: it may hold a secret)",
                        path.display(),
                        e.message()
                    )
                })?;
                s.leader_host_public()
                    .and(s.token_client_public())
                    .with_context(|| format!("checking the secrets file {}", path.display()))?;
                if s.db_password.trim().is_empty() || s.db_password.contains(['\n', '\r']) {
                    bail!("{}: db_password must be one non-empty line", path.display());
                }
                Ok((s, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Secrets::generate(cluster)?, true))
            }
            Err(e) => {
                Err(e).with_context(|| format!("reading the secrets file {}", path.display()))
            }
        }
    }

    /// Replaces the DB password with the first line of `file` (the recipe's
    /// `database.password_file`).
    pub fn with_password_file(mut self, file: &Path) -> Result<Secrets> {
        let text = fs::read_to_string(file)
            .with_context(|| format!("reading the DB password file {}", file.display()))?;
        let line = text.lines().next().unwrap_or("").trim_end();
        if line.is_empty() {
            bail!(
                "{}: the first line (the DB password) is empty",
                file.display()
            );
        }
        self.db_password = line.to_string();
        Ok(self)
    }

    /// Every secret string, to check that nothing printed contains one.
    pub fn all(&self) -> Vec<&str> {
        let mut all = vec![
            self.db_password.as_str(),
            &self.leader_host_key,
            &self.token_client_key,
            &self.peer_client_key,
        ];
        all.extend(self.host_keys.values().map(String::as_str));
        all.retain(|s| !s.is_empty());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_different() {
        let (a, b) = (new_password(), new_password());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn created_once_then_reused_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s/secrets.toml");
        let hosts = [("db1", false), ("lead", true)];
        let (a, new) = Secrets::load_or_create(&p, "lab", &hosts).unwrap();
        assert!(new);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, new) = Secrets::load_or_create(&p, "lab", &hosts).unwrap();
        assert!(!new);
        assert_eq!(a, b);
        assert!(
            a.host_public("db1", false)
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );
        assert_eq!(a.host_keys.len(), 1, "the leader keeps leader_host_key");
        assert!(a.peer_client_public().is_ok());
        assert!(a.leader_host_public().unwrap().starts_with("ssh-ed25519 "));
        assert!(format!("{a:?}").find(&a.db_password).is_none());
    }

    #[test]
    fn an_older_secrets_file_gains_the_new_keys_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secrets.toml");
        let mut old = Secrets::generate("lab").unwrap();
        old.host_keys.clear();
        let text = toml::to_string(&old).unwrap();
        let legacy: String = text
            .lines()
            .filter(|l| !l.starts_with("peer_client_key"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&p, legacy).unwrap();
        let (s, new) = Secrets::load_or_create(&p, "lab", &[("db1", false)]).unwrap();
        assert!(!new);
        assert_eq!(s.db_password, old.db_password);
        assert_eq!(s.leader_host_key, old.leader_host_key);
        assert!(s.host_keys.contains_key("db1") && !s.peer_client_key.is_empty());
        let (again, _) = Secrets::load_or_create(&p, "lab", &[("db1", false)]).unwrap();
        assert_eq!(
            again, s,
            "written back, so the next build uses the same keys"
        );
    }
}
