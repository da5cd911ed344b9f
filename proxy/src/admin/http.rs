//! The admin HTTP listener (`[admin] http_listen`): `GET /metrics` (Prometheus text
//! format 0.0.4, <https://prometheus.io/docs/instrumenting/exposition_formats/>),
//! `GET /health` (200 while the process serves) and `GET /ready` (200 when there is a
//! primary and the instance accepts clients, 503 otherwise). HTTP/1.1 without
//! keep-alive: one request per connection, request heads bounded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::{render, Sources};
use crate::net::Net;
use crate::proxy::Shared;

/// Largest request head read; longer ones get 431.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP connections served at once, at most; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// Serves the HTTP listener until shutdown.
pub async fn serve<N: Net>(shared: Arc<Shared<N>>, mut listener: N::Listener) {
    let stop = crate::proxy::stop_accepting(&shared);
    tokio::pin!(stop);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut stop => break,
            p = open.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let Some((stream, _peer)) = crate::proxy::accept_next(&mut listener, &mut stop, "admin HTTP").await else { break };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(HEAD_TIMEOUT * 2, connection(&shared, stream)).await;
            drop(permit);
        });
    }
    tracing::info!("admin HTTP listener closed");
}

/// The first line of a request head, once the head is complete (`\r\n\r\n` seen).
/// `Err(status)` for a head that cannot be served.
pub fn request_line(head: &[u8]) -> Result<(&str, &str), u16> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").ok_or(400u16)?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| 400u16)?;
    let first = text.lines().next().ok_or(400u16)?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else { return Err(400) };
    if !version.starts_with("HTTP/1.") {
        return Err(505);
    }
    Ok((method, target.split('?').next().unwrap_or(target)))
}

async fn connection<N: Net>(shared: &Shared<N>, mut stream: N::Stream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let parsed = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break request_line(&head).map(|(m, t)| (m.to_string(), t.to_string()));
        }
        if head.len() >= MAX_HEAD {
            break Err(431);
        }
        match tokio::time::timeout(HEAD_TIMEOUT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
            Err(_) => break Err(408),
        }
    };
    let (status, content_type, body) = match parsed {
        Err(code) => (code, "text/plain", format!("{}\n", reason(code))),
        Ok((method, _)) if method != "GET" && method != "HEAD" => (405, "text/plain", "only GET and HEAD\n".to_string()),
        Ok((method, target)) => {
            let (code, ctype, body) = respond(shared, &target);
            (code, ctype, if method == "HEAD" { String::new() } else { body })
        }
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// `(status, content type, body)` for a GET of `target`.
fn respond<N: Net>(shared: &Shared<N>, target: &str) -> (u16, &'static str, String) {
    match target {
        "/metrics" => (200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(shared)),
        "/health" => (200, "text/plain", "alive\n".to_string()),
        "/ready" => {
            let shutting_down = shared.shutdown.get();
            match shared.primary() {
                Some(p) if !shutting_down => (200, "text/plain", format!("ready: primary {p}\n")),
                _ if shutting_down => (503, "text/plain", "not ready: shutting down\n".to_string()),
                _ => (503, "text/plain", "not ready: no primary\n".to_string()),
            }
        }
        _ => (404, "text/plain", "not found: try /metrics, /health or /ready\n".to_string()),
    }
}

/// The instance's whole Prometheus exposition now.
pub fn metrics_text<N: Net>(shared: &Shared<N>) -> String {
    let topology = shared.topology.get();
    let a = &shared.failover_counters;
    render(&Sources {
        metrics: &shared.metrics,
        topology: topology.as_ref(),
        pools: shared.node_list.get().iter().map(|n| (n.clone(), shared.pools.stats(n))).collect(),
        pins: shared.pins.snapshot(),
        failover: shared.failover_buffer.stats(),
        failover_actor: (a.failovers.load(Ordering::Relaxed), a.switchovers.load(Ordering::Relaxed), a.fenced.load(Ordering::Relaxed), a.failed_attempts.load(Ordering::Relaxed)),
        classifier: shared.classifier.stats(),
        sessions: shared.registry.len(),
        in_flight: shared.node_stats.snapshot().iter().map(|(n, s)| (n.clone(), s.in_flight.load(Ordering::Relaxed))).collect(),
        drained: shared.node_stats.snapshot().iter().filter(|(_, s)| s.drained.load(Ordering::Relaxed)).map(|(n, _)| n.clone()).collect(),
        uptime_s: shared.started.elapsed().as_secs(),
        rules: shared
            .policy()
            .rules
            .list
            .iter()
            .map(|r| {
                let k = &r.counters;
                let v = [&k.hits, &k.blocked, &k.timed_out, &k.queued, &k.throttled, &k.capped].map(|c| c.load(Ordering::Relaxed));
                (r.name.clone(), v)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_from_complete_heads_only() {
        assert_eq!(request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(("GET", "/metrics")));
        assert_eq!(request_line(b"GET /ready?x=1 HTTP/1.0\r\n\r\n"), Ok(("GET", "/ready")));
        assert_eq!(request_line(b"GET /metrics HTTP/1.1\r\n"), Err(400));
        assert_eq!(request_line(b"GET /metrics HTTP/2\r\n\r\n"), Err(505));
        assert_eq!(request_line(b"garbage\r\n\r\n"), Err(400));
    }
}
