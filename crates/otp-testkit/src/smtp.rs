//! A real SMTP server on loopback: Python's aiosmtpd, driven by a small
//! handler that saves each received message and its envelope to a folder.
//!
//! aiosmtpd is required, never optional: when `python3 -c 'import
//! aiosmtpd'` fails, starting a peer panics with how to install it, so a
//! missing server fails the test run instead of skipping the tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long aiosmtpd may take to start and print its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The handler: each message is saved as NNNN.json (the envelope) and
/// then NNNN.eml (the raw bytes, renamed into place so it appears whole).
/// RCPT to a domain starting with `reject.` gets 550, with `later.` 451.
/// The process exits when its stdin closes, so it never outlives the test.
const PEER_PY: &str = r#"
import asyncio, json, os, sys, threading
from aiosmtpd.smtp import SMTP

class Saver:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rsplit("@", 1)[-1]
        if domain.startswith("reject."):
            return "550 5.1.1 mailbox unavailable"
        if domain.startswith("later."):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.folder, "%04d" % self.count)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        with open(base + ".part", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".part", base + ".eml")
        return "250 Message accepted for delivery"

def exit_with_parent():
    sys.stdin.read()
    os._exit(0)

async def main():
    handler = Saver(sys.argv[1])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

threading.Thread(target=exit_with_parent, daemon=True).start()
asyncio.run(main())
"#;

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The accepted envelope recipients (`RCPT TO`), in order.
    pub rcpt_tos: Vec<String>,
    /// The message exactly as sent after `DATA`: headers, blank line, body.
    pub raw: Vec<u8>,
}

impl Received {
    /// The raw message as text, with any invalid UTF-8 replaced.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The message parsed (headers decoded, MIME parts split); panics
    /// when it cannot be parsed.
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("the server got a parseable message")
    }
}

/// A running aiosmtpd on 127.0.0.1. It takes plain SMTP without TLS or
/// auth and accepts every recipient except those at a domain starting
/// with `reject.` (550, permanent) or `later.` (451, transient). Dropping
/// it stops the server and deletes the saved messages.
pub struct SmtpPeer {
    /// The port it listens on, at 127.0.0.1.
    pub port: u16,
    mail_dir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SmtpPeer {
    /// Starts a server from an async test; the start itself runs off the
    /// runtime. Panics when aiosmtpd is not installed.
    pub async fn start() -> Self {
        crate::off_runtime(Self::start_blocking).await
    }

    /// Starts a server and waits until it listens; needs no runtime.
    /// Panics when aiosmtpd is not installed.
    pub fn start_blocking() -> Self {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            probe.is_ok_and(|s| s.success()),
            "these tests need Python's aiosmtpd, a real SMTP server: install it with \
             `python3 -m pip install aiosmtpd` (or `apt-get install python3-aiosmtpd`)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("peer.py");
        std::fs::write(&script, PEER_PY).expect("write handler script");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("create mail dir");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&mail_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 with aiosmtpd");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line.expect("read aiosmtpd's port"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aiosmtpd did not start within {START_TIMEOUT:?}");
            }
        };
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("aiosmtpd printed {line:?}, not its port"));
        SmtpPeer {
            port,
            mail_dir,
            child,
            _dir: dir,
        }
    }

    /// Every message so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        read_mail_dir(&self.mail_dir)
    }

    /// Waits until `n` messages arrived or [`crate::WAIT`] passed, and
    /// returns all messages so far. The server saves a message before it
    /// answers 250, so after a successful send this returns at once.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let mail_dir = self.mail_dir.clone();
        crate::off_runtime(move || crate::wait_until(n, || read_mail_dir(&mail_dir))).await
    }

    /// [`SmtpPeer::wait_for`] without a runtime.
    pub fn wait_for_blocking(&self, n: usize) -> Vec<Received> {
        crate::wait_until(n, || read_mail_dir(&self.mail_dir))
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_mail_dir(mail_dir: &Path) -> Vec<Received> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(mail_dir)
        .expect("read mail dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names.iter().map(|p| read_received(p)).collect()
}

fn read_received(eml: &Path) -> Received {
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eml.with_extension("json")).expect("read envelope"))
            .expect("envelope is JSON");
    Received {
        mail_from: envelope["mail_from"]
            .as_str()
            .expect("mail_from")
            .to_owned(),
        rcpt_tos: envelope["rcpt_tos"]
            .as_array()
            .expect("rcpt_tos")
            .iter()
            .map(|v| v.as_str().expect("rcpt").to_owned())
            .collect(),
        raw: std::fs::read(eml).expect("read message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_blocking_peer_saves_the_envelope_and_raw_message_and_refuses_reject_domains() {
        let peer = SmtpPeer::start_blocking();

        let transcript = smtp_session(
            peer.port,
            &[
                "HELO test",
                "MAIL FROM:<otp@example.com>",
                "RCPT TO:<nobody@reject.example>",
                "RCPT TO:<user@example.org>",
                "DATA",
                "Subject: Hi\r\n\r\nYour code is 1234\r\n.",
                "QUIT",
            ],
        );

        assert!(transcript.contains("550 5.1.1"), "{transcript}");
        let got = peer.wait_for_blocking(1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mail_from, "otp@example.com");
        assert_eq!(got[0].rcpt_tos, ["user@example.org"]);
        assert_eq!(
            got[0].raw_text(),
            "Subject: Hi\r\n\r\nYour code is 1234\r\n"
        );
        assert_eq!(got[0].parsed().subject(), Some("Hi"));
    }

    /// Sends each command after reading the server's answer to the last.
    fn smtp_session(port: u16, commands: &[&str]) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut transcript = String::new();
        let mut buf = [0u8; 4096];
        for command in commands {
            let n = stream.read(&mut buf).expect("an answer");
            transcript.push_str(&String::from_utf8_lossy(&buf[..n]));
            stream
                .write_all(format!("{command}\r\n").as_bytes())
                .expect("write");
        }
        let n = stream.read(&mut buf).expect("the answer to QUIT");
        transcript.push_str(&String::from_utf8_lossy(&buf[..n]));
        transcript
    }
}
