//! OpenPGP for the archive: the site key, clearsigned `InRelease`, detached
//! `Release.gpg` / `SHA256SUMS.gpg`, and verification against a keyring.
//!
//! Keys are v4 `Ed25519Legacy` (EdDSA): the newer Ed25519 key type is
//! rejected by gpgv 2.2, which is what Astra SE 1.7 has. Every signature
//! carries only a creation time (given, so output is reproducible) and the
//! issuer; EdDSA signatures are deterministic, so the same key, time and data
//! give the same bytes.

use std::fs;
use std::io::{BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey, SubpacketConfig,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password, Tag, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The secret key file `keygen` writes (mode 0600).
pub const SECRET_KEY_FILE: &str = "signing-key.asc";
pub use crate::shared::keyring::{Keyring, PUBLIC_ASC_FILE, PUBLIC_GPG_FILE, Verified};

/// A secret key that signs.
#[derive(Debug, Clone)]
pub struct SigningKey {
    key: SignedSecretKey,
}

fn to_u32_time(t: i64) -> Result<u32> {
    u32::try_from(t).map_err(|_| anyhow!("time {t} does not fit an OpenPGP timestamp"))
}

impl SigningKey {
    /// Generates an Ed25519 (legacy EdDSA) key from a 32-byte seed, created at
    /// `created`. The same seed and time give the same key.
    pub fn generate(user_id: &str, created: i64, seed: [u8; 32]) -> Result<SigningKey> {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let ts = Timestamp::from_secs(to_u32_time(created)?);
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.into())
            .created_at(ts)
            .preferred_symmetric_algorithms(smallvec::smallvec![
                SymmetricKeyAlgorithm::AES256,
                SymmetricKeyAlgorithm::AES128
            ])
            .preferred_hash_algorithms(smallvec::smallvec![
                HashAlgorithm::Sha512,
                HashAlgorithm::Sha256
            ])
            .preferred_compression_algorithms(smallvec::smallvec![])
            .build()
            .map_err(|e| anyhow!("key parameters: {e}"))?;
        let mut key = params.generate(&mut rng).context("generating the key")?;
        // generate() stamps the user id's self-signature with the current
        // time: sign it again at `created` so the key is reproducible.
        let primary_pub = key.primary_key.public_key().clone();
        for user in key.details.users.iter_mut() {
            let mut cfg: SignatureConfig = user
                .signatures
                .first()
                .and_then(|s| s.config())
                .context("the new key has no v4 self-signature")?
                .clone();
            for sp in cfg.hashed_subpackets.iter_mut() {
                if matches!(sp.data, SubpacketData::SignatureCreationTime(_)) {
                    *sp = Subpacket::regular(SubpacketData::SignatureCreationTime(ts))?;
                }
            }
            let sig = cfg.sign_certification(
                &key.primary_key,
                &primary_pub,
                &Password::empty(),
                Tag::UserId,
                &user.id,
            )?;
            user.signatures = vec![sig];
        }
        key.verify_bindings().context("checking the new key")?;
        Ok(SigningKey { key })
    }

    /// Reads an armored secret key (from `keygen` or exported by GnuPG with
    /// `gpg --export-secret-keys --armor`, without a passphrase).
    pub fn load(path: &Path) -> Result<SigningKey> {
        let file = fs::File::open(path)
            .with_context(|| format!("opening the signing key {}", path.display()))?;
        let (key, _) = SignedSecretKey::from_armor_single(BufReader::new(file)).with_context(|| {
            format!(
                "reading the signing key {}: expected an armored OpenPGP secret key (\"-----BEGIN PGP PRIVATE KEY BLOCK-----\")",
                path.display()
            )
        })?;
        key.verify_bindings()
            .with_context(|| format!("checking the signing key {}", path.display()))?;
        if key.primary_key.secret_params().is_encrypted() {
            bail!(
                "{}: the secret key is protected by a passphrase; airlock signs unattended, so export it without one (gpg --export-secret-keys --armor after removing the passphrase in a throwaway GNUPGHOME)",
                path.display()
            );
        }
        Ok(SigningKey { key })
    }

    /// The public half.
    /// A keyring of this key alone.
    pub fn keyring(&self) -> Keyring {
        Keyring::from_keys(vec![self.public()], &self.fingerprint())
    }

    pub fn public(&self) -> SignedPublicKey {
        self.key.to_public_key()
    }

    /// Upper-case hex fingerprint.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.fingerprint())
    }

    /// The secret key, armored.
    pub fn secret_armored(&self) -> Result<String> {
        Ok(self.key.to_armored_string(ArmorOptions::default())?)
    }

    /// The public key, armored.
    pub fn public_armored(&self) -> Result<String> {
        Ok(self.public().to_armored_string(ArmorOptions::default())?)
    }

    /// The public key as a binary keyring.
    pub fn public_binary(&self) -> Result<Vec<u8>> {
        Ok(self.public().to_bytes()?)
    }

    /// When the key was made, seconds since the epoch.
    pub fn created(&self) -> i64 {
        i64::from(self.key.primary_key.created_at().as_secs())
    }

    /// The time a signature carries: `time`, but never before the key
    /// existed. gpgv rejects a signature older than its key, which a
    /// `SOURCE_DATE_EPOCH` from an old commit would otherwise produce.
    pub fn signature_time(&self, time: i64) -> i64 {
        time.max(self.created())
    }

    fn subpackets(&self, time: i64) -> Result<(Vec<Subpacket>, Vec<Subpacket>)> {
        let k = &self.key.primary_key;
        let time = self.signature_time(time);
        let hashed = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                to_u32_time(time)?,
            )))?,
            Subpacket::regular(SubpacketData::IssuerFingerprint(k.fingerprint()))?,
        ];
        let unhashed = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
            k.legacy_key_id(),
        ))?];
        Ok((hashed, unhashed))
    }

    /// A cleartext signature of `text`, as Debian's `InRelease`. The body is
    /// what `gpg --clearsign` writes for the same text.
    pub fn clearsign(&self, text: &str, time: i64) -> Result<String> {
        let k = &self.key.primary_key;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut cfg =
            SignatureConfig::v4(SignatureType::Text, k.algorithm(), HashAlgorithm::Sha256);
        let (hashed, unhashed) = self.subpackets(time)?;
        cfg.hashed_subpackets = hashed;
        cfg.unhashed_subpackets = unhashed;
        // Verifiers hash lines with trailing blanks removed; rpgp's `new`
        // does not, so hash exactly what they will.
        let msg = CleartextSignedMessage::new_many(body, |normalized: &str| {
            let hashed: String = normalized
                .split_inclusive('\n')
                .map(|l| {
                    let (c, eol) = match l.strip_suffix("\r\n") {
                        Some(c) => (c, "\r\n"),
                        None => (l, ""),
                    };
                    format!("{}{eol}", c.trim_end_matches([' ', '\t']))
                })
                .collect();
            Ok(vec![cfg.sign(k, &Password::empty(), hashed.as_bytes())?])
        })?;
        Ok(msg.to_armored_string(ArmorOptions::default())?)
    }

    fn detached(&self, data: &[u8], time: i64) -> Result<DetachedSignature> {
        let (hashed, unhashed) = self.subpackets(time)?;
        Ok(DetachedSignature::sign_binary_data_with_subpackets(
            // Only v6 signatures use randomness (a salt); v4 EdDSA does not.
            ChaCha20Rng::from_seed([0; 32]),
            &self.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
            SubpacketConfig::UserDefined { hashed, unhashed },
        )?)
    }

    /// A detached signature, armored (`Release.gpg`, `SHA256SUMS.gpg`).
    pub fn detached_armored(&self, data: &[u8], time: i64) -> Result<String> {
        Ok(self
            .detached(data, time)?
            .to_armored_string(ArmorOptions::default())?)
    }

    /// A detached signature, binary.
    pub fn detached_binary(&self, data: &[u8], time: i64) -> Result<Vec<u8>> {
        Ok(self.detached(data, time)?.to_bytes()?)
    }
}

/// Writes `bytes` to a new file with mode 0600 (refusing to overwrite).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the three key files of `key` into `dir`; refuses to overwrite.
pub fn write_key_files(key: &SigningKey, dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = dir.join(SECRET_KEY_FILE);
    let asc = dir.join(PUBLIC_ASC_FILE);
    let gpg = dir.join(PUBLIC_GPG_FILE);
    for p in [&secret, &asc, &gpg] {
        if p.exists() {
            bail!(
                "{} already exists; airlock never overwrites a key: move it away or choose another --out",
                p.display()
            );
        }
    }
    write_secret(&secret, key.secret_armored()?.as_bytes())?;
    fs::write(&asc, key.public_armored()?).with_context(|| format!("writing {}", asc.display()))?;
    fs::write(&gpg, key.public_binary()?).with_context(|| format!("writing {}", gpg.display()))?;
    Ok(vec![secret, asc, gpg])
}

/// `airlock keygen`: a fresh random key, created now (or at
/// `SOURCE_DATE_EPOCH`), written into `dir`.
pub fn keygen(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let created = crate::shared::timefmt::build_time()?;
    let user_id = format!("{name} <airlock@localhost>");
    let key = SigningKey::generate(&user_id, created, seed)?;
    write_key_files(&key, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate("Test <t@localhost>", 1_700_000_000, [7; 32]).unwrap()
    }

    #[test]
    fn same_seed_and_time_give_the_same_key_and_signatures() {
        let (a, b) = (key(), key());
        assert_eq!(a.secret_armored().unwrap(), b.secret_armored().unwrap());
        assert_eq!(
            a.clearsign("x\n", 5).unwrap(),
            b.clearsign("x\n", 5).unwrap()
        );
        assert_eq!(
            a.detached_armored(b"data", 5).unwrap(),
            b.detached_armored(b"data", 5).unwrap()
        );
    }

    #[test]
    fn signatures_round_trip_and_tampering_fails() {
        let k = key();
        let ring = k.keyring();
        let text = "Origin: x\n-dash line\ntrailing blank \nSHA256:\n abc 1 main\n";
        let signed = k.clearsign(text, 1).unwrap();
        assert_eq!(ring.verify_cleartext(&signed).unwrap(), text);
        assert!(
            ring.verify_cleartext(&signed.replace("Origin: x", "Origin: y"))
                .is_err()
        );

        let sig = k.detached_armored(b"payload", 1).unwrap();
        ring.verify_detached(b"payload", sig.as_bytes()).unwrap();
        assert!(ring.verify_detached(b"payloae", sig.as_bytes()).is_err());
        let bin = k.detached_binary(b"payload", 1).unwrap();
        ring.verify_detached(b"payload", &bin).unwrap();
    }

    #[test]
    fn signatures_are_never_older_than_the_key() {
        let k = key();
        assert_eq!(k.signature_time(5), 1_700_000_000);
        assert_eq!(k.signature_time(1_800_000_000), 1_800_000_000);
    }

    #[test]
    fn a_foreign_key_does_not_verify() {
        let k = key();
        let other = SigningKey::generate("Other <o@localhost>", 1_700_000_000, [8; 32]).unwrap();
        let sig = k.detached_armored(b"payload", 1).unwrap();
        assert!(
            crate::build::sign::SigningKey::keyring(&other)
                .verify_detached(b"payload", sig.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn keyrings_load_from_armored_and_binary() {
        let k = key();
        let from_bin = Keyring::from_bytes(&k.public_binary().unwrap(), "bin").unwrap();
        let both = format!(
            "{}{}",
            k.public_armored().unwrap(),
            k.public_armored().unwrap()
        );
        let from_asc = Keyring::from_bytes(both.as_bytes(), "asc").unwrap();
        assert_eq!(from_asc.key_count(), 2);
        let sig = k.detached_armored(b"d", 1).unwrap();
        from_bin.verify_detached(b"d", sig.as_bytes()).unwrap();
        assert!(Keyring::from_bytes(b"garbage", "g").is_err());
    }

    /// A signature that expired an hour after it was made, long ago:
    /// refused by airlock as gpgv refuses it.
    #[test]
    fn an_expired_signature_is_refused_like_gpgv_does() {
        let k = key();
        let made = k.created() + 10;
        let (mut hashed, unhashed) = k.subpackets(made).unwrap();
        hashed.push(
            Subpacket::regular(SubpacketData::SignatureExpirationTime(
                pgp::types::Duration::from_secs(3600),
            ))
            .unwrap(),
        );
        let sig = DetachedSignature::sign_binary_data_with_subpackets(
            ChaCha20Rng::from_seed([0; 32]),
            &k.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            &b"payload"[..],
            SubpacketConfig::UserDefined { hashed, unhashed },
        )
        .unwrap()
        .to_armored_string(ArmorOptions::default())
        .unwrap();
        let e = k
            .keyring()
            .verify_detached(b"payload", sig.as_bytes())
            .unwrap_err();
        assert!(format!("{e:#}").contains("expired"), "{e:#}");
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("data"), b"payload").unwrap();
        fs::write(p("data.sig"), &sig).unwrap();
        fs::write(p("key.gpg"), k.public_binary().unwrap()).unwrap();
        let gpgv = std::process::Command::new("gpgv")
            .arg("--keyring")
            .arg(p("key.gpg"))
            .arg(p("data.sig"))
            .arg(p("data"))
            .output();
        if let Ok(out) = gpgv {
            assert!(!out.status.success(), "gpgv accepted the expired signature");
        }
        // The same without the expiry verifies.
        let good = k.detached_armored(b"payload", made).unwrap();
        let v = k
            .keyring()
            .verify_detached(b"payload", good.as_bytes())
            .unwrap();
        assert_eq!((v.fingerprint, v.created), (k.fingerprint(), made));
    }

    #[test]
    fn key_files_are_written_once_with_a_private_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_key_files(&key(), dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(SECRET_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = write_key_files(&key(), dir.path()).unwrap_err().to_string();
        assert!(again.contains("never overwrites"), "{again}");
        let loaded = SigningKey::load(&dir.path().join(SECRET_KEY_FILE)).unwrap();
        assert_eq!(loaded.fingerprint(), key().fingerprint());
    }
}
