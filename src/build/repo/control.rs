//! Debian control paragraphs (deb822), as shipped: every field, order kept.
//!
//! A small parser instead of `debian-packaging`'s: airlock only needs to keep a
//! paragraph verbatim, read a few fields and append `Filename`/`Size`/`SHA256`,
//! and the crate's reader pulls in much more than that (see README, Choices).

/// One control paragraph: fields in the order they were written.
///
/// Held as one string with the fields' bounds, not a string per name and
/// value: a build keeps a paragraph per package to its end, and that was
/// most of its memory that grows with the pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph {
    /// Each field's name then its value, one after the other, the value
    /// with its continuation lines verbatim (`"first line\n second
    /// line"`) and without the trailing newline.
    text: String,
    /// Where each field's name and its value end in `text`, in order.
    ends: Vec<(u32, u32)>,
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

    /// Every field, as (name, value), in order.
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (n, v) = (name_end as usize, value_end as usize);
            let field = (&self.text[start..n], &self.text[n..v]);
            start = v;
            field
        })
    }

    /// Which field is `name` (case-insensitive), and where its value lies.
    fn find(&self, name: &str) -> Option<(usize, std::ops::Range<usize>)> {
        let mut start = 0;
        for (i, &(name_end, value_end)) in self.ends.iter().enumerate() {
            let (n, v) = (name_end as usize, value_end as usize);
            if self.text[start..n].eq_ignore_ascii_case(name) {
                return Some((i, n..v));
            }
            start = v;
        }
        None
    }

    /// The value of `name` (field names are case-insensitive), first line and
    /// continuation lines as written.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).map(|(_, value)| &self.text[value])
    }

    /// Sets `name`, replacing its value in place or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.find(name) {
            Some((i, old)) => self.splice(i, old, &value),
            None => self.push(name, &value),
        }
    }

    /// Appends a field (the caller knows `name` is not there yet).
    fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = offset(self.text.len());
        self.text.push_str(value);
        self.ends.push((name_end, offset(self.text.len())));
    }

    /// Removes `name` if present.
    pub fn remove(&mut self, name: &str) {
        if let Some((i, value)) = self.find(name) {
            let start = i
                .checked_sub(1)
                .map_or(0, |before| self.ends[before].1 as usize);
            self.splice(i, start..value.end, "");
            self.ends.remove(i);
        }
    }

    /// `range` of the text, which ends at field `i`'s value end, replaced
    /// by `with`: that end and every bound after it move by the difference.
    fn splice(&mut self, i: usize, range: std::ops::Range<usize>, with: &str) {
        let (old, new) = (range.len(), with.len());
        let shift = |at: u32| offset(at as usize + new - old);
        self.text.replace_range(range, with);
        self.ends[i].1 = shift(self.ends[i].1);
        for end in &mut self.ends[i + 1..] {
            *end = (shift(end.0), shift(end.1));
        }
    }

    /// The paragraph as text, each field on its line, ending in a newline
    /// (what it displays as).
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for Paragraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, v) in self.fields() {
            if v.starts_with('\n') {
                writeln!(f, "{n}:{v}")?;
            } else {
                writeln!(f, "{n}: {v}")?;
            }
        }
        Ok(())
    }
}

/// A place in a paragraph's text, which parsing keeps under 4 GiB.
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a control paragraph is smaller than 4 GiB")
}

/// Parses every paragraph of a deb822 file (a Packages index, say).
///
/// Strict where a value could leak into an index: no NUL or carriage return
/// anywhere, field names of printable ASCII only, no field twice in one
/// paragraph (readers differ on which one counts).
pub fn parse_all(text: &str) -> Result<Vec<Paragraph>, ParseError> {
    if u32::try_from(text.len()).is_err() {
        return Err(ParseError {
            line: 1,
            message: "a text of 4 GiB or more".into(),
        });
    }
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
        if line.is_empty() {
            if !current.ends.is_empty() {
                out.push(std::mem::take(&mut current).shrunk());
            }
            continue;
        }
        if line.bytes().all(|b| b == b' ' || b == b'\t') {
            // apt reads it as a continuation of the field above, dpkg
            // refuses it: neither ends the paragraph there.
            return Err(ParseError {
                line: i + 1,
                message: "a line of only spaces or tabs (an empty line ends a paragraph; \" .\" is an empty line in a value)".into(),
            });
        }
        if line.starts_with('#') && current.ends.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.ends.last_mut() {
                Some((_, value_end)) => {
                    current.text.push('\n');
                    current.text.push_str(line);
                    *value_end = offset(current.text.len());
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
        // Spaces and tabs only, as dpkg and apt trim: not every Unicode
        // space (a version ending in U+00A0 is not that version).
        let value = value
            .strip_prefix(' ')
            .unwrap_or(value)
            .trim_end_matches([' ', '\t']);
        current.push(name, value);
    }
    if !current.ends.is_empty() {
        out.push(current.shrunk());
    }
    Ok(out)
}

impl Paragraph {
    /// Without the room its text grew into as it was parsed: a build holds
    /// one paragraph per package to its end.
    fn shrunk(mut self) -> Paragraph {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
        self
    }
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

    /// What apt and dpkg read otherwise is refused or kept as they keep it.
    #[test]
    fn a_line_of_spaces_is_refused_and_only_ascii_space_is_trimmed() {
        let e = parse_all("Package: a\nDescription: x\n \nPackage: b\n").unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.message.contains("only spaces or tabs"), "{e:?}");
        assert!(parse_all("Package: a\n\t\n").is_err());
        let p = Paragraph::parse("Package: a\nVersion: 1.0\u{a0}\nArch: all \t\n").unwrap();
        assert_eq!(p.get("Version"), Some("1.0\u{a0}"));
        assert_eq!(p.get("Arch"), Some("all"));
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

    /// A value changed or a field removed in the middle leaves every other
    /// field as it was, before and after it.
    #[test]
    fn set_and_remove_in_the_middle_keep_the_others() {
        let mut p = Paragraph::parse(CONTROL).unwrap();
        p.set("VERSION", "2.10-3+a.much.longer.version");
        p.set("Architecture", "all");
        assert_eq!(p.get("version"), Some("2.10-3+a.much.longer.version"));
        assert_eq!(p.get("Maintainer"), Some("A <a@b>"));
        p.remove("Version");
        p.remove("Package");
        p.remove("Nonesuch");
        assert_eq!(p.get("Version"), None);
        assert_eq!(
            p.to_text(),
            "Architecture: all\nMaintainer: A <a@b>\nDescription: example package\n This is a long\n .\n description.\n"
        );
        p.remove("Description");
        p.set("Description", "short");
        assert_eq!(
            p.to_text(),
            "Architecture: all\nMaintainer: A <a@b>\nDescription: short\n"
        );
        assert_eq!(p, Paragraph::parse(&p.to_text()).unwrap());
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
