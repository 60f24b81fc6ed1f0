//! The processes the `command` provider starts, and how they end with the
//! bot: each child asks the kernel to kill it when the bot dies
//! (`PR_SET_PDEATHSIG`), and at start-up [`stop_leftover_runs`] kills what
//! an earlier bot's runs left behind, so a run resumed after a crash never
//! runs beside the one it replaces.
//!
//! Linux sends the parent-death signal when the *thread* that forked the
//! child ends, not the process. tokio's threads can end while the bot runs
//! (a blocking-pool thread idles out after ten seconds), so children are
//! forked by one thread that lives as long as the bot ([`spawn`]). The
//! signal reaches only the program itself; what it started lives in its
//! process group, which a timeout kills ([`kill_group`]) and the next
//! start-up sweeps.
//!
//! A leftover is recognised by its environment: every run carries
//! `ACCESSBOT_REQUEST_ID`, a random ID no other program has, and what the
//! program starts inherits it. So the sweep needs no record of process IDs
//! (which the kernel reuses) and also finds a run whose bot died before it
//! could have recorded one.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The variable that marks a process as part of a request's provider run.
pub(super) const REQUEST_ID_VAR: &str = "ACCESSBOT_REQUEST_ID";

/// One child to start on the lasting thread, registered with `runtime` so
/// the caller's runtime reaps it.
struct SpawnJob {
    command: Command,
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The lasting thread's queue; `None` when the thread could not be started.
static SPAWNER: OnceLock<Option<Mutex<mpsc::Sender<SpawnJob>>>> = OnceLock::new();

/// Starts `command` in its own process group, killed by the kernel when the
/// bot dies (see the module comment for why from a lasting thread).
pub(super) async fn spawn(mut command: Command) -> io::Result<Child> {
    command.process_group(0);
    die_with_the_bot(&mut command);
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<SpawnJob>();
        let started = std::thread::Builder::new()
            .name("accessbot-spawner".into())
            .spawn(move || {
                for mut job in queue {
                    let _runtime = job.runtime.enter();
                    let _ = job.reply.send(job.command.spawn());
                }
            });
        match started {
            Ok(_) => Some(Mutex::new(jobs)),
            Err(error) => {
                tracing::error!(%error, "could not start the thread that starts provider programs; starting them from worker threads, which a crash may outlive");
                None
            }
        }
    });
    let Some(jobs) = spawner else {
        return command.spawn();
    };
    let (reply, answer) = oneshot::channel();
    let job = SpawnJob {
        command,
        runtime: Handle::current(),
        reply,
    };
    let sent = jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job);
    if sent.is_err() {
        return Err(io::Error::other(
            "the thread that starts programs has stopped",
        ));
    }
    answer.await.unwrap_or_else(|_| {
        Err(io::Error::other(
            "the thread that starts programs has stopped",
        ))
    })
}

/// Has the kernel kill the child when the bot dies.
#[cfg(target_os = "linux")]
fn die_with_the_bot(command: &mut Command) {
    let bot = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, so it
    // only makes async-signal-safe calls (prctl, getppid) and allocates
    // nothing (an OS error is a code, not a heap value).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The bot died between the fork and the prctl: no signal will come.
            if libc::getppid() as u32 != bot {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_the_bot(_command: &mut Command) {}

/// Sends SIGKILL to every process of group `pgid`; `false` when there was
/// none left to kill.
pub(super) fn kill_group(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, libc::SIGKILL) == 0 }
}

/// What [`stop_leftover_runs`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Process groups of earlier runs that were killed.
    pub groups: Vec<u32>,
    /// Processes still running when the wait ended (stuck in the kernel;
    /// they die as soon as they leave it).
    pub surviving: Vec<u32>,
}

/// Kills every process group that holds a program started for one of
/// `request_ids` by an earlier bot, and waits up to `wait` for them to be
/// gone. Groups holding a child of this bot are its own runs and are left
/// alone. With `spare_live_runs` (replicas sharing a database, perhaps on
/// this host), so is a group whose leader, the program itself, still runs:
/// the program dies with the bot that started it, so a live one belongs to a
/// live replica, whose run must not be cut short.
pub fn stop_leftover_runs(
    request_ids: &HashSet<&str>,
    wait: Duration,
    spare_live_runs: bool,
) -> Leftovers {
    if request_ids.is_empty() {
        return Leftovers::default();
    }
    let me = std::process::id();
    let processes = processes();
    let ours: BTreeSet<u32> = processes
        .iter()
        .filter(|p| p.ppid == me || p.pid == me)
        .map(|p| p.pgid)
        .collect();
    let groups: BTreeSet<u32> = processes
        .iter()
        .filter(|p| p.pid != me && !ours.contains(&p.pgid))
        .filter(|p| request_id_of(p.pid).is_some_and(|id| request_ids.contains(id.as_str())))
        .map(|p| p.pgid)
        .filter(|pgid| !(spare_live_runs && processes.iter().any(|p| p.pid == *pgid)))
        .collect();
    for &pgid in &groups {
        if kill_group(pgid) {
            tracing::warn!(
                process_group = pgid,
                "killed a provider run left over from before the restart"
            );
        }
    }
    let deadline = Instant::now() + wait;
    let surviving = loop {
        let alive: Vec<u32> = processes_in(&groups);
        if alive.is_empty() || Instant::now() >= deadline {
            break alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Leftovers {
        groups: groups.into_iter().collect(),
        surviving,
    }
}

/// A running process, from `/proc/<pid>/stat`.
struct Process {
    pid: u32,
    ppid: u32,
    pgid: u32,
}

/// Every process that runs (zombies, which run nothing, left out).
fn processes() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(pid, &stat)
    })
    .collect()
}

/// The running processes of `groups`.
fn processes_in(groups: &BTreeSet<u32>) -> Vec<u32> {
    if groups.is_empty() {
        return vec![];
    }
    processes()
        .into_iter()
        .filter(|p| groups.contains(&p.pgid))
        .map(|p| p.pid)
        .collect()
}

/// Reads a `/proc/<pid>/stat` line; `None` for a zombie or a line it cannot
/// read. The command name (field 2) may hold spaces and parentheses, so the
/// fields after it are counted from its last closing parenthesis.
fn parse_stat(pid: u32, stat: &str) -> Option<Process> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if matches!(state, "Z" | "X") {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Process { pid, ppid, pgid })
}

/// The request a process runs for, from its environment; `None` when it
/// has none or the environment cannot be read (another user's process).
fn request_id_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{REQUEST_ID_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .map(|id| String::from_utf8_lossy(id).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_lines_whatever_the_command_name() {
        let p = parse_stat(42, "42 (a (b) c) S 7 42 42 0 -1").unwrap();
        assert_eq!((p.pid, p.ppid, p.pgid), (42, 7, 42));
        assert!(parse_stat(43, "43 (sh) Z 7 43 43 0 -1").is_none());
        assert!(parse_stat(44, "garbage").is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn leftovers_are_found_by_request_and_killed_with_their_group() {
        let id = crate::request::new_request_id();
        // A "run" whose parent is not this process, as after a restart: the
        // shell starts a sleep in its own group and exits at once.
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", "setsid sleep 30 >/dev/null 2>&1 & echo $!"])
            .env(REQUEST_ID_VAR, &id)
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // Wait for the state the test needs: the sleep running as the leader
        // of its own group (setsid done), carrying its request.
        let found = wait_for(|| {
            let leader = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(pid, &stat))
                .is_some_and(|p| p.pgid == pid);
            leader && request_id_of(pid).as_deref() == Some(id.as_str())
        });
        assert!(
            found,
            "the sleep leads its own group and carries its request"
        );

        let other = crate::request::new_request_id();
        let none = stop_leftover_runs(
            &HashSet::from([other.as_str()]),
            Duration::from_secs(1),
            false,
        );
        assert_eq!(none, Leftovers::default());
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

        // Beside other replicas, a group whose leader still runs is a live
        // replica's run: spared.
        let spared =
            stop_leftover_runs(&HashSet::from([id.as_str()]), Duration::from_secs(1), true);
        assert_eq!(spared, Leftovers::default());
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

        let stopped =
            stop_leftover_runs(&HashSet::from([id.as_str()]), Duration::from_secs(5), false);
        assert_eq!(stopped.groups, vec![pid], "setsid made it a group leader");
        assert_eq!(stopped.surviving, Vec::<u32>::new());
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}
