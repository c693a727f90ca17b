//! The one command runner: every external command, pause and network probe
//! of the runner goes through [`Exec`], so each command is logged as
//! `+ command line` and every error names the whole command line and what
//! the command said. Secrets go on stdin, never on a command line, and are
//! never logged.
//!
//! [`System`] acts on the machine. Unit tests use the recording fake
//! (`Recording`, test builds only): it answers from a script and records
//! what a step would have run, in order, with secrets masked. This is the
//! one seam between the steps and the world; the steps have no test mode.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

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

    /// The same command under coreutils' `timeout`: killed after `secs`
    /// seconds (exit status 124), its environment, stdin and hidden
    /// arguments kept.
    pub fn bounded(self, secs: u64) -> Cmd {
        let mut args = vec![secs.to_string(), self.program];
        args.extend(self.args);
        Cmd {
            program: "timeout".to_string(),
            args,
            env: self.env,
            stdin: self.stdin,
            hidden: self.hidden.into_iter().map(|i| i + 2).collect(),
        }
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
#[derive(Debug, Clone, Default)]
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

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.trim_end().lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// What a TCP connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It opened: something listens there.
    Up,
    /// Refused: the host answered, nothing listens on the port.
    Down(String),
    /// No answer (timed out, no route): the host or the path is gone.
    Unreachable(String),
}

impl Probe {
    /// Whether the host itself answered (up or refused).
    pub fn host_answered(&self) -> bool {
        !matches!(self, Probe::Unreachable(_))
    }

    /// One word and the reason, for answers and logs.
    pub fn say(&self) -> String {
        match self {
            Probe::Up => "up".into(),
            Probe::Down(why) => format!("down {why}"),
            Probe::Unreachable(why) => format!("unreachable {why}"),
        }
    }

    /// Reads what [`Probe::say`] wrote.
    pub fn parse(text: &str) -> Option<Probe> {
        let text = text.trim();
        let (word, why) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "up" => Some(Probe::Up),
            "down" => Some(Probe::Down(why.into())),
            "unreachable" => Some(Probe::Unreachable(why.into())),
            _ => None,
        }
    }
}

/// `out` of `cmd` when it exited 0; otherwise an error naming the command
/// line and the end of what it printed.
pub fn succeeded(cmd: &Cmd, out: Output) -> Result<Output> {
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

/// What the runner does to the world besides writing files under its root.
/// `Sync`, so the questions to several hosts can be asked at once.
pub trait Exec: Sync {
    /// Runs `cmd` and returns its output whatever its exit status.
    fn output(&self, cmd: &Cmd) -> Result<Output>;

    /// Pauses this run (backing off in a wait, spacing joins).
    fn sleep(&self, d: Duration);

    /// A monotonic clock for the bounds of waits.
    fn now(&self) -> Duration;

    /// Tries a TCP connection to `addr` for at most `timeout`.
    fn probe(&self, addr: SocketAddr, timeout: Duration) -> Probe;

    /// Whether a TCP connection to `addr` opens within `timeout`.
    fn connects(&self, addr: SocketAddr, timeout: Duration) -> bool {
        self.probe(addr, timeout) == Probe::Up
    }

    /// Runs `cmd`; a non-zero exit is an error naming the command line and
    /// the end of what it printed.
    fn run(&self, cmd: &Cmd) -> Result<Output> {
        succeeded(cmd, self.output(cmd)?)
    }

    /// Runs `cmd` and returns whether it exited 0 (for checks).
    fn ok(&self, cmd: &Cmd) -> bool {
        self.output(cmd).map(|o| o.success()).unwrap_or(false)
    }
}

/// Runs commands on this machine; logs `+ line` to stderr unless quiet.
#[derive(Debug, Clone, Default)]
pub struct System {
    pub quiet: bool,
}

impl Exec for System {
    fn output(&self, cmd: &Cmd) -> Result<Output> {
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

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn now(&self) -> Duration {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }

    fn probe(&self, addr: SocketAddr, timeout: Duration) -> Probe {
        use std::io::ErrorKind::ConnectionRefused;
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => Probe::Up,
            Err(e) if e.kind() == ConnectionRefused => Probe::Down(format!("({e})")),
            Err(e) => Probe::Unreachable(format!("({e})")),
        }
    }
}

/// The recording fake: answers commands from a script (the first rule whose
/// pattern the command line contains; exit 0 and no output otherwise) and
/// records every command line (secrets masked), pause and probe in order.
#[cfg(test)]
#[derive(Default)]
pub struct Recording {
    rules: std::sync::Mutex<Vec<Rule>>,
    log: std::sync::Mutex<Vec<String>>,
    open_ports: std::sync::Mutex<Vec<SocketAddr>>,
    refused_ports: std::sync::Mutex<Vec<SocketAddr>>,
    /// Time advances only when the fake sleeps.
    clock: std::sync::Mutex<Duration>,
}

#[cfg(test)]
struct Rule {
    pattern: String,
    /// Answers in turn; the last one repeats.
    outputs: Vec<Output>,
}

#[cfg(test)]
impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Commands whose line contains `pattern` exit `code` printing `stdout`.
    pub fn on(&self, pattern: &str, code: i32, stdout: &str) -> &Recording {
        self.on_seq(pattern, &[(code, stdout)])
    }

    /// Like [`Recording::on`], answering each call with the next of
    /// `answers` (the last one repeats).
    pub fn on_seq(&self, pattern: &str, answers: &[(i32, &str)]) -> &Recording {
        let failed = format!("{pattern}: failed");
        let outputs = answers.iter().map(|(code, out)| Output {
            code: Some(*code),
            stdout: out.to_string(),
            stderr: if *code == 0 {
                String::new()
            } else {
                failed.clone()
            },
        });
        self.rule(pattern, outputs.collect())
    }

    /// Commands whose line contains `pattern` exit `code` saying `stderr`.
    pub fn on_stderr(&self, pattern: &str, code: i32, stderr: &str) -> &Recording {
        self.on_stderr_seq(pattern, &[(code, stderr)])
    }

    /// Like [`Recording::on_stderr`], answering each call with the next of
    /// `answers` (the last one repeats).
    pub fn on_stderr_seq(&self, pattern: &str, answers: &[(i32, &str)]) -> &Recording {
        let outputs = answers.iter().map(|(code, err)| Output {
            code: Some(*code),
            stdout: String::new(),
            stderr: err.to_string(),
        });
        self.rule(pattern, outputs.collect())
    }

    /// Answers in turn, each with its exit status, stdout and stderr.
    pub fn on_outputs(&self, pattern: &str, answers: &[(i32, &str, &str)]) -> &Recording {
        let outputs = answers.iter().map(|(code, out, err)| Output {
            code: Some(*code),
            stdout: out.to_string(),
            stderr: err.to_string(),
        });
        self.rule(pattern, outputs.collect())
    }

    /// Later rules win: a test refines the defaults it set first.
    fn rule(&self, pattern: &str, outputs: Vec<Output>) -> &Recording {
        let rule = Rule {
            pattern: pattern.to_string(),
            outputs,
        };
        self.rules.lock().unwrap().insert(0, rule);
        self
    }

    /// TCP connections to `addr` are refused (the host is there).
    pub fn refuse(&self, addr: SocketAddr) -> &Recording {
        self.refused_ports.lock().unwrap().push(addr);
        self
    }

    /// TCP connections to `addr` open.
    pub fn open(&self, addr: SocketAddr) -> &Recording {
        self.open_ports.lock().unwrap().push(addr);
        self
    }

    /// Everything recorded so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The recorded command lines only.
    pub fn commands(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter_map(|l| l.strip_prefix("+ ").map(str::to_string))
            .collect()
    }

    /// Whether some recorded command line contains `needle`.
    pub fn ran(&self, needle: &str) -> bool {
        self.commands().iter().any(|c| c.contains(needle))
    }
}

#[cfg(test)]
impl Exec for Recording {
    fn output(&self, cmd: &Cmd) -> Result<Output> {
        let line = cmd.line();
        self.log.lock().unwrap().push(format!("+ {line}"));
        let mut rules = self.rules.lock().unwrap();
        if let Some(rule) = rules.iter_mut().find(|r| line.contains(&r.pattern)) {
            let out = if rule.outputs.len() > 1 {
                rule.outputs.remove(0)
            } else {
                rule.outputs[0].clone()
            };
            return Ok(out);
        }
        Ok(Output {
            code: Some(0),
            ..Output::default()
        })
    }

    fn sleep(&self, d: Duration) {
        self.log
            .lock()
            .unwrap()
            .push(format!("sleep {}s", d.as_secs()));
        *self.clock.lock().unwrap() += d;
    }

    fn now(&self) -> Duration {
        *self.clock.lock().unwrap()
    }

    fn probe(&self, addr: SocketAddr, _timeout: Duration) -> Probe {
        self.log.lock().unwrap().push(format!("connect {addr}"));
        if self.open_ports.lock().unwrap().contains(&addr) {
            Probe::Up
        } else if self.refused_ports.lock().unwrap().contains(&addr) {
            Probe::Down("(Connection refused)".into())
        } else {
            Probe::Unreachable("(timed out)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_command_keeps_its_environment_and_hides_what_it_hid() {
        let cmd = Cmd::new("psql")
            .env("PGPASSFILE", "/p")
            .secret_arg("Secret-Pw-7")
            .arg("-c")
            .bounded(3);
        let line = cmd.line();
        assert!(line.starts_with("PGPASSFILE=/p timeout 3 psql "), "{line}");
        assert!(!line.contains("Secret-Pw-7"), "{line}");
        assert!(line.ends_with(" -c"), "{line}");
    }

    #[test]
    fn errors_carry_the_whole_command_line_but_not_stdin() {
        let r = System { quiet: true };
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
        let r = System { quiet: true };
        let out = r
            .run(&Cmd::new("echo").secret_arg("visible-to-the-program"))
            .unwrap();
        assert_eq!(out.stdout, "visible-to-the-program\n");
    }

    #[test]
    fn stdin_reaches_the_command() {
        let r = System { quiet: true };
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
        let r = System { quiet: true };
        let e = r
            .run(&Cmd::new("no-such-program-xyz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("starting `no-such-program-xyz`"), "{e}");
    }

    #[test]
    fn the_fake_answers_from_its_script_and_records_in_order() {
        let f = Recording::new();
        f.on("pg_isready", 2, "")
            .on_seq("psql", &[(1, ""), (0, "t\n")]);
        assert!(!f.ok(&Cmd::new("pg_isready").arg("-q")));
        assert!(f.ok(&Cmd::new("hostname").arg("db1")));
        assert!(f.run(&Cmd::new("psql")).is_err());
        assert_eq!(f.run(&Cmd::new("psql")).unwrap().stdout, "t\n");
        assert_eq!(f.run(&Cmd::new("psql")).unwrap().stdout, "t\n");
        f.sleep(Duration::from_secs(15));
        let _ = f.run(&Cmd::new("install.sh").secret_arg("SWMTKN-1-x"));
        assert_eq!(
            f.log(),
            [
                "+ pg_isready -q",
                "+ hostname db1",
                "+ psql",
                "+ psql",
                "+ psql",
                "sleep 15s",
                "+ install.sh ***"
            ]
        );
    }
}
