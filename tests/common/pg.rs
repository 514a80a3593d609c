//! A private PostgreSQL cluster for tests: `initdb` and `pg_ctl` in a temporary folder, listening on
//! 127.0.0.1 at a free port, password login (scram-sha-256) over TCP. PostgreSQL refuses to run as
//! root, so under root its binaries run as the `postgres` user. Binaries: `$TRIPLETGEN_PG_BIN`, else
//! Debian's `/usr/lib/postgresql/15/bin`. `TRIPLETGEN_SKIP_PG=1` skips (refused under `CI=true`).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SKIP_ENV: &str = "TRIPLETGEN_SKIP_PG";

/// The login the clusters create.
pub const USER: &str = "tripletgen";

/// A running cluster, stopped (immediately) and removed when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub password: String,
    owner: Option<(u32, u32)>,
}

fn bin_dir() -> PathBuf {
    std::env::var_os("TRIPLETGEN_PG_BIN").map(PathBuf::from).unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into())
}

/// Whether the developer asked to skip (panics under CI, which must run the real server).
pub fn skip_requested() -> bool {
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0");
    if skip && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{SKIP_ENV} is set under CI=true: CI must run the real PostgreSQL server");
    }
    skip
}

/// uid and gid of `postgres` when this process is root (PostgreSQL refuses root).
fn owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam returns NULL or a pointer to static storage,
    // read at once on this thread.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(!pw.is_null(), "running as root and there is no `postgres` user to run PostgreSQL as");
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgCluster {
    /// Start a cluster whose `tripletgen` login has `password`. `None` when skipping was asked for;
    /// panics with PostgreSQL's output when it cannot start.
    pub fn start(password: &str) -> Option<PgCluster> {
        if skip_requested() {
            eprintln!("skipped: needs PostgreSQL and {SKIP_ENV}=1 is set");
            return None;
        }
        let bin = bin_dir();
        assert!(
            bin.join("initdb").is_file(),
            "PostgreSQL is not installed at {} (apt-get install postgresql-15, or set TRIPLETGEN_PG_BIN; {SKIP_ENV}=1 skips)",
            bin.display()
        );
        // In the system's temporary folder, not cargo's: the `postgres` user must reach it, and
        // cargo's may sit under a home folder only its owner can enter (CI keeps it in ~/.cache).
        let dir = tempfile::Builder::new().prefix("tripletgen-pg-").tempdir().unwrap();
        let owner = owner();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        if let Some((uid, gid)) = owner {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&run, Some(uid), Some(gid)).unwrap();
        }
        let pwfile = run.join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let c = PgCluster { dir, bin, port: 0, password: password.to_string(), owner };
        c.tool("initdb")
            .arg("-D")
            .arg(c.data())
            .args(["-U", USER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--no-instructions"])
            .check("initdb");
        std::fs::remove_file(&pwfile).ok();
        let mut c = c;
        for attempt in 0..5 {
            c.port = free_port();
            if c.ctl("start").output().unwrap().status.success() {
                c.watch_owner();
                return Some(c);
            }
            eprintln!("pg_ctl start on port {} failed (attempt {attempt}): {}", c.port, c.log());
        }
        panic!("PostgreSQL did not start: {}", c.log());
    }

    /// A shared cluster lives in a static, which is never dropped, and pg_ctl's server outlives
    /// its starter: a small watchdog stops the server (SIGQUIT to the postmaster: immediate
    /// shutdown) and removes its folder once this test process has ended, however it ended.
    // The watchdog must outlive this process, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    fn watch_owner(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             kill -QUIT \"$(head -1 '{data}/postmaster.pid' 2>/dev/null)\" 2>/dev/null; sleep 2; rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data().display(),
            dir = self.dir.path().display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog");
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn data(&self) -> PathBuf {
        self.run_dir().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("pg.log")).unwrap_or_default()
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.current_dir(self.run_dir()).env_remove("PGPASSWORD");
        c
    }

    fn ctl(&self, action: &str) -> Command {
        let mut c = self.tool("pg_ctl");
        c.arg("-D").arg(self.data()).arg("-l").arg(self.run_dir().join("pg.log")).args(["-w", "-t", "30"]);
        if action == "stop" {
            c.args(["-m", "immediate"]);
        } else if action == "start" {
            c.arg("-o").arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.run_dir().display()
            ));
        }
        c.arg(action);
        c
    }

    /// A `postgres://` URL of database `db` (no password: that goes in `PGPASSWORD`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Run SQL with psql over the local socket (trusted), returning its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let o = self
            .tool("psql")
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", USER, "-p", &self.port.to_string(), "-d", db])
            .arg("-h")
            .arg(self.run_dir())
            .args(["-c", sql])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Create database `name`; returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// Stop the server at once (as a crash would), wait `down`, start it again on the same port.
    pub fn restart_after(&self, down: Duration) {
        assert!(self.ctl("stop").output().unwrap().status.success(), "pg_ctl stop: {}", self.log());
        std::thread::sleep(down);
        assert!(self.ctl("start").output().unwrap().status.success(), "pg_ctl start: {}", self.log());
    }

    /// Serve TLS only (hostssl in pg_hba.conf) with a certificate for 127.0.0.1 signed by a fresh
    /// CA (made with the openssl command); returns the CA's PEM file, the client's `sslrootcert`.
    pub fn require_tls(&self) -> PathBuf {
        let run = self.run_dir();
        let sh = |script: &str| {
            let o = Command::new("sh").arg("-c").arg(script).current_dir(&run).output().unwrap();
            assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=tripletgen test CA' 2>/dev/null \
            && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null \
            && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext \
            && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null \
            && chmod 600 server.key",
        );
        if let Some((uid, gid)) = self.owner {
            for f in ["server.key", "server.pem"] {
                std::os::unix::fs::chown(run.join(f), Some(uid), Some(gid)).unwrap();
            }
        }
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text += &format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            run.join("server.pem").display(),
            run.join("server.key").display()
        );
        std::fs::write(&conf, text).unwrap();
        std::fs::write(
            self.data().join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        self.restart_after(Duration::from_millis(100));
        run.join("ca.pem")
    }

    /// The folder of the cluster (tests may grep it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

trait Check {
    fn check(&mut self, what: &str);
}

impl Check for Command {
    fn check(&mut self, what: &str) {
        let o = self.output().unwrap();
        assert!(
            o.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.ctl("stop").output();
    }
}
