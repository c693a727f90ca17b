//! Checking OpenPGP signatures against a keyring, as gpgv does: the
//! manifest's detached signature, a disc's Release. (Making them is the
//! builder's `sign`.)

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, Timestamp};

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

/// Checks an armored block's `=XXXX` checksum line, as gpgv does (rpgp's own
/// check is off by default and, when asked for, compares against an empty
/// sum). A block without one is accepted, as gpgv accepts it.
fn armor_checksum(armored: &[u8]) -> Result<()> {
    use base64::Engine;
    let text = std::str::from_utf8(armored).context("the armored signature is not text")?;
    // Nothing before the armor and only line ends after it: whatever else
    // is there, no reader agrees on.
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if !text.starts_with("-----BEGIN ")
        || !trimmed
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("-----END ") && l.ends_with("-----"))
    {
        bail!("the armored signature has text before its BEGIN or after its END line");
    }
    let mut lines = text.lines().map(str::trim_end);
    lines
        .by_ref()
        .find(|l| l.starts_with("-----BEGIN "))
        .context("no armor header")?;
    // Armor headers end with an empty line.
    let mut body = String::new();
    let mut in_headers = true;
    let mut footer_crc = None;
    for l in lines {
        if l.starts_with("-----END ") {
            break;
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
    let Some(c) = footer_crc else {
        return Ok(());
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let data = engine
        .decode(body.as_bytes())
        .context("the armored signature is not valid base64")?;
    let want = engine
        .decode(c.as_bytes())
        .ok()
        .filter(|b| b.len() == 3)
        .context("the armor checksum line is malformed")?;
    let want = u32::from(want[0]) << 16 | u32::from(want[1]) << 8 | u32::from(want[2]);
    if crc24(&data) != want {
        bail!("the armor checksum does not match: the signature was altered or damaged");
    }
    Ok(())
}

/// A good signature: who made it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub fingerprint: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// Public keys to verify against.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    label: String,
}

impl Keyring {
    /// Reads a keyring: binary (`.gpg`, several keys concatenated) or armored
    /// (`.asc`, one or more blocks).
    pub fn load(path: &Path) -> Result<Keyring> {
        let data =
            fs::read(path).with_context(|| format!("reading the keyring {}", path.display()))?;
        Keyring::from_bytes(&data, &path.display().to_string())
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
        Ok(Keyring {
            keys,
            label: label.to_string(),
        })
    }

    /// A keyring of the given public keys.
    pub fn from_keys(keys: Vec<SignedPublicKey>, label: &str) -> Keyring {
        Keyring {
            keys,
            label: label.to_string(),
        }
    }

    /// How many keys the keyring holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
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
                created,
            });
        }
        bail!("no key in {} makes a good signature of it", self.label)
    }

    /// Checks a detached signature (binary, or armored with its CRC24
    /// checked as gpgv does) of `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<Verified> {
        let armored = signature.trim_ascii_start().starts_with(b"-----BEGIN ");
        let sig = if armored {
            armor_checksum(signature)?;
            DetachedSignature::from_armor_single_buf(signature)
                .map(|(s, _)| s)
                .context("reading the armored signature")?
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
            DetachedSignature::from_reader_single(signature)
                .map(|(s, _)| s)
                .context("reading the signature: not an OpenPGP signature")?
        };
        self.check(&sig.signature, data)
    }

    /// Checks a cleartext-signed message; returns the signed text (dash
    /// escaping undone, ending in a newline).
    pub fn verify_cleartext(&self, signed: &str) -> Result<String> {
        let (msg, _) = CleartextSignedMessage::from_armor(signed.as_bytes())
            .context("reading the cleartext signature")?;
        let hashed = msg.signed_text();
        let mut why = None;
        let good = msg
            .signatures()
            .iter()
            .any(|s| match self.check(s, hashed.as_bytes()) {
                Ok(_) => true,
                Err(e) => {
                    why = Some(e);
                    false
                }
            });
        if !good {
            return Err(why.unwrap_or_else(|| anyhow!("no signature")))
                .with_context(|| format!("no good signature by a key in {}", self.label));
        }
        let mut text: String = msg
            .text()
            .split_inclusive('\n')
            .map(|l| l.strip_prefix("- ").unwrap_or(l))
            .collect();
        text.push('\n');
        Ok(text)
    }
}
