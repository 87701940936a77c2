//! Running host commands (`docker`, `nsenter`, the cluster scripts) with a deadline and their
//! output captured, and a log of every command a scenario ran.
//!
//! Invariants:
//! - [`run`] never outlives its deadline: the child gets its own process group, and on
//!   timeout the whole group (a script and the commands it started, and only those) is
//!   killed. Output is read on threads, so a chatty child cannot block on a full pipe.
//! - [`CommandLog::cmd`] records every command with its wall-clock time (UTC, comparable with
//!   the nodes' own log timestamps), duration and outcome; a failure is also recorded as a
//!   problem, for the scenario to fail on with a report, instead of a panic mid-run.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The deadline of one fault-injection command.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout and stderr, trimmed, for messages.
    pub fn text(&self) -> String {
        let mut s = self.stdout.trim().to_string();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push_str(" | ");
            }
            s.push_str(self.stderr.trim());
        }
        s
    }
}

/// Runs a command to completion with an optional stdin, killing it after `limit`.
pub fn run(
    program: &str,
    args: &[&str],
    dir: Option<&Path>,
    stdin: Option<&str>,
    limit: Duration,
) -> Result<Out, String> {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("{what}: writing stdin: {e}"))?;
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                // SAFETY: signalling the process group this function created for the child.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                break Err(format!("{what}: still running after {limit:?}, killed"));
            }
            Err(e) => break Err(format!("{what}: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = status?;
    Ok(Out {
        ok: status.success(),
        stdout,
        stderr,
    })
}

/// `docker args…` in the current directory, without stdin, killed after `limit`.
pub fn docker(args: &[&str], limit: Duration) -> Result<Out, String> {
    run("docker", args, None, None, limit)
}

/// Finds a host tool on PATH or in the sbin directories (root's PATH may lack them).
pub fn tool(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.map(|p| p.display().to_string())
}

/// Wall-clock time of day, UTC, to the millisecond (the nodes log in UTC too).
pub fn wall_clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}

/// Every host command a scenario ran, and the faults that failed to apply or showed no effect.
#[derive(Default)]
pub struct CommandLog {
    /// Wall-clock time, command, duration, outcome; and notes such as packet counters.
    actions: Mutex<Vec<String>>,
    /// Drained by [`CommandLog::take_problems`].
    problems: Mutex<Vec<String>>,
}

impl CommandLog {
    /// Runs a host command off the async workers, with [`CMD_TIMEOUT`], and logs it.
    /// `None` if it could not run or failed (then also recorded as a problem).
    pub async fn cmd(
        &self,
        program: &str,
        args: Vec<String>,
        stdin: Option<String>,
    ) -> Option<Out> {
        let at = wall_clock();
        let began = Instant::now();
        let line = format!("{program} {}", args.join(" "));
        let program = program.to_string();
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&program, &args, None, stdin.as_deref(), CMD_TIMEOUT)
        })
        .await
        .unwrap_or_else(|e| Err(format!("task: {e}")));
        let took = began.elapsed().as_millis();
        let (result, ok) = match &out {
            Ok(o) if o.ok => ("ok".to_string(), true),
            Ok(o) => (format!("FAILED: {}", o.text()), false),
            Err(e) => (format!("FAILED: {e}"), false),
        };
        self.note(format!("{at} {line} ({took} ms) {result}"));
        if !ok {
            self.problem(format!("`{line}` {result}"));
        }
        out.ok().filter(|o| o.ok)
    }

    /// `docker args…` through [`CommandLog::cmd`]; whether it succeeded.
    pub async fn docker(&self, args: &[&str]) -> bool {
        let args = args.iter().map(|s| s.to_string()).collect();
        self.cmd("docker", args, None).await.is_some()
    }

    /// Adds a line to the log.
    pub fn note(&self, line: String) {
        self.actions.lock().expect("actions lock").push(line);
    }

    /// Records evidence that a fault did not take hold (the scenario fails on it).
    pub fn problem(&self, p: String) {
        eprintln!("docker fault problem: {p}");
        self.problems.lock().expect("problems lock").push(p);
    }

    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().expect("problems lock"))
    }

    /// The log, one command a line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for a in self.actions.lock().expect("actions lock").iter() {
            out.push_str(a);
            out.push('\n');
        }
        out
    }
}
