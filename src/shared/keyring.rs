//! Checking OpenPGP signatures against a keyring, as gpgv does: the
//! manifest's detached signature, a disc's Release. (Making them is the
//! builder's `sign`.)

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::packet::{Packet, PacketParser, PacketTrait, Signature};
use pgp::types::{KeyDetails, Timestamp};
use serde::Serialize;

/// The public key, armored.
pub const PUBLIC_ASC_FILE: &str = "archive-keyring.asc";
/// The public key as a binary keyring (gpgv and apt's `signed-by=` want this).
pub const PUBLIC_GPG_FILE: &str = "archive-keyring.gpg";

/// CRC-24 of OpenPGP's ASCII armor (RFC 4880, 6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// The packets of an armored signature block, decoded as gpgv decodes
/// them. Its `=XXXX` checksum line is checked (rpgp's own check is off by
/// default and, when asked for, compares against an empty sum); a block
/// without one is accepted, as gpgv accepts it. One block only: nothing
/// before its BEGIN line and only line ends after its END line, since
/// whatever else is there, no two readers agree on.
fn dearmor_signature(armored: &[u8]) -> Result<Vec<u8>> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
    const END: &str = "-----END PGP SIGNATURE-----";
    let text = std::str::from_utf8(armored).context("the armored signature is not text")?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if !text.starts_with("-----BEGIN ")
        || !trimmed
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("-----END ") && l.ends_with("-----"))
    {
        bail!("the armored signature has text before its BEGIN or after its END line");
    }
    let mut lines = trimmed.lines().map(str::trim_end);
    if lines.next() != Some(BEGIN) {
        bail!("the armored block is not a signature (its first line is not {BEGIN})");
    }
    // Armor headers end with an empty line.
    let mut body = String::new();
    let mut in_headers = true;
    let mut footer_crc = None;
    let mut ended = false;
    for l in lines {
        if ended {
            bail!("the file holds more than one armored block: give one signature block");
        }
        if l.starts_with("-----END ") {
            if l != END {
                bail!("the armored signature ends with {l:?}, not {END}");
            }
            ended = true;
            continue;
        }
        if in_headers {
            if l.is_empty() {
                in_headers = false;
            } else if !l.contains(": ") {
                in_headers = false;
                body.push_str(l);
            }
            continue;
        }
        if let Some(c) = l.strip_prefix('=') {
            footer_crc = Some(c.to_string());
        } else {
            body.push_str(l);
        }
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let data = engine
        .decode(body.as_bytes())
        .context("the armored signature is not valid base64")?;
    let Some(c) = footer_crc else {
        return Ok(data);
    };
    let want = engine
        .decode(c.as_bytes())
        .ok()
        .filter(|b| b.len() == 3)
        .context("the armor checksum line is malformed")?;
    let want = u32::from(want[0]) << 16 | u32::from(want[1]) << 8 | u32::from(want[2]);
    if crc24(&data) != want {
        bail!("the armor checksum does not match: the signature was altered or damaged");
    }
    Ok(data)
}

/// The signature packets of a detached signature file: armored from its
/// first byte (one block, checksum checked) or binary from its first byte,
/// and nothing in it but signature packets, each whole and written as a
/// reader of OpenPGP reads it back (rpgp's own readers skip marker,
/// padding and unknown packets, and a torn last header; gpgv reads them).
pub fn read_detached(signature: &[u8]) -> Result<Vec<Signature>> {
    let armored = signature.trim_ascii_start().starts_with(b"-----BEGIN ");
    let bytes = if armored {
        dearmor_signature(signature)?
    } else {
        // rpgp's reader looks for armor past leading junk; gpgv does
        // not. Binary means a packet header first and no armor inside.
        let is_armor_inside = signature
            .windows(b"-----BEGIN ".len())
            .any(|w| w == b"-----BEGIN ");
        if signature.first().is_none_or(|b| b & 0x80 == 0) || is_armor_inside {
            bail!(
                "the signature is neither armored (its BEGIN line first) nor binary OpenPGP (a packet header first)"
            );
        }
        signature.to_vec()
    };
    let mut sigs = Vec::new();
    for (i, p) in PacketParser::new(&bytes[..]).enumerate() {
        match p.with_context(|| format!("reading packet {} of the signature", i + 1))? {
            Packet::Signature(s) => sigs.push(s),
            other => bail!(
                "packet {} of the signature file is a {:?} packet: a detached signature holds signature packets only",
                i + 1,
                other.tag()
            ),
        }
    }
    if sigs.is_empty() {
        bail!("the signature file holds no signature");
    }
    let mut again = Vec::with_capacity(bytes.len());
    for s in &sigs {
        s.to_writer_with_header(&mut again)?;
    }
    if again != bytes {
        bail!(
            "the signature file is not exactly its {} signature packet(s): something is around or inside them",
            sigs.len()
        );
    }
    Ok(sigs)
}

/// A good signature: who made it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The key that made it (a subkey's own fingerprint when a subkey signed).
    pub fingerprint: String,
    /// The primary key it belongs to: one signer, however often it signed.
    pub key: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// Every signature over one file, each checked against a keyring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures {
    /// Good signatures by keys of the keyring, in the file's order.
    pub good: Vec<Verified>,
    /// Signatures by keys the keyring does not hold, named by the issuer
    /// they give: not counted, and not refused (a site that trusts one key
    /// of several reads a file the others signed too, as apt does).
    pub unknown: Vec<String>,
}

impl Signatures {
    /// The distinct keys with a good signature, each with its first good
    /// signature, in the order they first signed: the same key twice is
    /// one signer.
    pub fn signers(&self) -> Vec<&Verified> {
        let mut seen = std::collections::BTreeSet::new();
        self.good
            .iter()
            .filter(|v| seen.insert(v.key.as_str()))
            .collect()
    }

    /// The keys of `keyring` that made no good signature.
    pub fn missing(&self, keyring: &Keyring) -> Vec<KeyInfo> {
        keyring
            .keys()
            .into_iter()
            .filter(|k| !self.good.iter().any(|v| v.key == k.fingerprint))
            .collect()
    }

    /// Fails unless at least `n` distinct keys of `keyring` made a good
    /// signature; the error names who signed and who did not.
    pub fn require(&self, n: usize, keyring: &Keyring) -> Result<()> {
        let signers = self.signers();
        if signers.len() >= n.max(1) {
            return Ok(());
        }
        let mut why = match signers.len() {
            0 => format!("no key of {} made a good signature", keyring.label),
            got => format!(
                "{got} of the {n} signers required made a good signature: {}",
                signers
                    .iter()
                    .map(|v| format!(
                        "{}, signed {}",
                        keyring.describe(&v.key),
                        crate::shared::timefmt::rfc2822_utc(v.created)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let missing = self.missing(keyring);
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|k| k.to_string()).collect();
            why.push_str(&format!("; no good signature by {}", names.join(", ")));
        }
        if !self.unknown.is_empty() {
            why.push_str(&format!(
                "; also signed by {}, which {} does not hold",
                self.unknown.join(", "),
                keyring.label
            ));
        }
        bail!(why)
    }
}

/// A key of a keyring, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Upper-case hex fingerprint of the primary key.
    pub fingerprint: String,
    /// Its first user id, when it has one.
    pub user_id: Option<String>,
    /// The file it was read from.
    pub from: String,
}

impl std::fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.fingerprint)?;
        match &self.user_id {
            Some(u) => write!(f, " \"{u}\" (in {})", self.from),
            None => write!(f, " (in {})", self.from),
        }
    }
}

/// Public keys to verify against.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    /// The file each key came from, by index.
    from: Vec<String>,
    label: String,
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl Keyring {
    /// Reads a keyring: binary (`.gpg`, several keys concatenated) or armored
    /// (`.asc`, one or more blocks).
    pub fn load(path: &Path) -> Result<Keyring> {
        let data =
            fs::read(path).with_context(|| format!("reading the keyring {}", path.display()))?;
        Keyring::from_bytes(&data, &path.display().to_string())
    }

    /// The keys of several keyring files, as one keyring.
    pub fn load_all(paths: &[std::path::PathBuf]) -> Result<Keyring> {
        let mut all = Keyring {
            keys: Vec::new(),
            from: Vec::new(),
            label: String::new(),
        };
        for p in paths {
            let k = Keyring::load(p)?;
            all.keys.extend(k.keys);
            all.from.extend(k.from);
        }
        if all.keys.is_empty() {
            bail!("no keyring given");
        }
        all.label = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        Ok(all)
    }

    /// Parses keyring bytes; `label` names them in errors.
    pub fn from_bytes(data: &[u8], label: &str) -> Result<Keyring> {
        const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
        let mut keys = Vec::new();
        match std::str::from_utf8(data) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN ") => {
                // rpgp's armored readers stop after the first block.
                for block in text.split(BEGIN).skip(1) {
                    let armored = format!("{BEGIN}{block}");
                    let (iter, _) = SignedPublicKey::from_string_many(&armored)?;
                    for k in iter {
                        keys.push(k?);
                    }
                }
            }
            _ => {
                for k in SignedPublicKey::from_bytes_many(data)? {
                    keys.push(k?);
                }
            }
        }
        if keys.is_empty() {
            bail!("{label} holds no OpenPGP public key");
        }
        Ok(Keyring::from_keys(keys, label))
    }

    /// A keyring of the given public keys.
    pub fn from_keys(keys: Vec<SignedPublicKey>, label: &str) -> Keyring {
        Keyring {
            from: vec![label.to_string(); keys.len()],
            keys,
            label: label.to_string(),
        }
    }

    /// How many keys the keyring holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// What names the keyring in messages (its file, or files).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The distinct keys, in the keyring's order (a key given twice, in
    /// one file or two, once).
    pub fn keys(&self) -> Vec<KeyInfo> {
        let mut out: Vec<KeyInfo> = Vec::new();
        for (k, from) in self.keys.iter().zip(&self.from) {
            let fingerprint = format!("{:X}", k.fingerprint());
            if out.iter().any(|o| o.fingerprint == fingerprint) {
                continue;
            }
            out.push(KeyInfo {
                fingerprint,
                user_id: k
                    .details
                    .users
                    .first()
                    .map(|u| String::from_utf8_lossy(u.id.id()).into_owned()),
                from: from.clone(),
            });
        }
        out
    }

    /// A key of the keyring as messages name it, by primary fingerprint.
    pub fn describe(&self, fingerprint: &str) -> String {
        self.keys()
            .into_iter()
            .find(|k| k.fingerprint == fingerprint)
            .map(|k| k.to_string())
            .unwrap_or_else(|| fingerprint.to_string())
    }

    /// Whether a key of the keyring (or one of its subkeys) is the issuer
    /// `sig` names; a signature that names none is taken as the keyring's
    /// (its failure then refuses, as gpgv refuses it).
    fn holds_issuer(&self, sig: &Signature) -> bool {
        let fprs = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        if fprs.is_empty() && ids.is_empty() {
            return true;
        }
        self.keys.iter().any(|k| {
            let mut own = vec![(k.fingerprint(), k.legacy_key_id())];
            own.extend(
                k.public_subkeys
                    .iter()
                    .map(|s| (s.key.fingerprint(), s.key.legacy_key_id())),
            );
            own.iter()
                .any(|(f, id)| fprs.contains(&f) || ids.contains(&id))
        })
    }

    /// The issuer a signature names: its fingerprint, else its key id.
    fn issuer_name(sig: &Signature) -> String {
        match (
            sig.issuer_fingerprint().first(),
            sig.issuer_key_id().first(),
        ) {
            (Some(f), _) => format!("{f:X}"),
            (None, Some(id)) => format!("key id {}", upper_hex(id.as_ref())),
            (None, None) => "an unnamed key".to_string(),
        }
    }

    /// Which key makes `sig` a good signature of `data`; refused, as gpgv
    /// refuses them, when the signature or the key has expired or the key
    /// is revoked.
    fn check(&self, sig: &Signature, data: &[u8]) -> Result<Verified> {
        let now = i64::from(Timestamp::now().as_secs());
        let created = sig
            .created()
            .map(|t| i64::from(t.as_secs()))
            .context("the signature has no creation time")?;
        if let Some(d) = sig
            .signature_expiration_time()
            .map(|d| i64::from(d.as_secs()))
            && d > 0
            && created + d <= now
        {
            bail!(
                "the signature expired on {} (made {})",
                crate::shared::timefmt::rfc2822_utc(created + d),
                crate::shared::timefmt::rfc2822_utc(created)
            );
        }
        for k in &self.keys {
            let key = format!("{:X}", k.fingerprint());
            let mut signer = None;
            if sig.verify(&k.primary_key, data).is_ok() {
                signer = Some(format!("{:X}", k.fingerprint()));
            }
            for sk in &k.public_subkeys {
                if signer.is_none()
                    && sk.verify_bindings(&k.primary_key).is_ok()
                    && sig.verify(&sk.key, data).is_ok()
                {
                    signer = Some(format!("{:X}", sk.key.fingerprint()));
                }
            }
            let Some(fingerprint) = signer else {
                continue;
            };
            if !k.details.revocation_signatures.is_empty() {
                bail!("the key {fingerprint} that made it is revoked");
            }
            let key_created = i64::from(k.primary_key.created_at().as_secs());
            let expiry = k
                .details
                .users
                .iter()
                .flat_map(|u| &u.signatures)
                .filter_map(|s| s.key_expiration_time())
                .map(|d| i64::from(d.as_secs()))
                .filter(|d| *d > 0)
                .map(|d| key_created + d)
                .max();
            if let Some(t) = expiry.filter(|t| *t <= now) {
                bail!(
                    "the key {fingerprint} that made it expired on {}",
                    crate::shared::timefmt::rfc2822_utc(t)
                );
            }
            return Ok(Verified {
                fingerprint,
                key,
                created,
            });
        }
        bail!("no key in {} makes a good signature of it", self.label)
    }

    /// Checks every signature of `sigs` over `data`: a signature by a key
    /// of the keyring must be good (a bad, expired or revoked one refuses
    /// the whole, as gpgv and apt refuse it); one by a key the keyring does
    /// not hold is only named.
    fn check_all(&self, sigs: &[Signature], data: &[u8]) -> Result<Signatures> {
        let mut out = Signatures::default();
        for (i, sig) in sigs.iter().enumerate() {
            // Named by its issuer, as gpgv finds the key: one the keyring
            // does not hold is not tried against the keys it does.
            if !self.holds_issuer(sig) {
                out.unknown.push(Keyring::issuer_name(sig));
                continue;
            }
            match self.check(sig, data) {
                Ok(v) => out.good.push(v),
                Err(e) if sigs.len() == 1 => return Err(e),
                Err(e) => {
                    return Err(e.context(format!(
                        "signature {} of {} (by {})",
                        i + 1,
                        sigs.len(),
                        Keyring::issuer_name(sig)
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Checks every signature of a detached signature file (binary, or
    /// armored with its CRC24 checked as gpgv does) over `data`; see
    /// [`read_detached`] for the forms refused. The caller decides how
    /// many signers it needs ([`Signatures::require`]).
    pub fn check_detached(&self, data: &[u8], signature: &[u8]) -> Result<Signatures> {
        let sigs = read_detached(signature)?;
        self.check_all(&sigs, data)
    }

    /// A detached signature of `data` with a good signature by at least one
    /// key of the keyring (and no bad one): who made the first.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<Verified> {
        let checked = self.check_detached(data, signature)?;
        checked.require(1, self)?;
        Ok(checked.good[0].clone())
    }

    /// Checks a cleartext-signed message, as [`Keyring::verify_detached`]
    /// does; returns the signed text (dash escaping undone, ending in a
    /// newline).
    pub fn verify_cleartext(&self, signed: &str) -> Result<String> {
        let (msg, _) = CleartextSignedMessage::from_armor(signed.as_bytes())
            .context("reading the cleartext signature")?;
        let hashed = msg.signed_text();
        self.check_all(msg.signatures(), hashed.as_bytes())
            .and_then(|c| c.require(1, self))
            .with_context(|| format!("no good signature by a key in {}", self.label))?;
        let mut text: String = msg
            .text()
            .split_inclusive('\n')
            .map(|l| l.strip_prefix("- ").unwrap_or(l))
            .collect();
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(key: &str, created: i64) -> Verified {
        Verified {
            fingerprint: key.to_string(),
            key: key.to_string(),
            created,
        }
    }

    #[test]
    fn a_key_that_signed_twice_is_one_signer() {
        let s = Signatures {
            good: vec![good("AA", 1), good("BB", 2), good("AA", 3)],
            unknown: vec!["CC".into()],
        };
        let signers: Vec<(&str, i64)> = s
            .signers()
            .iter()
            .map(|v| (v.key.as_str(), v.created))
            .collect();
        assert_eq!(signers, [("AA", 1), ("BB", 2)]);
        // A subkey's signature counts for its primary key.
        let sub = Signatures {
            good: vec![
                good("AA", 1),
                Verified {
                    fingerprint: "A1".into(),
                    key: "AA".into(),
                    created: 2,
                },
            ],
            unknown: Vec::new(),
        };
        assert_eq!(sub.signers().len(), 1);
    }
}
