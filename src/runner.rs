//! The one command runner: every external command goes through here, so
//! each is logged as `+ command line` and every error names the whole command
//! line and what the command said. Secrets go on stdin, never on a command
//! line, and are never logged.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One command to run.
#[derive(Clone)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Fed to the command's stdin (prompts' answers, passwords); never logged.
    pub stdin: Option<String>,
    /// Indexes of arguments shown as `***` (a secret a program insists on
    /// taking as an argument, like the swarm join token).
    pub hidden: Vec<usize>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

/// Quotes a word for a shell-like display.
fn quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

impl Cmd {
    pub fn new(program: &str) -> Cmd {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            hidden: Vec::new(),
        }
    }

    /// An argument that is never logged or shown in errors.
    pub fn secret_arg(mut self, a: impl Into<String>) -> Cmd {
        self.hidden.push(self.args.len());
        self.args.push(a.into());
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Cmd {
        self.env.push((k.to_string(), v.into()));
        self
    }

    /// Answers to feed on stdin (kept out of logs and errors).
    pub fn stdin(mut self, s: impl Into<String>) -> Cmd {
        self.stdin = Some(s.into());
        self
    }

    /// The command line as logged: env settings, program, quoted arguments.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect();
        parts.push(quote(&self.program));
        parts.extend(self.args.iter().enumerate().map(|(i, a)| {
            if self.hidden.contains(&i) {
                "***".to_string()
            } else {
                quote(a)
            }
        }));
        let mut s = parts.join(" ");
        if let Some(input) = &self.stdin {
            s.push_str(&format!(" <({} bytes on stdin)", input.len()));
        }
        s
    }
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs commands; logs `+ line` to stderr unless quiet.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    pub quiet: bool,
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.trim_end().lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Runner {
    /// Runs `cmd` and returns its output whatever its exit status.
    pub fn output(&self, cmd: &Cmd) -> Result<Output> {
        if !self.quiet {
            eprintln!("+ {}", cmd.line());
        }
        let mut c = Command::new(&cmd.program);
        c.args(&cmd.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .with_context(|| format!("starting `{}`", cmd.line()))?;
        if let Some(input) = &cmd.stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // A command that exits before reading all of it is judged by its
            // exit status, not by the broken pipe.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `{}`", cmd.line()))?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `cmd`; a non-zero exit is an error naming the command line and
    /// the end of what it printed.
    pub fn run(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.output(cmd)?;
        if !out.success() {
            let said = tail(&format!("{}\n{}", out.stdout, out.stderr), 12);
            bail!(
                "`{}` failed ({}):\n{}",
                cmd.line(),
                out.code
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or_else(|| "killed by a signal".into()),
                said
            );
        }
        Ok(out)
    }

    /// Runs `cmd` and returns whether it exited 0 (for checks).
    pub fn ok(&self, cmd: &Cmd) -> bool {
        self.output(cmd).map(|o| o.success()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_whole_command_line_but_not_stdin() {
        let r = Runner { quiet: true };
        let e = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "echo oops >&2; exit 3"])
                    .stdin("secret-password"),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "`sh -c 'echo oops >&2; exit 3' <(15 bytes on stdin)` failed (exit status 3)"
            ),
            "{e}"
        );
        assert!(e.contains("oops"));
        assert!(!e.contains("secret-password"));
    }

    #[test]
    fn secret_arguments_are_masked() {
        let c = Cmd::new("install.sh")
            .args(["multi", "manager"])
            .secret_arg("SWMTKN-1-abc");
        assert_eq!(c.line(), "install.sh multi manager ***");
        let r = Runner { quiet: true };
        let out = r
            .run(&Cmd::new("echo").secret_arg("visible-to-the-program"))
            .unwrap();
        assert_eq!(out.stdout, "visible-to-the-program\n");
    }

    #[test]
    fn stdin_reaches_the_command() {
        let r = Runner { quiet: true };
        let out = r
            .run(
                &Cmd::new("sh")
                    .args(["-c", "read a; read b; echo \"$b-$a\""])
                    .stdin("x\ny\n"),
            )
            .unwrap();
        assert_eq!(out.stdout, "y-x\n");
    }

    #[test]
    fn a_missing_program_is_named() {
        let r = Runner { quiet: true };
        let e = r
            .run(&Cmd::new("no-such-program-xyz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("starting `no-such-program-xyz`"), "{e}");
    }
}
