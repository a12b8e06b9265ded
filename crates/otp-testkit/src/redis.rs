//! Real redis-server processes (standalone, AOF, TLS, a 3-master
//! cluster), each on its own free port and temporary folder, killed on
//! drop: for otp-redis's tests and otpd's server and end-to-end suites.
//! The shared Redis on 6379 is never touched.
//!
//! The harness speaks URLs only (it knows no otpd store config), so this
//! crate does not depend on the adapter it tests.
//!
//! Missing `redis-server` is a test failure with an install hint, never a
//! skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Fails the test, never skips it, when Redis is not installed.
fn require(binary: &str) {
    require_tool(binary, "--version", "redis-server");
}

/// Panics with an install hint when `binary` cannot be run at all.
fn require_tool(binary: &str, version_arg: &str, package: &str) {
    if let Err(e) = Command::new(binary).arg(version_arg).output() {
        panic!("{binary} not found ({e}): install it, e.g. apt-get install -y {package}");
    }
}

/// Runs `command` with no stdin and fails the test, showing its output,
/// unless it succeeds.
fn run_ok(command: &mut Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nobody listens on right now. Another process could take it
/// before redis-server binds it; `RedisServer::start` then retries.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Whether a server on `port` answers PING with PONG (not, say, LOADING).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// How a server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart starts empty.
    None,
    /// Append-only file, fsynced before every reply.
    Aof,
}

/// A test CA and a server certificate for 127.0.0.1 that it signed.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes the files in `dir` with the openssl command line tool.
    fn generate(dir: &Path) -> Self {
        require_tool("openssl", "version", "openssl");
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let ext = dir.join("san.ext");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
        let steps: [Vec<String>; 3] = [
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=otpd test CA",
                "-keyout",
                &path("ca.key"),
                "-out",
                &path("ca.crt"),
            ]
            .map(String::from)
            .to_vec(),
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &path("server.key"),
                "-out",
                &path("server.csr"),
            ]
            .map(String::from)
            .to_vec(),
            [
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &path("server.csr"),
                "-CA",
                &path("ca.crt"),
                "-CAkey",
                &path("ca.key"),
                "-CAcreateserial",
                "-out",
                &path("server.crt"),
                "-extfile",
                &path("san.ext"),
            ]
            .map(String::from)
            .to_vec(),
        ];
        for args in steps {
            run_ok(
                Command::new("openssl").args(&args),
                &format!("openssl {args:?}"),
            );
        }
        TlsFiles {
            ca_cert: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }
}

/// One redis-server process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    persistence: Persistence,
    /// For a cluster node, its cluster bus port.
    cluster_bus_port: Option<u16>,
    /// With TLS, the TLS port; the plain port stays open for readiness
    /// checks.
    tls: Option<(u16, TlsFiles)>,
    dir: Arc<TempDir>,
}

impl RedisServer {
    /// A standalone server that keeps nothing on disk.
    pub fn start() -> Self {
        Self::start_with(Persistence::None, false, false, Arc::new(tempdir()))
    }

    /// A standalone server with an fsynced append-only file.
    pub fn start_with_aof() -> Self {
        Self::start_with(Persistence::Aof, false, false, Arc::new(tempdir()))
    }

    /// A standalone server that also takes TLS, with a certificate for
    /// 127.0.0.1 signed by a CA that nobody trusts by default.
    pub fn start_with_tls() -> Self {
        Self::start_with(Persistence::None, false, true, Arc::new(tempdir()))
    }

    fn start_with(persistence: Persistence, cluster: bool, tls: bool, dir: Arc<TempDir>) -> Self {
        require("redis-server");
        let tls_files = tls.then(|| TlsFiles::generate(dir.path()));
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                persistence,
                cluster_bus_port: cluster.then(free_port),
                tls: tls_files.clone().map(|files| (free_port(), files)),
                dir: dir.clone(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `rediss://` URL of the TLS port, and the CA to trust.
    pub fn tls_url(&self) -> (String, PathBuf) {
        let (port, files) = self.tls.as_ref().expect("a server started with TLS");
        (format!("rediss://127.0.0.1:{port}"), files.ca_cert.clone())
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and folder.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            &dir,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        match self.persistence {
            Persistence::None => args.extend(["--appendonly".into(), "no".into()]),
            Persistence::Aof => {
                args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from))
            }
        }
        if let Some((tls_port, files)) = &self.tls {
            for (flag, value) in [
                ("--tls-port", tls_port.to_string()),
                ("--tls-cert-file", files.cert.to_string_lossy().into_owned()),
                ("--tls-key-file", files.key.to_string_lossy().into_owned()),
                (
                    "--tls-ca-cert-file",
                    files.ca_cert.to_string_lossy().into_owned(),
                ),
                ("--tls-auth-clients", "no".to_owned()),
            ] {
                args.extend([flag.to_owned(), value]);
            }
        }
        if let Some(bus_port) = self.cluster_bus_port {
            let conf = self.dir.path().join(format!("nodes-{port}.conf"));
            // The bus port defaults to port + 10000, which can be taken or
            // past 65535 for an ephemeral port: pick a free one.
            for (flag, value) in [
                ("--cluster-enabled", "yes".to_owned()),
                ("--cluster-config-file", conf.to_string_lossy().into_owned()),
                ("--cluster-node-timeout", "5000".to_owned()),
                ("--cluster-port", bus_port.to_string()),
            ] {
                args.extend([flag.to_owned(), value]);
            }
        }
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if answers_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("exited with {status} on port {port}:\n{log}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no PONG on port {port} within {READY_TIMEOUT:?}"));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters (no replicas) with all 16384 slots spread over them.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        require("redis-cli");
        let dir = Arc::new(tempdir());
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(Persistence::None, true, false, dir.clone()))
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        run_ok(&mut create, "redis-cli --cluster create");
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Until every node reports `cluster_state:ok`, so no node answers
    /// CLUSTERDOWN to the first test command.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &self.nodes {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &node.port().to_string(), "cluster", "info"])
                    .output()
                    .expect("run redis-cli cluster info");
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster node {} never reached cluster_state:ok",
                    node.port()
                );
                sleep(Duration::from_millis(50));
            }
        }
    }

    /// The URL of each master.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create a temporary folder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_fails_the_test_with_an_install_hint() {
        let failure = std::panic::catch_unwind(|| {
            require_tool("otpd-no-such-tool", "--version", "otpd-no-such-package")
        })
        .expect_err("a missing tool fails the test, never skips it");
        let text = failure.downcast_ref::<String>().map_or("", String::as_str);
        assert!(text.starts_with("otpd-no-such-tool not found"), "{text}");
        assert!(
            text.contains("install it, e.g. apt-get install -y otpd-no-such-package"),
            "{text}"
        );
    }

    #[test]
    fn a_server_answers_until_killed_and_again_after_a_restart_on_its_port() {
        let mut server = RedisServer::start();
        let port = server.port();
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
        assert!(answers_ping(port));

        server.kill();
        assert!(!answers_ping(port), "a killed server is gone");

        server.restart();
        assert_eq!(server.port(), port);
        assert!(answers_ping(port));

        drop(server);
        assert!(!answers_ping(port), "dropping the server stops it");
    }
}
