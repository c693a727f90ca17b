//! Pure text edits of configuration files (`&str -> String`), so they are
//! tested on literals and idempotent by construction.

/// Adds `lines` to a pg_hba.conf that does not have them yet (compared with
/// whitespace collapsed), above any existing line so they take precedence.
pub fn pg_hba_with(text: &str, lines: &str) -> String {
    let norm = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let have: Vec<String> = text.lines().map(norm).collect();
    let missing: Vec<&str> = lines
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter(|l| !have.contains(&norm(l)))
        .collect();
    if missing.is_empty() {
        return text.to_string();
    }
    let mut out = String::from("# airlock: streaming replication between the DB pair\n");
    for l in missing {
        out.push_str(l.trim());
        out.push('\n');
    }
    out.push_str(text);
    out
}

/// Sets `key = value` in a postgresql.conf: replaces an active setting,
/// else appends one.
pub fn pg_conf_with(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let is_key = t
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_key && !found {
            found = true;
            out.push_str(&format!("{key} = {value}\n"));
        } else if is_key {
            out.push_str(&format!("# {line}  (airlock: set above)\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("{key} = {value}\t# airlock\n"));
    }
    out
}

/// The value of an active `key = value` in a postgresql.conf.
pub fn pg_conf_get(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let t = line.trim_start();
        let rest = t.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        let v = rest.split('#').next()?.trim().trim_matches('\'');
        Some(v.to_string())
    })
}

/// The swarm join token in the vendor installer's output.
pub fn find_swarm_token(output: &str) -> Option<String> {
    output
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .find(|w| w.starts_with(crate::shared::paths::SWARM_TOKEN_PREFIX) && w.len() > 20)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_hba_lines_are_added_once_and_first() {
        let conf = "local all postgres peer\nhost all all 127.0.0.1/32 md5\n";
        let lines = "# airlock\nhost replication dbuser 10.0.0.2/32 md5\n";
        let once = pg_hba_with(conf, lines);
        assert!(once.starts_with("# airlock: streaming replication between the DB pair\nhost replication dbuser 10.0.0.2/32 md5\nlocal all"));
        assert_eq!(pg_hba_with(&once, lines), once);
        let spaced = "host  replication   dbuser 10.0.0.2/32   md5\n";
        assert_eq!(pg_hba_with(spaced, lines), spaced);
    }

    #[test]
    fn pg_conf_sets_and_reads() {
        let conf = "#listen_addresses = 'localhost'\nport = 5432\n";
        let set = pg_conf_with(conf, "listen_addresses", "'*'");
        assert!(
            set.ends_with("listen_addresses = '*'\t# airlock\n"),
            "{set}"
        );
        assert_eq!(pg_conf_get(&set, "listen_addresses").as_deref(), Some("*"));
        assert_eq!(
            pg_conf_with(&set, "listen_addresses", "'*'")
                .matches("listen_addresses = '*'")
                .count(),
            1
        );
        let twice = "listen_addresses = 'a'\nlisten_addresses='b'\n";
        let fixed = pg_conf_with(twice, "listen_addresses", "'*'");
        assert_eq!(
            pg_conf_get(&fixed, "listen_addresses").as_deref(),
            Some("*")
        );
        assert_eq!(
            pg_conf_get("port = 5433 # x\n", "port").as_deref(),
            Some("5433")
        );
    }

    #[test]
    fn the_token_is_found_in_the_installer_output() {
        let out = "[space-install] deploying\nTo add a manager, run on it:\n    sudo bash install.sh multi manager 10.0.0.5 SWMTKN-1-2p07a7hfq37e8x1y34xm7rongk1euu2xbnpwxz55vulos8fpqt-86x8dsu9q06o3x5m68v6bfwsh\n";
        assert_eq!(
            find_swarm_token(out).as_deref(),
            Some(
                "SWMTKN-1-2p07a7hfq37e8x1y34xm7rongk1euu2xbnpwxz55vulos8fpqt-86x8dsu9q06o3x5m68v6bfwsh"
            )
        );
        assert_eq!(find_swarm_token("no token here"), None);
    }
}
