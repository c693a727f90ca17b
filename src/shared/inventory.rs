//! `inventory.toml`: which seed and payload belong to which VM, so a clone
//! without its seed disc finds itself by MAC or SMBIOS UUID.

use std::fmt::Write as _;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::shared::role::Role;

/// One host in `inventory.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryHost {
    pub name: String,
    pub role: Role,
    pub ip: std::net::Ipv4Addr,
    pub mac: Option<String>,
    pub uuid: Option<String>,
    pub instance_id: String,
    /// Relative to the bundle.
    pub seed: String,
    /// Relative to the bundle.
    pub payload: String,
}

/// `inventory.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub cluster: String,
    #[serde(rename = "host")]
    pub hosts: Vec<InventoryHost>,
}

impl Inventory {
    pub fn to_toml(&self) -> Result<String> {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# airlock inventory of cluster {}: which seed and payload belong to which VM.\n# A clone without its seed disc finds itself here by MAC or SMBIOS UUID.",
            self.cluster
        );
        s.push_str(&toml::to_string(self)?);
        Ok(s)
    }

    pub fn parse(text: &str) -> Result<Inventory> {
        Ok(toml::from_str(text)?)
    }
}
