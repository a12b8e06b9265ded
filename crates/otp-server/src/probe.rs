//! `otpd health`: asks a running otpd whether it is ready (`GET
//! /readyz`), for container health checks in images without curl. Plain
//! HTTP/1.1 over TCP with short timeouts: the probe must answer quickly
//! even when otpd hangs.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Where to probe an otpd that listens on `listen`: the same port on
/// loopback when it listens on every interface.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Why the instance is not ready.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot reach {addr}")]
    Unreachable {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} did not answer HTTP")]
    NotHttp { addr: SocketAddr },
    #[error("{addr}/readyz answered {status}: not ready")]
    NotReady { addr: SocketAddr, status: u16 },
}

/// `Ok` when `GET /readyz` answers 200 within `timeout` (per step).
///
/// # Errors
/// Unreachable, not HTTP, or any other status.
pub fn readyz(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let io = |source| ProbeError::Unreachable { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: otpd-health\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    // The status line is all we need; a short read suffices.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() {
        match stream.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(io(e)),
        }
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(ProbeError::NotHttp { addr })?;
    if status == 200 {
        Ok(())
    } else {
        Err(ProbeError::NotReady { addr, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_on_every_interface_is_probed_on_loopback() {
        let probe = |s: &str| target(s.parse().expect("addr")).to_string();
        assert_eq!(probe("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(probe("[::]:8080"), "[::1]:8080");
        assert_eq!(probe("10.1.2.3:9000"), "10.1.2.3:9000");
    }

    #[test]
    fn nothing_listening_is_not_ready() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = free.local_addr().expect("addr");
        drop(free);
        let err = readyz(addr, Duration::from_millis(500)).expect_err("closed port");
        assert!(matches!(err, ProbeError::Unreachable { .. }), "{err}");
    }
}
