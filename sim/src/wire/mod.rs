//! The simulated servers' network front-end: the real MySQL wire protocol over any
//! [`sluice::net::Net`], in front of the synchronous [`crate::engine`].
//!
//! * [`SimServer`] — a handle to one server: engine, lifecycle (running, paused,
//!   crashed), accounts, change notification.
//! * [`serve`] — the accept loop of one server; every connection speaks Handshake v10,
//!   authenticates, and serves COM_QUERY (multi-results), prepared statements (binary
//!   rows), COM_PING / QUIT / INIT_DB / RESET_CONNECTION / SET_OPTION / CHANGE_USER /
//!   PROCESS_KILL / STATISTICS, and the simulation's binlog dump for replicas.
//!
//! Everything a statement waits for (row locks, `GET_LOCK`, GTID waits, `SLEEP`,
//! semi-sync acks) is waited for with `tokio::time` and the server's change notification,
//! then resumed in the engine. A paused server keeps its connections but answers nothing;
//! a crashed one drops them all and refuses new ones until restarted.

mod conn;
pub mod encode;
mod node;
pub mod stmt;

use sluice::net::{Listener, Net};

pub use conn::{DUMP_MARKER, SERVER_CAPS};
pub use node::{default_accounts, Account, Clock, Gone, Life, Plugin, ServerOpts, Signal, SimServer, Watcher, MAX_BATCH, PRE_AUTH_USER};

/// Serves `server` on `listen` (`"host:port"`) forever: binds while the server is up,
/// drops the listener (and every connection) while it is crashed, rebinds on restart.
/// `clock` must have been started on the host this runs on.
pub async fn serve<N: Net>(net: N, listen: String, server: SimServer, clock: Clock) {
    let mut rx = server.subscribe();
    loop {
        let inc = server.wait_up(&mut rx).await;
        let mut listener = match net.bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(server = server.name(), %listen, error = %e, "cannot listen; retrying");
                node::sleep_ms(100).await;
                continue;
            }
        };
        tracing::debug!(server = server.name(), %listen, inc, "listening");
        loop {
            rx.mark_seen();
            if server.state_for(inc).is_err() {
                break;
            }
            tokio::select! {
                biased;
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                a = listener.accept() => match a {
                    Ok((stream, peer)) => {
                        tokio::spawn(conn::run(server.clone(), stream, peer, inc, clock));
                    }
                    Err(e) => {
                        tracing::warn!(server = server.name(), error = %e, "accept failed");
                        node::sleep_ms(10).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::debug!(server = server.name(), "down");
    }
}
