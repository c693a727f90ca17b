use super::*;

/// A package from a control text without the boilerplate.
fn pkg(origin: &str, text: &str) -> Package {
    let p = Paragraph::parse(&format!("{text}\nArchitecture: amd64\n")).unwrap();
    Package::from_paragraph(&p, origin, &mut relation::Names::default()).unwrap()
}

fn universe(repo: &[&str], base: &[&str]) -> Universe {
    Universe::new(
        repo.iter().map(|t| pkg("main", t)).collect(),
        base.iter().map(|t| pkg(INSTALLED, t)).collect(),
        &["amd64".to_string()],
    )
}

fn check(u: &Universe, wanted: &[&str]) -> Outcome {
    resolve(u, &wanted.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn lines(o: &Outcome) -> Vec<String> {
    o.problems.iter().map(|p| p.to_string()).collect()
}

#[test]
fn a_whole_closure_installs_with_nothing_to_say() {
    let u = universe(
        &[
            "Package: keepalived\nVersion: 1:2.0.10-1\nPre-Depends: init-system-helpers (>= 1.54)\nDepends: libnl-3-200 (>= 3.2.7), libc6",
            "Package: libnl-3-200\nVersion: 3.4.0-1\nDepends: libc6 (>= 2.14)",
            "Package: init-system-helpers\nVersion: 1.56",
        ],
        &["Package: libc6\nVersion: 2.28-10"],
    );
    let o = check(&u, &["keepalived"]);
    assert!(o.problems.is_empty(), "{:?}", lines(&o));
    assert_eq!(
        o.installs,
        [
            "init-system-helpers 1.56 on main",
            "keepalived 1:2.0.10-1 on main",
            "libnl-3-200 3.4.0-1 on main"
        ]
    );
}

#[test]
fn a_missing_package_names_the_chain() {
    let u = universe(
        &["Package: keepalived\nVersion: 2.0\nDepends: libnl-3-200"],
        &[],
    );
    assert_eq!(
        lines(&check(&u, &["keepalived", "docker.io"])),
        [
            "docker.io → not on any disc",
            "keepalived → libnl-3-200 → not on any disc"
        ]
    );
    assert_eq!(check(&u, &["docker.io"]).problems[0].kind, Kind::Missing);
}

#[test]
fn a_wrong_version_says_what_is_there_instead() {
    let u = universe(
        &[
            "Package: keepalived\nVersion: 2.0\nDepends: libnl-3-200 (>= 3.2.7)",
            "Package: libnl-3-200\nVersion: 3.2.2",
        ],
        &[],
    );
    let o = check(&u, &["keepalived"]);
    assert_eq!(
        lines(&o),
        [
            "keepalived → libnl-3-200 (>= 3.2.7) → not on any disc (there is libnl-3-200 3.2.2 on main)"
        ]
    );
    assert_eq!(o.problems[0].kind, Kind::Version);
}

#[test]
fn each_relation_operator_is_honoured() {
    for (dep, ok) in [
        ("x (<< 2)", false),
        ("x (<= 2)", true),
        ("x (= 2)", true),
        ("x (>= 2)", true),
        ("x (>> 2)", false),
        ("x (>> 1.9)", true),
        ("x (<< 2.1)", true),
        ("x (= 2.0-1)", false),
    ] {
        let u = universe(
            &[
                &format!("Package: a\nVersion: 1\nDepends: {dep}"),
                "Package: x\nVersion: 2",
            ],
            &[],
        );
        assert_eq!(check(&u, &["a"]).problems.is_empty(), ok, "{dep}");
    }
}

#[test]
fn apt_takes_the_newest_version_never_an_older_one() {
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: x (<< 2)",
            "Package: x\nVersion: 1",
            "Package: x\nVersion: 2",
        ],
        &[],
    );
    let o = check(&u, &["a"]);
    assert_eq!(o.problems[0].kind, Kind::Version);
    assert!(
        o.problems[0].reason.contains("apt takes the newest, x 2"),
        "{:?}",
        lines(&o)
    );
}

#[test]
fn pre_depends_count_like_depends() {
    let u = universe(
        &["Package: a\nVersion: 1\nPre-Depends: dpkg (>= 1.19)"],
        &["Package: dpkg\nVersion: 1.18"],
    );
    assert_eq!(
        lines(&check(&u, &["a"])),
        ["a → dpkg (>= 1.19) → not on any disc (there is dpkg 1.18 installed in the base)"]
    );
}

#[test]
fn the_base_satisfies_and_a_newer_disc_version_upgrades_it() {
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: libc6 (>= 2.28), zlib1g (>= 1:1.2.11)",
            "Package: zlib1g\nVersion: 1:1.2.11.dfsg-1",
        ],
        &[
            "Package: libc6\nVersion: 2.28-10",
            "Package: zlib1g\nVersion: 1:1.2.8",
        ],
    );
    let o = check(&u, &["a"]);
    assert!(o.problems.is_empty(), "{:?}", lines(&o));
    assert_eq!(
        o.installs,
        ["a 1 on main", "zlib1g 1:1.2.11.dfsg-1 on main"]
    );
}

#[test]
fn the_first_alternative_that_can_be_had_wins() {
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: b (>= 2) | c",
            "Package: b\nVersion: 1",
            "Package: c\nVersion: 1",
        ],
        &[],
    );
    let o = check(&u, &["a"]);
    assert!(o.problems.is_empty(), "{:?}", lines(&o));
    assert_eq!(o.installs, ["a 1 on main", "c 1 on main"]);
    let picked: Vec<(&str, &str, &str, &str)> = o
        .picked
        .iter()
        .map(|p| (&*p.name, &*p.version, &*p.arch, &*p.disc))
        .collect();
    assert_eq!(
        picked,
        [("a", "1", "amd64", "main"), ("c", "1", "amd64", "main")]
    );
    // An alternative already installed is kept.
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: b | c",
            "Package: b\nVersion: 1",
        ],
        &["Package: c\nVersion: 0.1"],
    );
    assert_eq!(check(&u, &["a"]).installs, ["a 1 on main"]);
    // None at all.
    let u = universe(&["Package: a\nVersion: 1\nDepends: b | c"], &[]);
    assert_eq!(
        lines(&check(&u, &["a"])),
        ["a → b | c → none of the alternatives is on any disc"]
    );
}

#[test]
fn virtual_packages_and_versioned_provides() {
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: mail-transport-agent, libfoo-abi (>= 2)",
            "Package: postfix\nVersion: 3.4\nProvides: mail-transport-agent",
            "Package: libfoo2\nVersion: 2.1\nProvides: libfoo-abi (= 2.1)",
        ],
        &[],
    );
    let o = check(&u, &["a"]);
    assert!(o.problems.is_empty(), "{:?}", lines(&o));
    assert_eq!(o.installs.len(), 3);
    // An unversioned Provides does not satisfy a versioned dependency.
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: libfoo-abi (>= 2)",
            "Package: libfoo2\nVersion: 2.1\nProvides: libfoo-abi",
        ],
        &[],
    );
    let o = check(&u, &["a"]);
    assert_eq!(o.problems[0].kind, Kind::Version);
    assert_eq!(o.problems[0].instead, ["libfoo2 2.1 provides libfoo-abi"]);
    // A virtual package asked for by name: one provider is taken, two are
    // a question only the recipe can answer.
    let u = universe(&["Package: postfix\nVersion: 3.4\nProvides: mta"], &[]);
    assert_eq!(check(&u, &["mta"]).installs, ["postfix 3.4 on main"]);
    let u = universe(
        &[
            "Package: postfix\nVersion: 3.4\nProvides: mta",
            "Package: exim4\nVersion: 4.9\nProvides: mta",
        ],
        &[],
    );
    assert_eq!(check(&u, &["mta"]).problems[0].kind, Kind::Ambiguous);
}

#[test]
fn conflicts_and_breaks_between_what_would_be_installed() {
    let u = universe(
        &[
            "Package: a\nVersion: 1\nDepends: b\nConflicts: c",
            "Package: b\nVersion: 1\nDepends: c",
            "Package: c\nVersion: 1",
        ],
        &[],
    );
    let o = check(&u, &["a"]);
    assert_eq!(o.problems[0].kind, Kind::Conflict);
    assert_eq!(
        lines(&o),
        ["a 1 → conflicts with c → c 1 would be installed too"]
    );
    // Breaks, versioned, against the base; the other way round too.
    let u = universe(
        &["Package: a\nVersion: 1\nBreaks: old (<< 2)"],
        &["Package: old\nVersion: 1.5"],
    );
    assert!(lines(&check(&u, &["a"]))[0].contains("apt would remove it"));
    let u = universe(
        &["Package: a\nVersion: 1\nBreaks: old (<< 2)"],
        &["Package: old\nVersion: 2"],
    );
    assert!(check(&u, &["a"]).problems.is_empty());
    let u = universe(
        &["Package: a\nVersion: 1"],
        &["Package: old\nVersion: 2\nConflicts: a"],
    );
    assert_eq!(check(&u, &["a"]).problems[0].kind, Kind::Conflict);
    // A conflict with what a package itself provides is the usual idiom.
    let u = universe(
        &["Package: postfix\nVersion: 3\nProvides: mta\nConflicts: mta"],
        &[],
    );
    assert!(check(&u, &["postfix"]).problems.is_empty());
    // Conflicting with a virtual package another one provides.
    let u = universe(
        &[
            "Package: postfix\nVersion: 3\nProvides: mta\nConflicts: mta",
            "Package: exim4\nVersion: 4\nProvides: mta",
        ],
        &[],
    );
    assert_eq!(
        check(&u, &["postfix", "exim4"]).problems[0].kind,
        Kind::Conflict
    );
}

#[test]
fn other_architectures_and_uninstalled_status_entries_do_not_count() {
    let u = Universe::new(
        vec![pkg("main", "Package: a\nVersion: 1\nDepends: b"), {
            let p = Paragraph::parse("Package: b\nVersion: 1\nArchitecture: i386\n").unwrap();
            Package::from_paragraph(&p, "main", &mut relation::Names::default()).unwrap()
        }],
        vec![],
        &["amd64".to_string()],
    );
    assert_eq!(check(&u, &["a"]).problems[0].kind, Kind::Missing);
    let status = |s: &str| Paragraph::parse(&format!("Package: x\nStatus: {s}\n")).unwrap();
    assert!(is_installed(&status("install ok installed")));
    assert!(is_installed(&status("hold ok installed")));
    assert!(!is_installed(&status("deinstall ok config-files")));
    assert!(!is_installed(&status("install ok half-configured")));
}

#[test]
fn a_malformed_relation_names_the_package_and_field() {
    let p = Paragraph::parse("Package: a\nVersion: 1\nDepends: b (>= )\n").unwrap();
    let e = Package::from_paragraph(&p, "main", &mut relation::Names::default()).unwrap_err();
    assert!(e.starts_with("main: a 1: Depends: "), "{e}");
}
