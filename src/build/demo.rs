//! `airlock demo`: the main job on built-in media. Synthesises a small main
//! and devel disc (real `.deb` files with real control data, each disc with
//! its own `dists/` index and Release), the vendor-installer stand-in and a
//! recipe of the article's stand, then builds and verifies the bundle.
//!
//! The signing key and the secrets come from fixed seeds and are labelled
//! INSECURE, so two demo runs give identical bundles; never use them at a site.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use rand::SeedableRng;
use sha2::Digest;

use crate::build::repo::control::Paragraph;
use crate::build::repo::deb::{DataFile, build_deb};
use crate::build::secrets::Secrets;
use crate::build::sign::SigningKey;
use crate::shared::hex;

/// The demo's time when `SOURCE_DATE_EPOCH` is not set (2026-01-01).
pub const DEMO_TIME: i64 = 1_767_225_600;
/// The demo key's user id: says what it is wherever the key shows up.
pub const DEMO_KEY_UID: &str =
    "airlock DEMO key - INSECURE, fixed seed, never use at a site <demo@airlock.invalid>";

/// The vendor installer stand-in (the one stand-in of the tests).
pub const VENDOR_INSTALL_SH: &str = include_str!("../../tests/fixtures/vendor-media/install.sh");

/// The demo signing key (fixed seed).
pub fn demo_key() -> Result<SigningKey> {
    SigningKey::generate(
        DEMO_KEY_UID,
        DEMO_TIME,
        *b"airlock-demo-key-INSECURE-000000",
    )
}

/// The demo secrets (fixed seed).
pub fn demo_secrets() -> Result<Secrets> {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*b"airlock-demo-secrets-INSECURE-00");
    let mut ssh = |comment: &str| -> Result<String> {
        let mut k = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519)?;
        k.set_comment(comment);
        Ok(k.to_openssh(ssh_key::LineEnding::LF)?.to_string())
    };
    Ok(Secrets {
        db_password: "demo-INSECURE-password".into(),
        leader_host_key: ssh("demo leader host key (INSECURE)")?,
        token_client_key: ssh("demo token client key (INSECURE)")?,
        // Filled for the plan's hosts by the build, from a fixed seed too.
        host_keys: Default::default(),
        peer_client_key: String::new(),
    })
}

struct DemoPkg {
    name: &'static str,
    arch: &'static str,
    component: &'static str,
    description: &'static str,
}

const MAIN: [DemoPkg; 3] = [
    DemoPkg {
        name: "airlock-demo-base",
        arch: "amd64",
        component: "main",
        description: "demo base package from the main disc",
    },
    DemoPkg {
        name: "airlock-demo-doc",
        arch: "all",
        component: "main",
        description: "demo documentation, architecture-independent",
    },
    DemoPkg {
        name: "airlock-demo-shared",
        arch: "amd64",
        component: "contrib",
        description: "demo package found on both discs with the same bytes",
    },
];

const DEVEL: [DemoPkg; 2] = [
    DemoPkg {
        name: "airlock-demo-devtools",
        arch: "amd64",
        component: "main",
        description: "demo development tools from the devel disc",
    },
    DemoPkg {
        name: "airlock-demo-shared",
        arch: "amd64",
        component: "contrib",
        description: "demo package found on both discs with the same bytes",
    },
];

/// Writes a disc directory: `pool/…/*.deb`, `dists/1.7_x86-64/…/Packages`
/// and a `Release` listing them, as the Astra discs carry.
fn write_disc(dir: &Path, pkgs: &[DemoPkg], time: i64) -> Result<()> {
    let mut indexes: BTreeMap<String, String> = BTreeMap::new();
    for p in pkgs {
        let control = Paragraph::parse(&format!(
            "Package: {}\nVersion: 1.0-1\nArchitecture: {}\nMaintainer: airlock demo <demo@airlock.invalid>\nSection: misc\nPriority: optional\nDescription: {}\n Synthesised by `airlock demo`; it installs one small file.\n",
            p.name, p.arch, p.description
        ))
        .map_err(|e| anyhow::anyhow!("demo control: {e}"))?;
        let doc = format!("{} is a package made by airlock demo.\n", p.name);
        let deb = build_deb(
            &control,
            &[DataFile {
                path: &format!("usr/share/doc/{}/README", p.name),
                mode: 0o644,
                contents: doc.as_bytes(),
            }],
            time as u64,
        )?;
        let rel = format!(
            "pool/{}/{}/{}/{}_1.0-1_{}.deb",
            p.component,
            &p.name[..1],
            p.name,
            p.name,
            p.arch
        );
        let path = dir.join(&rel);
        fs::create_dir_all(path.parent().expect("has a parent"))?;
        fs::write(&path, &deb)?;
        let mut para = control;
        para.set("Filename", rel);
        para.set("Size", deb.len().to_string());
        para.set("SHA256", hex(&sha2::Sha256::digest(&deb)));
        let body = indexes.entry(p.component.to_string()).or_default();
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&para.to_text());
    }
    let suite = dir.join("dists/1.7_x86-64");
    let mut release = String::from(
        "Origin: airlock demo\nLabel: airlock demo disc\nSuite: 1.7_x86-64\nCodename: 1.7_x86-64\nArchitectures: amd64\n",
    );
    let _ = writeln!(
        release,
        "Components: {}",
        indexes.keys().cloned().collect::<Vec<_>>().join(" ")
    );
    release.push_str("SHA256:\n");
    for (comp, body) in &indexes {
        let rel = format!("{comp}/binary-amd64/Packages");
        let p = suite.join(&rel);
        fs::create_dir_all(p.parent().expect("has a parent"))?;
        fs::write(&p, body)?;
        let _ = writeln!(
            release,
            " {} {} {rel}",
            hex(&sha2::Sha256::digest(body.as_bytes())),
            body.len()
        );
    }
    fs::write(suite.join("Release"), release)?;
    Ok(())
}

/// The demo recipe: the article's stand, with the demo media, and the demo
/// discs' packages as what the roles install (the demo discs hold no
/// PostgreSQL, keepalived or Docker), so the build's completeness check
/// passes.
pub fn demo_recipe() -> String {
    include_str!("../../recipes/space-vdi-5.4-ha.toml")
        .replace("../media/1.7.0-main.iso", "media/main")
        .replace("../media/1.7.0-devel.iso", "media/devel")
        .replace("../media/space-dispatcher-5.4.iso", "media/vendor")
        .replacen("\n[database]\n", DEMO_PACKAGES, 1)
}

/// `[packages]` of the demo recipe, before `[database]`.
const DEMO_PACKAGES: &str = "
# The demo discs hold stand-ins only: each role installs those
# (`airlock check recipe.toml` shows the closure).
[packages]
db-master = [\"airlock-demo-base\", \"airlock-demo-shared\"]
db-replica = [\"airlock-demo-base\", \"airlock-demo-shared\"]
leader = [\"airlock-demo-base\", \"airlock-demo-devtools\"]
manager = [\"airlock-demo-base\"]

[database]
";

/// Writes `dir/media/{main,devel,vendor}` and `dir/recipe.toml`.
pub fn write_media(dir: &Path, time: i64) -> Result<()> {
    let media = dir.join("media");
    if media.exists() {
        fs::remove_dir_all(&media)
            .with_context(|| format!("removing the old {}", media.display()))?;
    }
    write_disc(&media.join("main"), &MAIN, time).context("writing the demo main disc")?;
    write_disc(&media.join("devel"), &DEVEL, time).context("writing the demo devel disc")?;
    let vendor = media.join("vendor");
    fs::create_dir_all(&vendor)?;
    fs::write(vendor.join("install.sh"), VENDOR_INSTALL_SH)?;
    fs::write(
        vendor.join("README.txt"),
        "airlock demo: stand-in for the vendor's Space Dispatcher disc.\n",
    )?;
    fs::write(dir.join("recipe.toml"), demo_recipe())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_key_and_secrets_are_fixed() {
        assert_eq!(
            demo_key().unwrap().fingerprint(),
            demo_key().unwrap().fingerprint()
        );
        assert_eq!(demo_secrets().unwrap(), demo_secrets().unwrap());
    }

    #[test]
    fn demo_recipe_points_at_the_demo_media() {
        let r = demo_recipe();
        assert!(r.contains("main = \"media/main\""));
        assert!(r.contains("vendor = \"media/vendor\""));
        let parsed = toml::from_str::<crate::build::recipe::Recipe>(&r).unwrap();
        assert_eq!(parsed.packages.manager.unwrap(), ["airlock-demo-base"]);
    }
}
