//! The `command` provider: runs the runbook's `grant` or `revoke` program and
//! treats exit code 0 as success. It owns its `[grant]` keys (`grant`,
//! `revoke`, `timeout`, `env`) and their checks, among them that a program
//! given by a relative path exists next to the runbook and is executable, and
//! everything about the child process:
//! where the program is found, the environment it sees (cleared first, so the
//! bot's own secrets such as `SLACK_BOT_TOKEN` never reach a script), how much
//! of its output is kept, and killing it together with everything it started
//! when it runs past the runbook's `timeout`.
//!
//! The child runs in its own process group so a timeout can kill the whole
//! tree, not just the shell at its top, and it dies with the bot
//! (`process.rs` starts it; a crashed bot's leftovers are killed at the next
//! start before any run is resumed).

use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::process::{self, REQUEST_ID_VAR};
use super::{
    printable, Action, ExitReason, GrantContext, GrantError, GrantFuture, Provider, Services,
    DEFAULT_TIMEOUT,
};
use crate::runbook::{is_env_name, shorten, shorten_path, GrantTable, Located};

/// How much of stdout and of stderr is kept, from the end: enough to explain
/// a failure, small enough that a chatty script cannot exhaust memory.
const OUTPUT_KEPT: usize = 4096;
/// How much of the stderr tail goes into the error people see.
const STDERR_IN_ERROR: usize = 500;
/// After the program exits, how long to wait for its output pipes to close.
/// Something it left running in the background may hold them open forever.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// Used only when the bot itself runs without `PATH`.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A `command` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// The program and its arguments; a relative path starts at the runbook
    /// directory.
    pub grant: Vec<String>,
    pub revoke: Vec<String>,
    pub timeout: Duration,
    /// Names of accessbot's environment variables passed on to the
    /// program, usually its secrets; the environment is otherwise cleared.
    pub env: Vec<String>,
}

/// Runs programs named by a [`CommandSpec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct CommandProvider;

impl CommandProvider {
    pub fn new() -> Self {
        Self
    }
}

impl Provider for CommandProvider {
    const NAME: &'static str = "command";
    const KEYS: &'static [&'static str] = &["grant", "revoke", "timeout", "env"];
    type Spec = CommandSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<CommandSpec> {
        let grant = argv(t, "grant");
        let revoke = argv(t, "revoke");
        let timeout = t.duration_or("timeout", DEFAULT_TIMEOUT);
        let env = match t.string_list("env") {
            Some(list) => {
                let mut names = Vec::new();
                let mut ok = true;
                for name in list.value {
                    if !is_env_name(&name.value) {
                        t.report(
                            name.line,
                            "env",
                            format!(
                                "`{}` is not an environment variable name; use letters, digits and underscores, e.g. BILLING_API_TOKEN",
                                shorten(&name.value)
                            ),
                        );
                        ok = false;
                    } else if !names.contains(&name.value) {
                        names.push(name.value);
                    }
                }
                ok.then_some(names)
            }
            None if t.has("env") => None,
            None => Some(Vec::new()),
        };
        Some(CommandSpec {
            grant: grant?,
            revoke: revoke?,
            timeout: timeout?,
            env: env?,
        })
    }

    fn env_needed(spec: &CommandSpec) -> Vec<String> {
        spec.env.clone()
    }

    fn start(_services: &Services) -> Option<Self> {
        Some(Self::new())
    }

    fn apply<'a>(
        &'a self,
        spec: &'a CommandSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(run_command(spec, action, ctx))
    }
}

/// The program and arguments for `action` (`grant` or `revoke`, the key too).
fn argv(t: &mut GrantTable<'_>, action: &str) -> Option<Vec<String>> {
    let found = t.string_list(action);
    let list = t.require(
        action,
        found,
        &format!(
            r#"add {action} = ["./scripts/billing.sh", "{action}"], the program that does the {action} and its arguments"#
        ),
    )?;
    let Some(program) = list.value.first() else {
        t.report(
            list.line,
            action,
            format!(r#"is empty; give the program and its arguments, e.g. {action} = ["./scripts/billing.sh", "{action}"]"#),
        );
        return None;
    };
    if program.value.trim().is_empty() {
        t.report(
            program.line,
            action,
            "the program name is empty; write the path of the program first",
        );
        return None;
    }
    if let Some(dir) = t.runbook_dir() {
        if let Some(problem) = program_problem(program, dir) {
            t.report(program.line, action, problem);
            return None;
        }
    }
    Some(list.value.into_iter().map(|a| a.value).collect())
}

/// Why a program given by a relative path cannot run from the runbook
/// directory, if it cannot. Bare names are looked up on PATH and absolute
/// paths live on the production host, so both are left to run time.
fn program_problem(program: &Located<String>, dir: &Path) -> Option<String> {
    let path = Path::new(&program.value);
    if path.is_absolute() || !program.value.contains('/') {
        return None;
    }
    let full = dir.join(path.strip_prefix("./").unwrap_or(path));
    let shown = shorten(&program.value);
    match fs::metadata(&full) {
        Err(_) => Some(format!(
            "`{shown}` does not exist ({} was not found); relative paths start at the runbook directory",
            shorten_path(&full)
        )),
        Ok(meta) if !meta.is_file() => Some(format!("`{shown}` is not a file")),
        Ok(meta) if !is_executable(&meta) => Some(format!(
            "`{shown}` is not executable; run chmod +x {}",
            shorten_path(&full)
        )),
        Ok(_) => None,
    }
}

fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[tracing::instrument(
    skip_all,
    fields(provider = "command", request_id = %ctx.request_id, runbook = %ctx.runbook_id, %action)
)]
async fn run_command(
    spec: &CommandSpec,
    action: Action,
    ctx: &GrantContext,
) -> Result<(), GrantError> {
    let CommandSpec {
        grant,
        revoke,
        timeout,
        env,
    } = spec;
    let argv = match action {
        Action::Grant => grant,
        Action::Revoke => revoke,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(GrantError::Misconfigured {
            provider: CommandProvider::NAME,
            problem: format!("the `{action}` command is empty"),
        });
    };

    // Absolute, because the program path is joined to it and the child
    // changes into it before exec: a relative directory would apply twice.
    let runbook_dir =
        std::path::absolute(&ctx.runbook_dir).unwrap_or_else(|_| ctx.runbook_dir.clone());
    let program_path = resolve_program(program, &runbook_dir);

    let mut command = Command::new(&program_path);
    command
        .args(args)
        .current_dir(&runbook_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    set_environment(&mut command, env, action, ctx);

    let started = Instant::now();
    let result = match process::spawn(command).await {
        Err(source) => Err(GrantError::Spawn {
            program: program_path,
            runbook_dir,
            source,
        }),
        Ok(child) => match supervise(child, *timeout).await {
            None => Err(GrantError::TimedOut {
                what: format!("`{program}` ({action})"),
                after: *timeout,
            }),
            Some(finished) => finished.into_result(program),
        },
    };
    let duration_ms = elapsed_ms(started);
    match &result {
        Ok(()) => {
            tracing::info!(%program, %action, request_id = %ctx.request_id, duration_ms, "grant command succeeded")
        }
        Err(error) => {
            tracing::warn!(%program, %action, request_id = %ctx.request_id, duration_ms, %error, "grant command failed")
        }
    }
    result
}

/// How a program that ended within its timeout ended, and the tails of its output.
struct Finished {
    status: std::io::Result<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Finished {
    fn into_result(self, program: &str) -> Result<(), GrantError> {
        let exit = match self.status {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => exit_reason(status),
            Err(wait_error) => {
                tracing::warn!(error = %wait_error, "could not wait for grant command");
                ExitReason::Unknown
            }
        };
        // Only on failure and only when asked for: stdout may hold whatever
        // the script created, so it never reaches the error people see.
        tracing::debug!(stdout = %printable(&self.stdout), "grant command output");
        Err(GrantError::Failed {
            program: program.to_string(),
            exit,
            stderr_tail: printable(tail_of(&self.stderr, STDERR_IN_ERROR)),
        })
    }
}

/// Waits for the child and collects its output; `None` when it ran past
/// `timeout`, in which case it and its whole process group have been killed.
async fn supervise(mut child: Child, timeout: Duration) -> Option<Finished> {
    let mut group = ProcessGroup::new(child.id());
    let stdout = OutputTail::capture(child.stdout.take());
    let stderr = OutputTail::capture(child.stderr.take());

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status,
        Err(_elapsed) => {
            group.kill();
            // Also directly, in case the group could not be signalled.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(OUTPUT_GRACE, child.wait()).await;
            return None;
        }
    };
    if status.is_ok() {
        // Reaped: from now on the group id may be reused, so never kill it.
        group.disarm();
    }
    Some(Finished {
        status,
        stdout: stdout.finish().await,
        stderr: stderr.finish().await,
    })
}

/// `./scripts/grant.sh` and `scripts/grant.sh` are relative to the runbook
/// directory; a bare name like `aws` is looked up in `PATH`; absolute paths
/// are used as they are.
fn resolve_program(program: &str, runbook_dir: &Path) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && program.contains('/') {
        let rest: PathBuf = path
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        runbook_dir.join(rest)
    } else {
        path.to_path_buf()
    }
}

/// Starts from nothing and adds only what a script needs: the bot's secrets
/// must not be inherited. The variables the runbook names (`passed`) are
/// copied first so they can never override the `ACCESSBOT_*` values.
fn set_environment(command: &mut Command, passed: &[String], action: Action, ctx: &GrantContext) {
    command.env_clear();
    command.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into()),
    );
    if let Some(home) = std::env::var_os("HOME") {
        command.env("HOME", home);
    }
    command.env("LANG", "C.UTF-8");
    for name in passed {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let expires_at = ctx.expires_at_rfc3339();
    let vars: [(&str, &OsStr); 7] = [
        ("ACCESSBOT_ACTION", action.as_str().as_ref()),
        (REQUEST_ID_VAR, ctx.request_id.as_ref()),
        ("ACCESSBOT_RUNBOOK", ctx.runbook_id.as_ref()),
        ("ACCESSBOT_USER_ID", ctx.user_id.as_ref()),
        (
            "ACCESSBOT_USER_EMAIL",
            ctx.user_email.as_deref().unwrap_or("").as_ref(),
        ),
        ("ACCESSBOT_EXPIRES_AT", expires_at.as_ref()),
        ("ACCESSBOT_REASON", ctx.reason.as_ref()),
    ];
    command.envs(vars);
    // The runbook's inputs: `ACCESSBOT_INPUT_TICKET` for `ticket`. Ids are
    // lowercase letters, digits and underscores, so every name is valid.
    for (id, value) in &ctx.inputs {
        command.env(format!("ACCESSBOT_INPUT_{}", id.to_uppercase()), value);
    }
}

fn exit_reason(status: ExitStatus) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Code(code),
        (None, Some(signal)) => ExitReason::Signal(signal),
        (None, None) => ExitReason::Unknown,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The last `max` bytes, starting on a character boundary where the text is UTF-8.
fn tail_of(bytes: &[u8], max: usize) -> &[u8] {
    let mut start = bytes.len().saturating_sub(max);
    let limit = (start + 3).min(bytes.len());
    while start < limit && (bytes[start] & 0b1100_0000) == 0b1000_0000 {
        start += 1;
    }
    &bytes[start..]
}

/// Reads one output pipe to its end in the background, keeping only the
/// last [`OUTPUT_KEPT`] bytes.
struct OutputTail {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl OutputTail {
    fn capture(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> Self {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let reader = pipe.map(|mut pipe| {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 8192];
                loop {
                    match pipe.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
                            kept.extend_from_slice(&chunk[..n]);
                            let excess = kept.len().saturating_sub(OUTPUT_KEPT);
                            kept.drain(..excess);
                        }
                    }
                }
            })
        });
        Self { kept, reader }
    }

    /// Waits up to [`OUTPUT_GRACE`] for the pipe to close, then returns what was kept.
    async fn finish(mut self) -> Vec<u8> {
        if let Some(mut reader) = self.reader.take() {
            if tokio::time::timeout(OUTPUT_GRACE, &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
        }
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for OutputTail {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

/// The child's process group, killed when a run times out or is abandoned
/// (the future dropped), so nothing the script started outlives it.
struct ProcessGroup {
    /// `None` once killed or once the leader was reaped, after which the id
    /// may belong to someone else.
    id: Option<u32>,
}

impl ProcessGroup {
    fn new(id: Option<u32>) -> Self {
        Self { id }
    }

    fn disarm(&mut self) {
        self.id = None;
    }

    fn kill(&mut self) {
        let Some(id) = self.id.take() else { return };
        if !process::kill_group(id) {
            // The group is already gone: nothing left to kill.
            tracing::debug!(process_group = id, "no process left in the group to kill");
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::fixture::{check, edit};

    #[test]
    fn reports_bad_command_keys() {
        check(
            &edit("[\"./scripts/billing.sh\", \"revoke\"]", "[]"),
            "grant.revoke",
            "is empty",
        );
        check(
            &edit(
                "provider = \"command\"",
                "provider = \"command\"\nenv = [\"NOT-A-NAME\"]",
            ),
            "grant.env",
            "is not an environment variable name",
        );
    }

    #[test]
    fn resolves_programs() {
        let dir = Path::new("/srv/runbooks");
        let check = |program: &str, expected: &str| {
            assert_eq!(
                resolve_program(program, dir),
                PathBuf::from(expected),
                "{program}"
            )
        };
        check("./scripts/grant.sh", "/srv/runbooks/scripts/grant.sh");
        check("scripts/grant.sh", "/srv/runbooks/scripts/grant.sh");
        check("../bin/grant", "/srv/runbooks/../bin/grant");
        check("/usr/local/bin/grant", "/usr/local/bin/grant");
        check("aws", "aws");
    }

    #[test]
    fn tail_starts_on_a_character_boundary() {
        assert_eq!(tail_of(b"hello", 10), b"hello");
        assert_eq!(tail_of(b"hello", 3), b"llo");
        // "é" is two bytes; cutting inside it skips the orphaned byte.
        assert_eq!(tail_of("aéb".as_bytes(), 2), b"b");
        assert_eq!(tail_of("aéb".as_bytes(), 3), "éb".as_bytes());
    }
}
