//! Throw-away database servers for the `mysqld` and `postgres` module
//! tests (shared/spec/MODULES.md §4, §5): a MariaDB server and a
//! PostgreSQL cluster in temporary directories, each on its own Unix
//! socket (no TCP port), started by the test and stopped at drop.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Debian's PostgreSQL 15 programs (not on PATH).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A directory removed at drop.
#[derive(Debug)]
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!("rcapture-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _gone_or_never_made = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Polls `ready` every 50 ms for 30 s.
fn wait_until(
    what: &str,
    child: &mut Child,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("{what} exited with {st} before it was ready"));
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} not ready within 30 s"))
}

/// Sends `sig`, waits 10 s for the exit, then kills.
fn stop(child: &mut Child, sig: &str) {
    let _already_gone = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _already_gone = child.kill();
    let _reaped = child.wait();
}

/// A MariaDB server (`mariadbd`) on a fresh datadir, its own socket and no
/// TCP port; shut down at drop.
#[derive(Debug)]
pub struct MariaDb {
    child: Child,
    socket: PathBuf,
    dir: Dir,
}

impl MariaDb {
    /// `mariadb-install-db` into a temporary datadir, then `mariadbd` on
    /// its own socket, as root (`--user=root`), ready when
    /// `mariadb-admin ping` answers.
    pub fn start() -> Result<Self, String> {
        let dir = Dir::new("mariadb")?;
        let data = dir.0.join("data");
        run(Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal"))?;
        let socket = dir.0.join("s.sock");
        let mut child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--skip-networking"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.0.join("p.pid").display()))
            .arg(format!("--log-error={}", dir.0.join("err.log").display()))
            .args(["--innodb-buffer-pool-size=16M", "--max-allowed-packet=64M"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting mariadbd: {e}"))?;
        let ping = |socket: &Path| {
            Command::new("mariadb-admin")
                .args(["--no-defaults", "-uroot", "-S"])
                .arg(socket)
                .arg("ping")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if let Err(e) = wait_until("mariadbd", &mut child, || ping(&socket)) {
            stop(&mut child, "-KILL");
            let log = std::fs::read_to_string(dir.0.join("err.log")).unwrap_or_default();
            return Err(format!("{e}; its log:\n{log}"));
        }
        Ok(Self { child, socket, dir })
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `mariadb` client on this server's socket, as root.
    pub fn client(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "-uroot", "-S"]).arg(&self.socket);
        c
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A scratch path inside the server's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGTERM: a normal shutdown (about a second).
        stop(&mut self.child, "-TERM");
    }
}

/// A PostgreSQL cluster made by `initdb` in a temporary directory, its
/// postmaster run as the `postgres` user (initdb and postgres refuse root)
/// with a Unix socket in that directory and no TCP listener; stopped at drop.
#[derive(Debug)]
pub struct PgCluster {
    child: Child,
    port: u16,
    uid: u32,
    dir: Dir,
}

impl PgCluster {
    /// initdb (trust authentication, superuser `postgres`), then the
    /// postmaster on `port` (the socket's name; nothing listens on TCP).
    pub fn start(port: u16) -> Result<Self, String> {
        let (uid, gid) = postgres_ids()?;
        let dir = Dir::new("pg")?;
        chown(&dir.0, Some(uid), Some(gid))
            .map_err(|e| format!("chown {} to postgres: {e}", dir.0.display()))?;
        let data = dir.0.join("data");
        run(Command::new(Path::new(PG_BIN).join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C.UTF-8")
            .uid(uid)
            .gid(gid)
            .current_dir(&dir.0))?;
        let mut child = Command::new(Path::new(PG_BIN).join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir.0)
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .uid(uid)
            .gid(gid)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let me_dir = dir.0.clone();
        let ready = || {
            Command::new(Path::new(PG_BIN).join("pg_isready"))
                .arg("-h")
                .arg(&me_dir)
                .args(["-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if let Err(e) = wait_until("postgres", &mut child, ready) {
            stop(&mut child, "-KILL");
            let log = std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
            return Err(format!("{e}; its log:\n{log}"));
        }
        Ok(Self {
            child,
            port,
            uid,
            dir,
        })
    }

    /// The postmaster's pid (the backends are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The uid the server runs as (the `postgres` user).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// `psql` on this cluster's socket as `postgres`, unaligned tuples only.
    pub fn psql(&self) -> Command {
        let mut c = Command::new("psql");
        self.connect(&mut c);
        c.args(["-X", "-At"]);
        c
    }

    /// `pgbench` on this cluster (`-n`: no vacuum of its own tables).
    pub fn pgbench(&self) -> Command {
        let mut c = Command::new(Path::new(PG_BIN).join("pgbench"));
        self.connect(&mut c);
        c.arg("-n");
        c
    }

    /// `pgbench -M prepared` running `script` (which may use `:x`, set to
    /// 5) `transactions` times on one connection: the extended protocol
    /// with a named statement, parsed once.
    pub fn pgbench_prepared(&self, script: &str, transactions: u32) -> Result<Output, String> {
        let file = self.path("pgbench-script.sql");
        std::fs::write(&file, script).map_err(|e| format!("writing {}: {e}", file.display()))?;
        run(self
            .pgbench()
            .args([
                "-t",
                &transactions.to_string(),
                "-M",
                "prepared",
                "-D",
                "x=5",
                "-f",
            ])
            .arg(&file)
            .arg("postgres"))
    }

    fn connect(&self, c: &mut Command) {
        c.arg("-h")
            .arg(&self.dir.0)
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
    }

    /// A scratch path inside the cluster's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (backends are told to exit).
        stop(&mut self.child, "-INT");
    }
}

/// The uid and gid of the `postgres` user (made by the postgresql package).
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = run(Command::new("id").args([flag, "postgres"]))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id {flag} postgres: {e}"))
    };
    Ok((id("-u")?, id("-g")?))
}
