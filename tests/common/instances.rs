//! Private Redis and PostgreSQL instances a test starts, stops the hard way
//! and starts again on the same port and data directory.
//!
//! Each instance listens on 127.0.0.1 on a spare port (one that binds,
//! below the kernel's ephemeral range) and keeps its data in a directory
//! named after the test process (pid + a counter), so parallel runs never
//! meet, and the machine's shared services on 5432/6379 are never touched. Dropping an instance kills its
//! server and deletes its directory, also when the test fails.
//!
//! When a binary is missing (or, for PostgreSQL, the test does not run as
//! root and so cannot run `initdb` as `postgres`), the constructors print
//! one line `skipped: …` and return `None`; with
//! `BUTTRESS_REQUIRE_SERVICES=1` they fail the test saying what is missing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept requests after a start.
const READY_WITHIN: Duration = Duration::from_secs(20);

fn required() -> bool {
    std::env::var("BUTTRESS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Print why the test cannot run here (or fail under
/// `BUTTRESS_REQUIRE_SERVICES=1`).
fn skip(why: &str) {
    assert!(
        !required(),
        "required (BUTTRESS_REQUIRE_SERVICES=1) but {why}"
    );
    eprintln!("skipped: {why}");
}

/// A port of 127.0.0.1 nobody uses right now, below the kernel's ephemeral
/// range: the server is started again on the same port after a stop, and
/// meanwhile an ephemeral port could be handed to some outgoing connection.
/// Falls back to a port the kernel picks (binding port 0).
fn spare_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 20_000u16.min(ephemeral_start / 2);
    let span = u32::from(ephemeral_start.saturating_sub(low)).max(1);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(nanos)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729));
    for step in 0..200 {
        let offset = seed.wrapping_add(step * 7) % span;
        let port = low + u16::try_from(offset).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a spare port");
    listener.local_addr().expect("local address").port()
}

/// A fresh directory under the temp dir, unique to this process and call.
fn fresh_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "buttress-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn on_path(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    })
}

/// Wait until `ready` holds, at most [`READY_WITHIN`], polling every 20 ms.
fn wait_until(what: &str, mut ready: impl FnMut() -> Result<bool, String>) {
    let started = Instant::now();
    let mut last = String::from("not polled yet");
    while started.elapsed() < READY_WITHIN {
        match ready() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} not ready within {READY_WITHIN:?}: {last}");
}

/// How a [`RedisInstance`] keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `--appendonly yes --appendfsync always`: every acknowledged write
    /// is on disk.
    AppendOnlyAlways,
    /// No append-only file and no snapshots (`--appendonly no --save ""`).
    None,
}

/// A private `redis-server`.
pub struct RedisInstance {
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    child: Option<Child>,
}

impl RedisInstance {
    /// Start one, or `None` (after one `skipped:` line) without
    /// `redis-server`.
    pub fn start(persistence: Persistence) -> Option<Self> {
        if on_path("redis-server").is_none() {
            skip("redis-server is not on the PATH (install Redis)");
            return None;
        }
        let mut instance = Self {
            port: spare_port(),
            dir: fresh_dir("redis"),
            persistence,
            child: None,
        };
        instance.restart();
        Some(instance)
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running.
    pub const fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Start the server (again) on the same port and directory, and wait
    /// until it answers `PING` with `PONG` (after loading its data).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "Redis on {} is already running",
            self.port
        );
        let aof = match self.persistence {
            Persistence::AppendOnlyAlways => ["--appendonly", "yes", "--appendfsync", "always"],
            Persistence::None => ["--appendonly", "no", "--appendfsync", "no"],
        };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(aof)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        let port = self.port;
        let log = self.dir.join("redis.log");
        wait_until(&format!("Redis on port {port}"), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("redis-server on port {port} exited ({status}): {log}");
                }
            }
            Ok(redis_command(port, "PING")?.starts_with("+PONG"))
        });
    }

    /// Stop the server the hard way: SIGKILL, no chance to write anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the server with `SHUTDOWN NOSAVE` (no snapshot written), and
    /// wait for the process to exit.
    pub fn shutdown_nosave(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The server closes the connection without an answer.
            let _ = redis_command(self.port, "SHUTDOWN NOSAVE");
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if started.elapsed() > READY_WITHIN => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("Redis on {} ignored SHUTDOWN NOSAVE", self.port);
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// The number of keys in database 0 (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        let answer = redis_command(self.port, "DBSIZE").expect("DBSIZE");
        answer
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE answered {answer:?}"))
    }
}

impl Drop for RedisInstance {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Send one inline command and read the first reply line.
fn redis_command(port: u16, command: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => answer.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A private PostgreSQL cluster, run as the `postgres` user with
/// `fsync=on`.
pub struct PostgresInstance {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb`.
pub fn postgres_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("BUTTRESS_POSTGRES_BIN") {
        return Some(PathBuf::from(bin));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PostgresInstance {
    /// `initdb` a fresh cluster and start it, or `None` (after one
    /// `skipped:` line) when PostgreSQL's binaries, `runuser` or root are
    /// missing.
    pub fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            skip("no PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin/initdb; set BUTTRESS_POSTGRES_BIN)");
            return None;
        };
        if !is_root() {
            skip("a private PostgreSQL needs root (to run initdb as the postgres user)");
            return None;
        }
        if on_path("runuser").is_none() {
            skip("runuser is not on the PATH (needed to run initdb as the postgres user)");
            return None;
        }
        let dir = fresh_dir("postgres");
        run(
            {
                let mut chown = Command::new("chown");
                chown.args(["-R", "postgres:"]).arg(&dir);
                chown
            },
            "chown of the PostgreSQL directory",
        );
        let mut instance = Self {
            port: spare_port(),
            dir,
            bin,
            running: false,
        };
        let mut initdb = as_postgres(&instance.bin, "initdb");
        initdb
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(instance.data());
        run(initdb, "initdb");
        instance.restart();
        Some(instance)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// Start the server (again) on the same port and data directory,
    /// running crash recovery if it was stopped the hard way; returns once
    /// it accepts connections (`pg_ctl -w`).
    pub fn restart(&mut self) {
        assert!(
            !self.running,
            "PostgreSQL on {} is already running",
            self.port
        );
        let mut start = as_postgres(&self.bin, "pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", &READY_WITHIN.as_secs().to_string(), "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
                self.port,
                self.dir.display()
            ))
            .arg("start");
        let output = start.output().expect("run pg_ctl start");
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "pg_ctl start on port {} failed ({}): {}{}\n{log}",
                self.port,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.running = true;
    }

    /// Stop the server the hard way (`pg_ctl stop -m immediate`: every
    /// process quits without a checkpoint, as in a crash; the next start
    /// replays the WAL).
    pub fn crash(&mut self) {
        if self.running {
            let mut stop = as_postgres(&self.bin, "pg_ctl");
            stop.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]);
            run(stop, "pg_ctl stop -m immediate");
            self.running = false;
        }
    }
}

impl Drop for PostgresInstance {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // The effective uid, from /proc (no libc dependency).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
