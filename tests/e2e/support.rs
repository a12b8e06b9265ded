//! Runs the real `otpd` binary and talks raw HTTP/1.1 to it over TCP, so
//! the requests are exactly what is written here (GET with a body
//! included), with no client library in between.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const OTPD: &str = env!("CARGO_BIN_EXE_otpd");

/// A running otpd. Killed on drop.
pub struct Otpd {
    child: Child,
    pub addr: SocketAddr,
    /// The metrics listener, unless metrics were turned off.
    pub metrics: Option<SocketAddr>,
    /// Lines otpd printed on stdout (the dev sink's messages).
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Lines otpd logged on stderr.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Otpd {
    /// Starts otpd with a fresh environment plus `env`, in `dir`, and
    /// waits until it listens (it binds port 0 for the API and for the
    /// metrics, and logs the addresses, as text or JSON).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Otpd {
        Otpd::start_command(Command::new(OTPD), dir, env)
    }

    /// As [`Otpd::start`], with the soft open-file limit set to `soft`
    /// first (the hard limit stays), as a shell's `ulimit -Sn` does.
    pub fn start_with_soft_open_files(dir: &Path, env: &[(&str, &str)], soft: u64) -> Otpd {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("ulimit -Sn {soft} && exec \"$0\""), OTPD]);
        Otpd::start_command(cmd, dir, env)
    }

    /// The process id, to read its /proc entries.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start_command(mut cmd: Command, dir: &Path, env: &[(&str, &str)]) -> Otpd {
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("OTP_SERVER__LISTEN", "127.0.0.1:0")
            .env("OTP_METRICS__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn otpd");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel::<SocketAddr>();
        let metrics = Arc::new(Mutex::new(None));
        let metrics_seen = metrics.clone();
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let err = BufReader::new(child.stderr.take().expect("stderr"));
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                // otpd logs the metrics address before the API's.
                if let Some(addr) = logged_addr(&line, "metrics") {
                    *metrics_seen.lock().expect("lock") = Some(addr);
                }
                if let Some(addr) = logged_addr(&line, "addr") {
                    let _ = tx.send(addr);
                }
                lines.lock().expect("lock").push(line);
            }
        });
        let addr = wait_for_addr(&rx, &mut child, &stderr);
        let metrics = *metrics.lock().expect("lock");
        Otpd {
            child,
            addr,
            metrics,
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "otpd did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        http(self.addr, method, path, headers, body)
    }

    /// The dev sink's messages, once at least `n` have arrived (the
    /// reader thread may lag the HTTP answer a little).
    pub fn outbox_at_least(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.outbox();
            if out.len() >= n || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The dev sink's messages so far, parsed.
    pub fn outbox(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `GET /metrics` on the metrics listener, as text.
    pub fn scrape(&self) -> String {
        let addr = self.metrics.expect("metrics are on");
        let (status, text) = http_raw(addr, "GET", "/metrics", &[], "");
        assert_eq!(status, 200, "{text}");
        text
    }

    /// The logs, once they hold `needle` (or after 5 s): otpd writes log
    /// lines in batches, a few milliseconds after the answer.
    pub fn stderr_once(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.stderr_text();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }
}

impl Drop for Otpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a startup line logs in `field`: `field=127.0.0.1:8080` in
/// text, `"field":"127.0.0.1:8080"` in JSON.
fn logged_addr(line: &str, field: &str) -> Option<SocketAddr> {
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        return json.get(field)?.as_str()?.parse().ok();
    }
    line.split(&format!(" {field}="))
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn wait_for_addr(
    rx: &Receiver<SocketAddr>,
    child: &mut Child,
    stderr: &Arc<Mutex<Vec<String>>>,
) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(addr) = rx.recv_timeout(Duration::from_millis(100)) {
            return addr;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "otpd exited with {status} before listening:\n{}",
                stderr.lock().expect("lock").join("\n")
            );
        }
        if Instant::now() >= deadline {
            // No Otpd value exists yet to kill it on drop.
            let _ = child.kill();
            let _ = child.wait();
            panic!("otpd did not start listening in 20 s");
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and
/// the JSON body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, text) = http_raw(addr, method, path, headers, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{method} {path}: status {status}, body not JSON ({e}): {text:?}")
    });
    (status, json)
}

pub fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, headers, body);
    (status, body)
}

/// As [`http_raw`], with the response head (status line and headers).
pub fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    try_http_full(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// As [`http_raw`], but a dead server is an `Err`, not a panic.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    try_http_full(addr, method, path, headers, body).map(|(status, _, body)| (status, body))
}

fn try_http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
