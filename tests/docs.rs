//! Man pages and shell completions, generated from the clap definitions and
//! kept in `docs/`. This test fails when they drift from the code;
//! `just docs` (AIRLOCK_UPDATE_DOCS=1) writes them anew.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use clap::CommandFactory;

fn man_pages(cmd: clap::Command, out: &mut BTreeMap<String, Vec<u8>>) {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let page = cmd.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf).unwrap();
        out.insert(format!("man/{name}.1"), buf);
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &name, out);
        }
    }
    let mut cmd = cmd;
    cmd.build();
    walk(&cmd, "", out);
}

fn completions(cmd: clap::Command, out: &mut BTreeMap<String, Vec<u8>>) {
    use clap_complete::Shell;
    let name = cmd.get_name().to_string();
    for (shell, file) in [
        (Shell::Bash, format!("completions/{name}.bash")),
        (Shell::Zsh, format!("completions/_{name}")),
        (Shell::Fish, format!("completions/{name}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut buf);
        out.insert(file, buf);
    }
}

fn generated() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for cmd in [
        airlock::build::cli::Cli::command(),
        airlock::vm::cli::Cli::command(),
    ] {
        man_pages(cmd.clone(), &mut out);
        completions(cmd, &mut out);
    }
    out
}

#[test]
fn man_pages_and_completions_match_the_code() {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    let files = generated();
    if std::env::var_os("AIRLOCK_UPDATE_DOCS").is_some() {
        let _ = fs::remove_dir_all(docs.join("man"));
        let _ = fs::remove_dir_all(docs.join("completions"));
        for (rel, bytes) in &files {
            let p = docs.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        return;
    }
    let mut drift = Vec::new();
    for (rel, bytes) in &files {
        if fs::read(docs.join(rel)).ok().as_ref() != Some(bytes) {
            drift.push(rel.clone());
        }
    }
    for dir in ["man", "completions"] {
        for e in fs::read_dir(docs.join(dir)).into_iter().flatten().flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if !files.contains_key(&rel) {
                drift.push(format!("{rel} (no longer generated)"));
            }
        }
    }
    assert!(
        drift.is_empty(),
        "docs/ drifted from the code; run `just docs`: {drift:?}"
    );
}

#[test]
fn every_subcommand_has_an_example() {
    fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                check(sub, &p, missing);
            } else if !sub
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("xample"))
            {
                missing.push(p);
            }
        }
    }
    let mut missing = Vec::new();
    check(
        &airlock::build::cli::Cli::command(),
        "airlock",
        &mut missing,
    );
    check(
        &airlock::vm::cli::Cli::command(),
        "airlock-firstboot",
        &mut missing,
    );
    assert!(missing.is_empty(), "--help without an example: {missing:?}");
}
