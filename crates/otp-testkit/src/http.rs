//! A loopback HTTP peer that records every request and answers with a
//! canned reply: it stands in for an SMS gateway, Twilio, the Telegram Bot
//! API or an http-telegram-notify relay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::{Endpoint, Request, Response, Server};
use tokio::sync::oneshot;

/// One request as the peer received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// The query string without the `?`, still percent-encoded.
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// Every header, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as text; panics when it is not UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }

    /// The first header called `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as form fields, decoded, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The body as JSON; panics when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// What the peer answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// How long the peer waits before it answers, for timeout tests.
    pub delay: Duration,
}

impl Reply {
    /// `status` with `body` as `application/json`, at once.
    pub fn json(status: u16, body: &str) -> Self {
        Reply {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header, such as `Retry-After`.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A running peer on 127.0.0.1 and a free port. Dropping it stops the
/// server: no new connection is accepted after that.
pub struct FakePeer {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    _running: Running,
}

impl FakePeer {
    /// Starts a peer on the current tokio runtime that gives every request
    /// `reply`.
    pub async fn start(reply: Reply) -> Self {
        Self::start_script(vec![reply]).await
    }

    /// Starts a peer on the current tokio runtime whose n-th request gets
    /// the n-th reply and every later one the last reply: `[503, 503, 200]`
    /// fails twice, then succeeds. Panics on an empty script.
    pub async fn start_script(script: Vec<Reply>) -> Self {
        let recorder = Recorder::new(script);
        let (listener, base_url) = bind();
        let acceptor = TcpAcceptor::from_std(listener).expect("register the listener with tokio");
        let log = Arc::clone(&recorder.log);
        let task = tokio::spawn(serve(acceptor, recorder));
        FakePeer {
            base_url,
            log,
            _running: Running::Task(task.abort_handle()),
        }
    }

    /// Like [`FakePeer::start`], but needs no runtime: the server runs on
    /// its own thread with its own runtime, for plain `#[test]` functions.
    pub fn start_blocking(reply: Reply) -> Self {
        Self::start_script_blocking(vec![reply])
    }

    /// Like [`FakePeer::start_script`], but needs no runtime: the server
    /// runs on its own thread with its own runtime until the peer is
    /// dropped.
    pub fn start_script_blocking(script: Vec<Reply>) -> Self {
        Self::blocking_on(bind_to(0), script)
    }

    /// Like [`FakePeer::start_blocking`], on a given loopback `port`: for
    /// a receiver that comes back where it was (see [`closed_port`]).
    pub fn start_blocking_on(port: u16, reply: Reply) -> Self {
        Self::blocking_on(bind_to(port), vec![reply])
    }

    fn blocking_on(bound: (std::net::TcpListener, String), script: Vec<Reply>) -> Self {
        let recorder = Recorder::new(script);
        let (listener, base_url) = bound;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the peer");
        let acceptor = {
            let _inside = runtime.enter();
            TcpAcceptor::from_std(listener).expect("register the listener with tokio")
        };
        let log = Arc::clone(&recorder.log);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-peer {base_url}"))
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = serve(acceptor, recorder) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels the open connections.
            })
            .expect("start the peer's thread");
        FakePeer {
            base_url,
            log,
            _running: Running::Thread {
                stop: Some(stop),
                thread: Some(thread),
            },
        }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Recorded> {
        self.log.lock().expect("log lock").clone()
    }

    /// The one request so far; panics, listing them, unless there is
    /// exactly one.
    pub fn only_request(&self) -> Recorded {
        let all = self.received();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:#?}");
        all.into_iter().next().expect("one request")
    }

    /// Waits until `n` requests arrived or [`crate::WAIT`] passed, and
    /// returns all requests so far: for a sender that works in the
    /// background.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let log = Arc::clone(&self.log);
        crate::off_runtime(move || wait_for_log(&log, n)).await
    }

    /// [`FakePeer::wait_for`] without a runtime.
    pub fn wait_for_blocking(&self, n: usize) -> Vec<Recorded> {
        wait_for_log(&self.log, n)
    }
}

fn wait_for_log(log: &Mutex<Vec<Recorded>>, n: usize) -> Vec<Recorded> {
    crate::wait_until(n, || log.lock().expect("log lock").clone())
}

/// A port on 127.0.0.1 that nothing listens on: a connection to it is
/// refused.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

/// A port on 127.0.0.1 that accepts every connection and never answers
/// nor closes one: the worst peer, where only a timeout ends the wait.
/// It listens until the test process ends.
pub fn silent_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        // Held, not dropped: a dropped stream would close the connection.
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn bind() -> (std::net::TcpListener, String) {
    bind_to(0)
}

fn bind_to(port: u16) -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener, as tokio needs");
    let addr = listener.local_addr().expect("local addr");
    (listener, format!("http://{addr}"))
}

async fn serve(acceptor: TcpAcceptor, recorder: Recorder) {
    let _ = Server::new_with_acceptor(acceptor).run(recorder).await;
}

/// How a peer runs, and how dropping it stops it.
enum Running {
    /// A task on the test's runtime.
    Task(tokio::task::AbortHandle),
    /// A thread with its own runtime.
    Thread {
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Task(task) => task.abort(),
            Running::Thread { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    // A panic on the peer's thread was already printed;
                    // a second one in drop would only abort the test.
                    let _ = thread.join();
                }
            }
        }
    }
}

struct Recorder {
    log: Arc<Mutex<Vec<Recorded>>>,
    script: Vec<Reply>,
}

impl Recorder {
    fn new(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty(), "a peer needs at least one reply");
        Recorder {
            log: Arc::new(Mutex::new(Vec::new())),
            script,
        }
    }
}

impl Endpoint for Recorder {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut recorded = Recorded {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            authorization: header("authorization"),
            content_type: header("content-type"),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("<binary>").to_owned()))
                .collect(),
            body: Vec::new(),
        };
        recorded.body = req.into_body().into_vec().await?;
        let count = {
            let mut log = self.log.lock().expect("log lock");
            log.push(recorded);
            log.len()
        };
        let reply = &self.script[count.min(self.script.len()) - 1];
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let mut builder =
            Response::builder().status(StatusCode::from_u16(reply.status).expect("valid status"));
        for (name, value) in &reply.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        Ok(builder.body(reply.body.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_script_answers_in_order_then_repeats_its_last_reply() {
        let peer = FakePeer::start_script(vec![
            Reply::json(503, "first"),
            Reply::json(503, "second"),
            Reply::json(200, "ok"),
        ])
        .await;

        let mut answers = Vec::new();
        for i in 0..4 {
            answers.push(get(&peer.base_url, &format!("/n{i}")).await);
        }

        assert_eq!(
            answers,
            [
                (503, "first".to_owned()),
                (503, "second".to_owned()),
                (200, "ok".to_owned()),
                (200, "ok".to_owned()),
            ]
        );
        let paths: Vec<String> = peer.received().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/n0", "/n1", "/n2", "/n3"]);
    }

    #[test]
    fn a_blocking_peer_serves_without_a_runtime_and_stops_on_drop() {
        let peer = FakePeer::start_blocking(
            Reply::json(429, r#"{"slow":"down"}"#).with_header("Retry-After", "7"),
        );
        let port = peer.base_url.rsplit(':').next().expect("port").to_owned();

        let answer = raw_request(
            &port,
            "POST /send?x=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\
             Connection: close\r\n\r\nto=%2B1&a=b",
        );

        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 7"),
            "{answer}"
        );
        assert!(answer.ends_with(r#"{"slow":"down"}"#), "{answer}");
        let got = peer.wait_for_blocking(1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, "/send");
        assert_eq!(got[0].query.as_deref(), Some("x=1"));
        assert_eq!(got[0].authorization.as_deref(), Some("Bearer t"));
        assert_eq!(
            got[0].form(),
            [
                ("to".to_owned(), "+1".to_owned()),
                ("a".to_owned(), "b".to_owned())
            ]
        );

        drop(peer);
        let refused = std::net::TcpStream::connect(format!("127.0.0.1:{port}"));
        assert!(refused.is_err(), "the port is closed after drop");
    }

    async fn get(base_url: &str, path: &str) -> (u16, String) {
        let port = base_url.rsplit(':').next().expect("port").to_owned();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = tokio::task::spawn_blocking(move || raw_request(&port, &request))
            .await
            .expect("request");
        let status = answer[9..12].parse().expect("status code");
        let body = answer.split("\r\n\r\n").nth(1).expect("body").to_owned();
        (status, body)
    }

    fn raw_request(port: &str, request: &str) -> String {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        answer
    }
}
