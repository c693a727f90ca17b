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
use pgp::armor::BlockType;
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
        clearsign_all(std::slice::from_ref(self), text, time)
    }

    /// How this key signs cleartext made at `time`.
    fn text_signature_config(&self, time: i64) -> Result<SignatureConfig> {
        let k = &self.key.primary_key;
        let mut cfg =
            SignatureConfig::v4(SignatureType::Text, k.algorithm(), HashAlgorithm::Sha256);
        let (hashed, unhashed) = self.subpackets(time)?;
        cfg.hashed_subpackets = hashed;
        cfg.unhashed_subpackets = unhashed;
        Ok(cfg)
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
        detached_armored_all(std::slice::from_ref(self), data, time)
    }

    /// A detached signature, binary.
    pub fn detached_binary(&self, data: &[u8], time: i64) -> Result<Vec<u8>> {
        Ok(self.detached(data, time)?.to_bytes()?)
    }
}

/// One cleartext signature block over `text` with one signature per key,
/// in the keys' order (an `InRelease` several keys signed, as apt reads it).
fn clearsign_all(keys: &[SigningKey], text: &str, time: i64) -> Result<String> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let configs = keys
        .iter()
        .map(|k| k.text_signature_config(time))
        .collect::<Result<Vec<_>>>()?;
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
        keys.iter()
            .zip(configs)
            .map(|(k, cfg)| cfg.sign(&k.key.primary_key, &Password::empty(), hashed.as_bytes()))
            .collect()
    })?;
    Ok(msg.to_armored_string(ArmorOptions::default())?)
}

/// One armored block of detached signatures over `data`, one per key in
/// the keys' order (what `gpg --detach-sign -u A -u B` writes and gpgv
/// reads).
fn detached_armored_all(keys: &[SigningKey], data: &[u8], time: i64) -> Result<String> {
    let sigs = keys
        .iter()
        .map(|k| k.detached(data, time))
        .collect::<Result<Vec<_>>>()?;
    armored(&sigs, BlockType::Signature)
}

/// `items` in one armored block of type `typ`, as rpgp armors one.
fn armored(items: &impl Serialize, typ: BlockType) -> Result<String> {
    let mut out = Vec::new();
    let opts = ArmorOptions::default();
    pgp::armor::write(items, typ, &mut out, opts.headers, opts.include_checksum)?;
    Ok(String::from_utf8(out)?)
}

/// The keys a build signs with, in the order given (`--key A --key B`):
/// every signature file carries one signature per key, in that order, and
/// the public keyring holds every key, so a site may trust any one of them
/// (a key rollover) or require several (a two-person rule).
#[derive(Debug, Clone)]
pub struct Signers {
    keys: Vec<SigningKey>,
}

impl From<SigningKey> for Signers {
    fn from(key: SigningKey) -> Signers {
        Signers { keys: vec![key] }
    }
}

impl Signers {
    /// The given keys; refuses none, and the same key twice.
    pub fn new(keys: Vec<SigningKey>) -> Result<Signers> {
        if keys.is_empty() {
            bail!("no signing key given (--key SECRET.asc)");
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.fingerprint() == k.fingerprint()) {
                bail!(
                    "the signing key {} is given twice: each --key must be another key",
                    k.fingerprint()
                );
            }
        }
        Ok(Signers { keys })
    }

    /// Reads each key (see [`SigningKey::load`]), in the order given.
    pub fn load(paths: &[PathBuf]) -> Result<Signers> {
        let keys = paths
            .iter()
            .map(|p| SigningKey::load(p))
            .collect::<Result<Vec<_>>>()?;
        for (i, k) in keys.iter().enumerate() {
            if let Some(j) = keys[..i]
                .iter()
                .position(|o| o.fingerprint() == k.fingerprint())
            {
                bail!(
                    "--key {} and --key {} are the same key {}: each --key must be another key",
                    paths[j].display(),
                    paths[i].display(),
                    k.fingerprint()
                );
            }
        }
        Signers::new(keys)
    }

    /// The keys, in signing order.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Each key's fingerprint, in signing order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(SigningKey::fingerprint).collect()
    }

    /// A keyring of every key.
    pub fn keyring(&self) -> Keyring {
        Keyring::from_keys(
            self.keys.iter().map(SigningKey::public).collect(),
            &self.fingerprints().join(" + "),
        )
    }

    /// `InRelease`: one cleartext signature block, a signature per key.
    pub fn clearsign(&self, text: &str, time: i64) -> Result<String> {
        clearsign_all(&self.keys, text, time)
    }

    /// `Release.gpg`, `SHA256SUMS.gpg`: one armored block, a signature
    /// packet per key.
    pub fn detached_armored(&self, data: &[u8], time: i64) -> Result<String> {
        detached_armored_all(&self.keys, data, time)
    }

    /// Every public key, armored in one block (as `gpg --export --armor`).
    pub fn public_armored(&self) -> Result<String> {
        let keys: Vec<SignedPublicKey> = self.keys.iter().map(SigningKey::public).collect();
        armored(&keys, BlockType::PublicKey)
    }

    /// Every public key as one binary keyring (keys concatenated).
    pub fn public_binary(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for k in &self.keys {
            out.extend(k.public_binary()?);
        }
        Ok(out)
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
        let other = other();
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
        let sig = signed_with(&k, hashed, unhashed, b"payload");
        let e = k
            .keyring()
            .verify_detached(b"payload", sig.as_bytes())
            .unwrap_err();
        assert!(format!("{e:#}").contains("expired"), "{e:#}");
        assert!(
            !gpgv_accepts(&k, &sig, b"payload"),
            "gpgv accepted the expired signature"
        );
        // The same without the expiry verifies, for gpgv too (so its
        // refusals above are its own, not a missing gpgv).
        let good = k.detached_armored(b"payload", made).unwrap();
        assert!(gpgv_accepts(&k, &good, b"payload"));
        let v = k
            .keyring()
            .verify_detached(b"payload", good.as_bytes())
            .unwrap();
        assert_eq!((v.fingerprint, v.created), (k.fingerprint(), made));
    }

    fn other() -> SigningKey {
        SigningKey::generate("Other <o@localhost>", 1_700_000_000, [8; 32]).unwrap()
    }

    /// A detached signature of `data` by `k` with these subpackets, armored.
    fn signed_with(
        k: &SigningKey,
        hashed: Vec<Subpacket>,
        unhashed: Vec<Subpacket>,
        data: &[u8],
    ) -> String {
        DetachedSignature::sign_binary_data_with_subpackets(
            ChaCha20Rng::from_seed([0; 32]),
            &k.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
            SubpacketConfig::UserDefined { hashed, unhashed },
        )
        .unwrap()
        .to_armored_string(ArmorOptions::default())
        .unwrap()
    }

    /// Whether gpgv, with `k`'s key alone, accepts `sig` of `data` (false
    /// where gpgv is not installed).
    fn gpgv_accepts(k: &SigningKey, sig: &str, data: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("data"), data).unwrap();
        fs::write(p("data.sig"), sig).unwrap();
        fs::write(p("key.gpg"), k.public_binary().unwrap()).unwrap();
        std::process::Command::new("gpgv")
            .arg("--keyring")
            .arg(p("key.gpg"))
            .arg(p("data.sig"))
            .arg(p("data"))
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// A signature the keyring's key made but that names another key as
    /// its issuer: gpgv looks the key up by that name, finds none and
    /// refuses; airlock counts it as that other key's, not as a good one.
    #[test]
    fn a_signature_naming_another_issuer_is_not_counted_as_gpgv_does_not() {
        let (k, o) = (key(), other());
        let (mut hashed, mut unhashed) = k.subpackets(k.created() + 10).unwrap();
        let (o_hashed, o_unhashed) = o.subpackets(k.created() + 10).unwrap();
        hashed[1] = o_hashed[1].clone();
        unhashed[0] = o_unhashed[0].clone();
        let sig = signed_with(&k, hashed, unhashed, b"payload");
        let checked = k
            .keyring()
            .check_detached(b"payload", sig.as_bytes())
            .unwrap();
        assert!(checked.good.is_empty(), "{checked:?}");
        assert_eq!(checked.unknown, [o.fingerprint()]);
        assert!(
            !gpgv_accepts(&k, &sig, b"payload"),
            "gpgv accepted it, where airlock refuses it"
        );
    }

    /// A signature by one key of the keyring that names another key of it
    /// as its issuer: gpgv checks it with the key it names, which fails;
    /// airlock does not count it as the other key's either.
    #[test]
    fn a_signature_naming_another_key_of_the_keyring_is_not_good() {
        let (k, o) = (key(), other());
        let (mut hashed, mut unhashed) = o.subpackets(k.created() + 10).unwrap();
        let (k_hashed, k_unhashed) = k.subpackets(k.created() + 10).unwrap();
        hashed[1] = k_hashed[1].clone();
        unhashed[0] = k_unhashed[0].clone();
        let sig = signed_with(&o, hashed, unhashed, b"payload");
        let both = format!(
            "{}{}",
            k.public_armored().unwrap(),
            o.public_armored().unwrap()
        );
        let keyring = Keyring::from_bytes(both.as_bytes(), "both").unwrap();
        let checked = keyring.check_detached(b"payload", sig.as_bytes());
        assert!(
            checked.as_ref().is_err() || checked.as_ref().unwrap().good.is_empty(),
            "{checked:?}"
        );
    }

    /// With one key, every file is what a single key wrote before keys
    /// could be several.
    #[test]
    fn one_signer_writes_what_one_key_writes() {
        let k = key();
        let one = Signers::from(k.clone());
        let old_detached = k
            .detached(b"data", 5)
            .unwrap()
            .to_armored_string(ArmorOptions::default())
            .unwrap();
        assert_eq!(one.detached_armored(b"data", 5).unwrap(), old_detached);
        assert_eq!(
            one.clearsign("a\nb\n", 5).unwrap(),
            k.clearsign("a\nb\n", 5).unwrap()
        );
        assert_eq!(one.public_armored().unwrap(), k.public_armored().unwrap());
        assert_eq!(one.public_binary().unwrap(), k.public_binary().unwrap());
    }

    #[test]
    fn two_signers_sign_in_order_and_each_key_alone_verifies() {
        let (a, b) = (key(), other());
        let both = Signers::new(vec![a.clone(), b.clone()]).unwrap();
        let sig = both.detached_armored(b"payload", 1).unwrap();
        assert_eq!(sig.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
        let packets = crate::shared::keyring::read_detached(sig.as_bytes()).unwrap();
        assert_eq!(packets.len(), 2);
        for (k, other) in [(&a, &b), (&b, &a)] {
            let checked = k
                .keyring()
                .check_detached(b"payload", sig.as_bytes())
                .unwrap();
            assert_eq!(checked.signers().len(), 1);
            assert_eq!(checked.good[0].key, k.fingerprint());
            assert_eq!(checked.unknown, vec![other.fingerprint()]);
            checked.require(1, &k.keyring()).unwrap();
            let e = checked.require(2, &k.keyring()).unwrap_err().to_string();
            assert!(e.contains("1 of the 2 signers required"), "{e}");
            assert!(e.contains(&k.fingerprint()), "{e}");
            assert!(
                e.contains(&format!("also signed by {}", other.fingerprint())),
                "{e}"
            );
        }
        let ring = both.keyring();
        let checked = ring.check_detached(b"payload", sig.as_bytes()).unwrap();
        let signers: Vec<&str> = checked.signers().iter().map(|v| v.key.as_str()).collect();
        assert_eq!(signers, [a.fingerprint(), b.fingerprint()]);
        checked.require(2, &ring).unwrap();
        // The order given is the order of the packets.
        let swapped = Signers::new(vec![b.clone(), a.clone()]).unwrap();
        let checked = ring
            .check_detached(
                b"payload",
                swapped.detached_armored(b"payload", 1).unwrap().as_bytes(),
            )
            .unwrap();
        assert_eq!(checked.good[0].key, b.fingerprint());
        // InRelease: each key alone reads it.
        let text = "Origin: x\nSuite: s\n";
        let signed = both.clearsign(text, 1).unwrap();
        assert_eq!(signed.matches("-----BEGIN PGP SIGNATURE-----").count(), 1);
        assert_eq!(a.keyring().verify_cleartext(&signed).unwrap(), text);
        assert_eq!(b.keyring().verify_cleartext(&signed).unwrap(), text);
        // The public keyring holds both, in order.
        let ring = Keyring::from_bytes(&both.public_binary().unwrap(), "bin").unwrap();
        let fprs: Vec<String> = ring.keys().into_iter().map(|k| k.fingerprint).collect();
        assert_eq!(fprs, [a.fingerprint(), b.fingerprint()]);
        let asc = both.public_armored().unwrap();
        assert_eq!(
            asc.matches("-----BEGIN PGP PUBLIC KEY BLOCK-----").count(),
            1
        );
        assert_eq!(
            Keyring::from_bytes(asc.as_bytes(), "asc")
                .unwrap()
                .keys()
                .len(),
            2
        );
    }

    #[test]
    fn the_same_key_twice_is_one_signer() {
        let k = key();
        let twice = detached_armored_all(&[k.clone(), k.clone()], b"payload", 1).unwrap();
        let ring = k.keyring();
        let checked = ring.check_detached(b"payload", twice.as_bytes()).unwrap();
        assert_eq!(checked.good.len(), 2);
        assert_eq!(checked.signers().len(), 1);
        let e = checked.require(2, &ring).unwrap_err().to_string();
        assert!(e.contains("1 of the 2 signers required"), "{e}");
        // A keyring holding it twice holds one key.
        let doubled = Keyring::from_keys(vec![k.public(), k.public()], "twice");
        assert_eq!(doubled.keys().len(), 1);
        assert!(Signers::new(vec![k.clone(), k.clone()]).is_err());
    }

    #[test]
    fn a_bad_signature_by_a_key_of_the_keyring_refuses_the_file() {
        let (a, b) = (key(), other());
        let good = a.detached(b"payload", 1).unwrap();
        let bad = b.detached(b"other data", 1).unwrap();
        let sig = armored(&vec![good, bad], BlockType::Signature).unwrap();
        // b's keyring: its one signature is bad.
        let both = Signers::new(vec![a.clone(), b.clone()]).unwrap().keyring();
        let e = format!(
            "{:#}",
            both.check_detached(b"payload", sig.as_bytes()).unwrap_err()
        );
        assert!(e.contains("signature 2 of 2"), "{e}");
        // a's keyring alone does not hold b: the bad one is only named.
        let checked = a
            .keyring()
            .check_detached(b"payload", sig.as_bytes())
            .unwrap();
        assert_eq!(checked.signers().len(), 1);
    }

    #[test]
    fn a_signature_file_holds_signature_packets_only() {
        let (a, b) = (key(), other());
        let sig = a.detached_binary(b"payload", 1).unwrap();
        let ring = a.keyring();
        ring.verify_detached(b"payload", &sig).unwrap();
        // A public key packet after the signature.
        let with_key = [sig.clone(), b.public_binary().unwrap()].concat();
        let e = format!(
            "{:#}",
            ring.verify_detached(b"payload", &with_key).unwrap_err()
        );
        assert!(e.contains("signature packets only"), "{e}");
        // The same, armored.
        let key_inside = armored(&b.public(), BlockType::Signature);
        let e = format!(
            "{:#}",
            ring.verify_detached(b"payload", key_inside.unwrap().as_bytes())
                .unwrap_err()
        );
        assert!(e.contains("signature packets only"), "{e}");
        // A torn packet header, or a byte, after the last signature.
        for tail in [&[0xc2u8][..], &[0x00], &[0x88, 0x05]] {
            let torn = [&sig[..], tail].concat();
            assert!(ring.verify_detached(b"payload", &torn).is_err(), "{tail:?}");
        }
        // Two armored blocks.
        let one = a.detached_armored(b"payload", 1).unwrap();
        let two = format!("{one}{one}");
        let e = format!(
            "{:#}",
            ring.verify_detached(b"payload", two.as_bytes())
                .unwrap_err()
        );
        assert!(e.contains("more than one armored block"), "{e}");
        // A public key block given as the signature.
        let e = format!(
            "{:#}",
            ring.verify_detached(b"payload", a.public_armored().unwrap().as_bytes())
                .unwrap_err()
        );
        assert!(e.contains("not a signature"), "{e}");
        // Nothing at all.
        assert!(ring.verify_detached(b"payload", b"").is_err());
    }

    /// What GnuPG writes for two keys (its own packet headers) reads back
    /// whole, binary and armored.
    #[test]
    fn gpg_signatures_by_two_keys_read_back() {
        let (a, b) = (key(), other());
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        fs::create_dir(&home).unwrap();
        let gpg = |args: &[&str]| {
            std::process::Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--quiet", "--yes"])
                .args(args)
                .output()
        };
        let secrets = dir.path().join("secrets.asc");
        fs::write(
            &secrets,
            format!(
                "{}{}",
                a.secret_armored().unwrap(),
                b.secret_armored().unwrap()
            ),
        )
        .unwrap();
        if gpg(&["--import", secrets.to_str().unwrap()]).is_err() {
            eprintln!("skipping: no gpg");
            return;
        }
        let data = dir.path().join("data");
        fs::write(&data, b"payload").unwrap();
        let both = Signers::new(vec![a.clone(), b.clone()]).unwrap().keyring();
        for armor in [false, true] {
            let out = dir.path().join(format!("data.{armor}.sig"));
            let (fa, fb) = (a.fingerprint(), b.fingerprint());
            let mut args = vec!["-u", &fa, "-u", &fb];
            if armor {
                args.push("--armor");
            }
            args.extend([
                "--detach-sign",
                "-o",
                out.to_str().unwrap(),
                data.to_str().unwrap(),
            ]);
            let run = gpg(&args).unwrap();
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            let sig = fs::read(&out).unwrap();
            let checked = both.check_detached(b"payload", &sig).unwrap();
            assert_eq!(checked.signers().len(), 2, "armor {armor}");
        }
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
