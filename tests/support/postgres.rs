//! A real, throwaway PostgreSQL server for tests: `initdb` and `pg_ctl` in a
//! temporary directory, on a free port on 127.0.0.1, started once per test
//! process and stopped when the process exits. Each test gets a database of
//! its own ([`database`]).
//!
//! The server refuses to run as root, so when the tests run as root it runs
//! as the `postgres` user if there is one, else `nobody`, in a directory
//! that user owns.
//!
//! A machine without PostgreSQL fails the tests that need it, with a message
//! saying how to install it; they never skip. (`.ci/run` installs it.)

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{Connection, Executor};

/// The running cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The non-root user the server runs as, when the tests run as root.
    run_as: Option<String>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

impl Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The shared cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(start)
}

/// A fresh, empty database on the shared cluster; returns its URL.
pub async fn database() -> String {
    let cluster = cluster();
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL server failed: {e}"));
    admin
        .execute(sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\""
        ))))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    let _ = admin.close().await;
    cluster.url(&name)
}

/// Where `initdb` and `pg_ctl` are: on PATH, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them there).
fn find_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn start() -> Cluster {
    let bin = find_bin().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is required for these tests and was not found: no `initdb`/`pg_ctl` on \
             PATH or under /usr/lib/postgresql/*/bin. Install it (Debian: `apt-get install -y \
             postgresql`; .ci/run does this) and run the tests again."
        )
    });
    let run_as = if unsafe { libc::geteuid() } == 0 {
        Some(
            ["postgres", "nobody"]
                .into_iter()
                .find(|u| user_ids(u).is_some())
                .expect("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as")
                .to_string(),
        )
    } else {
        None
    };
    let dir = tempfile::Builder::new()
        .prefix("accessbot-pg-")
        .tempdir()
        .expect("creating a temporary directory for PostgreSQL")
        .keep();
    if let Some(user) = &run_as {
        let (uid, gid) = user_ids(user).expect("checked above");
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .expect("chown of the cluster directory");
    }
    let cluster = Cluster {
        bin,
        port: free_port(),
        dir,
        run_as,
    };
    let data = cluster.dir.join("data");
    let out = cluster.run(
        "initdb",
        &[
            "-D",
            path_str(&data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    );
    check(&cluster, "initdb", out);
    let options = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB",
        cluster.port,
        path_str(&cluster.dir)
    );
    let log = cluster.dir.join("server.log");
    let out = cluster.run(
        "pg_ctl",
        &[
            "-D",
            path_str(&data),
            "-l",
            path_str(&log),
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ],
    );
    if !out.status.success() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "pg_ctl start failed: {}\n{}\nserver log:\n{tail}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    unsafe {
        libc::atexit(stop_at_exit);
    }
    cluster
}

extern "C" fn stop_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        let data = cluster.dir.join("data");
        let _ = cluster.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

impl Cluster {
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()))
    }
}

fn check(cluster: &Cluster, what: &str, out: Output) {
    assert!(
        out.status.success(),
        "{what} failed (PostgreSQL in {}): {}\n{}",
        cluster.dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// Waits until `f` is true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
