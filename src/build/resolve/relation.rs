//! Package relationship fields (`Depends`, `Pre-Depends`, `Provides`,
//! `Breaks`, `Conflicts`) as Debian policy 7.1 writes them.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::version::Version;

/// A package name or version as the check holds it: one shared copy of
/// each distinct text ([`Names`]), however many relations name it.
pub type Name = Arc<str>;

/// The distinct names and versions read so far: `libc6` and `2.36` named
/// by thousands of relations are each held once.
#[derive(Debug, Default)]
pub struct Names(HashSet<Name>);

impl Names {
    /// The shared copy of `text`.
    pub fn get(&mut self, text: &str) -> Name {
        if let Some(n) = self.0.get(text) {
            return n.clone();
        }
        let n: Name = Arc::from(text);
        self.0.insert(n.clone());
        n
    }
}

/// One of policy's five relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Earlier,
    EarlierEqual,
    Equal,
    LaterEqual,
    Later,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Earlier,
            "<=" | "<" => Op::EarlierEqual,
            "=" => Op::Equal,
            ">=" | ">" => Op::LaterEqual,
            ">>" => Op::Later,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Earlier => "<<",
            Op::EarlierEqual => "<=",
            Op::Equal => "=",
            Op::LaterEqual => ">=",
            Op::Later => ">>",
        }
    }

    /// Whether `have OP want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        let o = have.cmp(want);
        match self {
            Op::Earlier => o.is_lt(),
            Op::EarlierEqual => o.is_le(),
            Op::Equal => o.is_eq(),
            Op::LaterEqual => o.is_ge(),
            Op::Later => o.is_gt(),
        }
    }
}

/// `name [(op version)]`; an architecture qualifier (`:any`) is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: Name,
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether version `v` of a package called `self.name` satisfies it.
    pub fn accepts(&self, v: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, want)| op.holds(v, want))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({} {v})", self.name, op.as_str()),
            None => f.write_str(&self.name),
        }
    }
}

/// One entry of a dependency field: alternatives, `a | b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternatives(pub Vec<Relation>);

impl fmt::Display for Alternatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A relationship field: comma-separated entries, each with alternatives.
pub fn parse_field(text: &str, names: &mut Names) -> Result<Vec<Alternatives>, String> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let alts = entry
            .split('|')
            .map(|r| parse_relation(r, names))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Alternatives(alts));
    }
    Ok(out)
}

/// `name[:arch] [(op version)]`; architecture lists and build profiles
/// (`[amd64]`, `<!nocheck>`) belong to source packages and are refused.
fn parse_relation(text: &str, names: &mut Names) -> Result<Relation, String> {
    let text = text.trim();
    let (head, constraint) = match text.split_once('(') {
        Some((head, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("{text:?}: unclosed version constraint"))?
                .trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = Op::parse(&inner[..split])
                .ok_or_else(|| format!("{text:?}: unknown relation {:?}", &inner[..split]))?;
            let version = inner[split..].trim();
            if version.is_empty() {
                return Err(format!("{text:?}: no version after {}", op.as_str()));
            }
            (head.trim(), Some((op, Version::from(names.get(version)))))
        }
        None => (text, None),
    };
    let name = head.split(':').next().unwrap_or("").trim();
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !name_ok {
        return Err(format!("{text:?}: not a package name"));
    }
    Ok(Relation {
        name: names.get(name),
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_with_alternatives_constraints_and_qualifiers() {
        let f = parse_field(
            "libc6 (>= 2.28), a | b (<< 2:1.0~), python3:any,\n perl (= 5.28.1-6)",
            &mut Names::default(),
        )
        .unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].to_string(), "libc6 (>= 2.28)");
        assert_eq!(f[1].to_string(), "a | b (<< 2:1.0~)");
        assert_eq!(f[2].to_string(), "python3");
        assert_eq!(f[3].0[0].constraint.as_ref().unwrap().0, Op::Equal);
        assert!(parse_field("", &mut Names::default()).unwrap().is_empty());
    }

    #[test]
    fn a_name_or_version_named_again_is_the_same_copy() {
        let mut names = Names::default();
        let a = parse_field("libc6 (>= 2.36), zlib1g", &mut names).unwrap();
        let b = parse_field("libc6 (>= 2.36) | zlib1g", &mut names).unwrap();
        assert!(Arc::ptr_eq(&a[0].0[0].name, &b[0].0[0].name));
        assert!(Arc::ptr_eq(&a[1].0[0].name, &b[0].0[1].name));
        let version = |f: &Vec<Alternatives>| f[0].0[0].constraint.clone().unwrap().1;
        assert_eq!(version(&a).as_str(), "2.36");
        assert!(std::ptr::eq(version(&a).as_str(), version(&b).as_str()));
        assert_eq!(names.0.len(), 3);
    }

    #[test]
    fn every_relation_kind_holds_as_policy_says() {
        let v = Version::new;
        let rel = |s: &str| {
            parse_field(s, &mut Names::default())
                .unwrap()
                .remove(0)
                .0
                .remove(0)
        };
        for (r, yes, no) in [
            ("x (<< 2)", "1.9", "2"),
            ("x (<= 2)", "2", "2.0.1"),
            ("x (= 2-1)", "2-1", "2-2"),
            ("x (>= 2)", "2", "1.9"),
            ("x (>> 2)", "2.0.1", "2"),
            ("x (> 2)", "2", "1"),
            ("x (< 2)", "2", "3"),
        ] {
            assert!(rel(r).accepts(&v(yes)), "{r} accepts {yes}");
            assert!(!rel(r).accepts(&v(no)), "{r} refuses {no}");
        }
        assert!(rel("x").accepts(&v("0")));
    }

    #[test]
    fn nonsense_is_an_error_naming_it() {
        assert!(
            parse_field("a (>= )", &mut Names::default())
                .unwrap_err()
                .contains("no version")
        );
        assert!(
            parse_field("a (!= 1)", &mut Names::default())
                .unwrap_err()
                .contains("unknown relation")
        );
        assert!(
            parse_field("a (>= 1", &mut Names::default())
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            parse_field("Bad_Name", &mut Names::default())
                .unwrap_err()
                .contains("not a package name")
        );
    }
}
