//! Debian control paragraphs (deb822), as shipped: every field, order kept.
//!
//! A small parser instead of `debian-packaging`'s: airlock only needs to keep a
//! paragraph verbatim, read a few fields and append `Filename`/`Size`/`SHA256`,
//! and the crate's reader pulls in much more than that (see README, Choices).

use std::fmt::Write as _;

/// One control paragraph: fields in the order they were written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph {
    /// (name, value) where value keeps its continuation lines verbatim
    /// (`"first line\n second line"`), without the trailing newline.
    fields: Vec<(String, String)>,
}

/// A control text that is not a valid paragraph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl Paragraph {
    /// Parses exactly one paragraph (blank lines before and after allowed).
    pub fn parse(text: &str) -> Result<Paragraph, ParseError> {
        let mut paragraphs = parse_all(text)?;
        match paragraphs.len() {
            1 => Ok(paragraphs.remove(0)),
            0 => Err(ParseError {
                line: 1,
                message: "no fields".into(),
            }),
            n => Err(ParseError {
                line: 1,
                message: format!("{n} paragraphs where one was expected"),
            }),
        }
    }

    /// The value of `name` (field names are case-insensitive), first line and
    /// continuation lines as written.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing its value in place or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The paragraph as text, each field on its line, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (n, v) in &self.fields {
            if v.starts_with('\n') {
                let _ = writeln!(out, "{n}:{v}");
            } else {
                let _ = writeln!(out, "{n}: {v}");
            }
        }
        out
    }
}

/// Parses every paragraph of a deb822 file (a Packages index, say).
///
/// Strict where a value could leak into an index: no NUL or carriage return
/// anywhere, field names of printable ASCII only, no field twice in one
/// paragraph (readers differ on which one counts).
pub fn parse_all(text: &str) -> Result<Vec<Paragraph>, ParseError> {
    let mut out = Vec::new();
    let mut current = Paragraph::default();
    for (i, line) in text.split('\n').enumerate() {
        if let Some(bad) = line.chars().find(|c| *c == '\0' || *c == '\r') {
            return Err(ParseError {
                line: i + 1,
                message: format!(
                    "a {} character",
                    if bad == '\0' {
                        "NUL"
                    } else {
                        "carriage return"
                    }
                ),
            });
        }
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') && current.fields.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.fields.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line);
                }
                None => {
                    return Err(ParseError {
                        line: i + 1,
                        message: "continuation line before any field".into(),
                    });
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError {
                line: i + 1,
                message: format!("expected `Field: value`, found {line:?}"),
            });
        };
        let name_ok = !name.is_empty()
            && !name.starts_with('-')
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !name_ok {
            return Err(ParseError {
                line: i + 1,
                message: format!("bad field name {name:?}"),
            });
        }
        if current.get(name).is_some() {
            return Err(ParseError {
                line: i + 1,
                message: format!("the field {name} is given twice"),
            });
        }
        let value = value.strip_prefix(' ').unwrap_or(value).trim_end();
        current.fields.push((name.to_string(), value.to_string()));
    }
    if !current.fields.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROL: &str = "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nMaintainer: A <a@b>\nDescription: example package\n This is a long\n .\n description.\n";

    #[test]
    fn round_trips_verbatim() {
        let p = Paragraph::parse(CONTROL).unwrap();
        assert_eq!(p.to_text(), CONTROL);
        assert_eq!(p.get("package"), Some("hello"));
        assert_eq!(
            p.get("Description"),
            Some("example package\n This is a long\n .\n description.")
        );
    }

    #[test]
    fn set_appends_and_replaces() {
        let mut p = Paragraph::parse(CONTROL).unwrap();
        p.set("Filename", "pool/main/h/hello/hello_2.10-3_amd64.deb");
        p.set("Version", "2.10-4");
        let text = p.to_text();
        assert!(text.contains("Version: 2.10-4\nArchitecture"));
        assert!(
            text.ends_with("description.\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\n")
        );
    }

    #[test]
    fn empty_first_line_value_is_kept() {
        let text = "Package: x\nConffiles:\n /etc/x 0123\n";
        assert_eq!(Paragraph::parse(text).unwrap().to_text(), text);
    }

    #[test]
    fn several_paragraphs() {
        let all = parse_all("A: 1\n\n\nA: 2\nB: 3\n").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].get("b"), Some("3"));
    }

    #[test]
    fn duplicate_fields_nul_and_cr_are_refused() {
        assert!(
            parse_all("Package: a\nPackage: b\n")
                .unwrap_err()
                .message
                .contains("twice")
        );
        assert!(parse_all("Package: a\0\n").is_err());
        assert!(parse_all("Package: a\rPre-Depends: evil\n").is_err());
        assert!(parse_all("Pack age: a\n").is_err());
        // A second paragraph is a second paragraph, never folded into one.
        assert_eq!(parse_all("Package: a\n\nPackage: b\n").unwrap().len(), 2);
        assert!(Paragraph::parse("Package: a\n\nPackage: b\n").is_err());
    }

    #[test]
    fn garbage_is_an_error_with_line() {
        let e = Paragraph::parse("Package: x\nno colon here\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Paragraph::parse(" leading\n").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
