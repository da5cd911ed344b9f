//! The `sluice` binary: `sluice --config FILE`; `--takeover` starts it on the listening
//! socket of the running one (`[proxy] upgrade_socket`, docs/upgrade.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sluice::config::Scheduler;
use sluice::net::{Net, TokioListener, TokioNet};
use sluice::upgrade;
use sluice::{Config, Dispatch, ProxyHandle, SpawnHere};

const USAGE: &str = "usage: sluice --config FILE [--check | --takeover]\n       sluice --version\n\n  --config FILE  TOML configuration (see docs/config.md)\n  --check        validate the configuration and exit\n  --takeover     take the listening socket over from the sluice serving\n                 [proxy] upgrade_socket, which then drains (docs/upgrade.md)\n  --version      print the version and exit\n";

struct Args {
    config: PathBuf,
    check: bool,
    takeover: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut check = false;
    let mut takeover = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "--check" => check = true,
            "--takeover" => takeover = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("sluice {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args { config: config.ok_or("missing --config FILE")?, check, takeover })
}

fn main() -> ExitCode {
    let Args { config: path, check, takeover } = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sluice: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(1);
        }
    };
    // `SLUICE_LOG` wins over `[log] level`; colour only on a terminal (log files and
    // pipes get plain text); `[log] format = "json"`: one JSON object per line.
    use std::io::IsTerminal;
    let filter = match tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG") {
        Ok(f) => f,
        Err(_) => match tracing_subscriber::EnvFilter::try_new(&cfg.log.level) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("sluice: config: [log] level {:?}: {e}", cfg.log.level);
                return ExitCode::from(1);
            }
        },
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log.format {
        sluice::config::LogFormat::Json => builder.json().with_current_span(false).init(),
        sluice::config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).init(),
    }
    if check {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    let workers = match cfg.proxy.worker_threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let (rt, dispatch): (_, Arc<dyn Dispatch<TokioNet>>) = match cfg.proxy.scheduler {
        Scheduler::WorkStealing => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build();
            (rt, Arc::new(SpawnHere))
        }
        Scheduler::Pinned => match pinned::Workers::start(workers, cfg.proxy.max_connections) {
            // The main thread keeps the accept loop, the backend monitor and signals.
            Ok(w) => (tokio::runtime::Builder::new_current_thread().enable_all().build(), Arc::new(w)),
            Err(e) => (Err(e), Arc::new(SpawnHere)),
        },
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let mut seed = [0u8; 8];
        if let Err(e) = getrandom::getrandom(&mut seed) {
            eprintln!("sluice: no OS randomness: {e}");
            return ExitCode::from(1);
        }
        let (handle, mut upgrades) = match start(cfg, takeover, u64::from_le_bytes(seed), dispatch).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::from(1);
            }
        };
        println!("sluice listening on {}", handle.local_addr());
        // Until a signal, or a new process took the listener over.
        let handed_over = loop {
            let takeover = async {
                match upgrades.as_mut() {
                    Some(s) => s.wait_for_takeover().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = wait_for_signal(&handle) => break false,
                r = takeover => match r {
                    Ok(()) => break true,
                    Err(e) => {
                        tracing::error!(error = %e, "the upgrade socket failed; no more hand-overs until restart");
                        upgrades = None;
                    }
                },
            }
        };
        drop(upgrades);
        let left = if handed_over {
            tracing::info!("a new process accepts on the listener: draining (sessions close as they fall idle outside a transaction)");
            tokio::select! {
                biased;
                left = handle.drain() => left,
                _ = wait_for_signal(&handle) => {
                    tracing::info!("signal while draining: shutting down");
                    handle.shutdown().await
                }
            }
        } else {
            tracing::info!("shutting down: no new connections, waiting for running commands");
            handle.shutdown().await
        };
        if left > 0 {
            tracing::warn!(sessions = left, "shutdown timeout reached with sessions still open");
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Starts the proxy: on the listener taken over from the running process (`--takeover`),
/// on a listener of its own, and with the upgrade socket served when configured.
async fn start(cfg: Config, takeover: bool, seed: u64, dispatch: Arc<dyn Dispatch<TokioNet>>) -> sluice::Result<(ProxyHandle, Option<upgrade::Server>)> {
    let Some(path) = cfg.proxy.upgrade_socket.clone() else {
        if takeover {
            return Err(sluice::Error::Config("--takeover needs [proxy] upgrade_socket: the unix socket the running sluice serves".into()));
        }
        return Ok((sluice::start_with_dispatch(TokioNet, cfg, seed, dispatch).await?, None));
    };
    let upgrade_err = |e: std::io::Error| sluice::Error::Upgrade(e.to_string());
    if !takeover {
        let listener = TokioNet.bind(&cfg.proxy.listen).await.map_err(|e| sluice::Error::Config(format!("cannot listen on {}: {e}", cfg.proxy.listen)))?;
        let server = upgrade::Server::bind(&path, vec![(upgrade::CLIENT.into(), listener.try_clone_fd().map_err(upgrade_err)?)])?;
        let handle = sluice::start_on_listener(TokioNet, cfg, seed, dispatch, listener).await?;
        return Ok((handle, Some(server)));
    }
    // Connect first: with no process to take over from, fail before anything else.
    let mut t = upgrade::Takeover::connect(&path).await?;
    let fd = t.take(upgrade::CLIENT).ok_or_else(|| sluice::Error::Upgrade("the running process handed over no client listener".into()))?;
    let std_listener = upgrade::tcp_listener(fd)?;
    let addr = std_listener.local_addr().map_err(upgrade_err)?;
    if addr.to_string() != cfg.proxy.listen {
        tracing::info!(listener = %addr, config = %cfg.proxy.listen, "serving on the listener taken over; [proxy] listen applies at the next plain start");
    }
    let own = std::os::fd::OwnedFd::from(std_listener.try_clone().map_err(upgrade_err)?);
    let listener = TokioListener::from_std(std_listener).map_err(upgrade_err)?;
    // A failed start drops `t`: the running process keeps serving.
    let handle = sluice::start_on_listener(TokioNet, cfg, seed, dispatch, listener).await?;
    if let Err(e) = t.accepting().await {
        tracing::warn!(error = %e, "the old process did not confirm the hand-over; serving anyway");
    }
    let server = match upgrade::Server::bind(&path, vec![(upgrade::CLIENT.into(), own)]) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the upgrade socket: no further hand-over from this process");
            None
        }
    };
    tracing::info!(listener = %addr, "took the listener over; the old process drains");
    Ok((handle, server))
}

/// Waits for SIGTERM or SIGINT; SIGHUP re-reads the config file meanwhile (the outcome
/// is logged: `ProxyHandle::reload`).
async fn wait_for_signal(handle: &sluice::ProxyHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) {
        (Ok(mut term), Ok(mut int), Ok(mut hup)) => loop {
            tokio::select! {
                biased;
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = handle.reload();
                }
            }
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `scheduler = "pinned"`: one single-threaded runtime per worker thread. The accept loop
/// (on the main thread) hands each accepted connection to the worker with the fewest open
/// sessions; the session, its backend connection and all its timers then live on that
/// thread until the session ends, as in HAProxy's thread model, instead of migrating
/// between the threads of a work-stealing runtime.
mod pinned {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use sluice::net::TokioNet;
    use sluice::{Dispatch, Session};

    type Handoff = (std::net::TcpStream, Session<TokioNet>);

    struct Worker {
        tx: tokio::sync::mpsc::Sender<Handoff>,
        /// Sessions handed to this worker and not yet ended.
        open: Arc<AtomicUsize>,
    }

    pub struct Workers {
        workers: Vec<Worker>,
        /// Sessions open on all workers together.
        total: Arc<AtomicUsize>,
        /// Where the search for the least loaded worker starts (rotates, so ties spread).
        next: AtomicUsize,
    }

    /// Counts a session as open on its worker, and in the total, until it ends or is
    /// dropped.
    struct OpenGuard(Arc<AtomicUsize>, Arc<AtomicUsize>);

    impl Drop for OpenGuard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
            self.1.fetch_sub(1, Ordering::Relaxed);
        }
    }

    impl Workers {
        /// Starts `n` worker threads. `queue` bounds each worker's hand-off queue (the
        /// proxy's `max_connections` already bounds the sessions in flight).
        pub fn start(n: usize, queue: usize) -> std::io::Result<Workers> {
            let mut workers = Vec::with_capacity(n);
            let total = Arc::new(AtomicUsize::new(0));
            for i in 0..n.max(1) {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Handoff>(queue.max(1));
                let open = Arc::new(AtomicUsize::new(0));
                let still_open = total.clone();
                std::thread::Builder::new().name(format!("sluice-worker-{i}")).spawn(move || {
                    rt.block_on(async move {
                        while let Some((stream, session)) = rx.recv().await {
                            match tokio::net::TcpStream::from_std(stream) {
                                Ok(s) => {
                                    tokio::spawn(session(s));
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot register a client connection with worker {i}"),
                            }
                        }
                        // The accept loop has ended (shutdown, or a hand-over). Dropping
                        // the runtime would cancel the sessions, so keep running them until
                        // they end — those of every worker: a pooled backend connection
                        // opened here may serve a session on another worker, and its I/O
                        // stops with this runtime.
                        while still_open.load(Ordering::Relaxed) > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    })
                })?;
                workers.push(Worker { tx, open });
            }
            Ok(Workers { workers, total, next: AtomicUsize::new(0) })
        }

        /// The worker with the fewest open sessions; among equals, the search start
        /// rotates so ties spread.
        pub fn least_loaded_index(&self) -> usize {
            let n = self.workers.len();
            let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
            (0..n).map(|k| (first + k) % n).min_by_key(|&i| self.workers[i].open.load(Ordering::Relaxed)).unwrap_or(0)
        }

        #[cfg(test)]
        pub fn open_counter(&self, i: usize) -> &AtomicUsize {
            &self.workers[i].open
        }
    }

    impl Dispatch<TokioNet> for Workers {
        fn dispatch(&self, stream: tokio::net::TcpStream, session: Session<TokioNet>) {
            let worker = &self.workers[self.least_loaded_index()];
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand a client connection to a worker");
                    return;
                }
            };
            worker.open.fetch_add(1, Ordering::Relaxed);
            self.total.fetch_add(1, Ordering::Relaxed);
            let guard = OpenGuard(worker.open.clone(), self.total.clone());
            let session: Session<TokioNet> = Box::new(move |s| {
                Box::pin(async move {
                    let _guard = guard;
                    session(s).await
                })
            });
            if let Err(e) = worker.tx.try_send((stream, session)) {
                // Cannot happen while the queue holds max_connections; run it here then.
                let (stream, session) = match e {
                    tokio::sync::mpsc::error::TrySendError::Full(x) | tokio::sync::mpsc::error::TrySendError::Closed(x) => x,
                };
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(s) => {
                        tokio::spawn(session(s));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot register a client connection"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::pinned::Workers;

    #[test]
    fn new_sessions_go_to_the_worker_with_the_fewest_open_sessions_and_ties_rotate() {
        let w = Workers::start(3, 16).unwrap();
        let picks: Vec<usize> = (0..3).map(|_| w.least_loaded_index()).collect();
        assert_eq!(picks, vec![0, 1, 2], "ties rotate over the workers");
        w.open_counter(0).fetch_add(2, Ordering::Relaxed);
        w.open_counter(2).fetch_add(1, Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(w.least_loaded_index(), 1, "the worker without sessions");
        }
        w.open_counter(1).fetch_add(3, Ordering::Relaxed);
        assert_eq!(w.least_loaded_index(), 2);
    }
    /// A pooled backend connection may be opened by a session on one worker and used by
    /// a session on another: a worker whose own sessions have ended must keep its
    /// runtime (which drives that connection's I/O) until every worker's sessions end.
    #[test]
    fn a_worker_keeps_its_runtime_until_the_sessions_of_every_worker_ended() {
        use sluice::{Dispatch, Session};
        use sluice::net::TokioNet;
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let w = Workers::start(2, 4).unwrap();
            let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
            let (conn_tx, conn_rx) = tokio::sync::oneshot::channel::<tokio::net::TcpStream>();
            let (result_tx, result_rx) = std::sync::mpsc::channel();
            // Worker 0: opens a connection (registered with worker 0's runtime), hands it
            // on and ends.
            let opener: Session<TokioNet> = Box::new(move |_client| {
                Box::pin(async move {
                    let _ = go_rx.await;
                    let _ = conn_tx.send(tokio::net::TcpStream::connect(addr).await.unwrap());
                })
            });
            // Worker 1: uses that connection after worker 0 has no session left.
            let user: Session<TokioNet> = Box::new(move |_client| {
                Box::pin(async move {
                    let mut conn = conn_rx.await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    let _ = result_tx.send(conn.write_all(b"still driven").await.map_err(|e| e.to_string()));
                })
            });
            let client = || tokio::net::TcpStream::connect(addr);
            w.dispatch(client().await.unwrap(), opener);
            w.dispatch(client().await.unwrap(), user);
            drop(w); // as when the accept loop ends
            go_tx.send(()).unwrap();
            let mut accepted = Vec::new();
            for _ in 0..3 {
                accepted.push(listener.accept().await.unwrap());
            }
            let result = tokio::task::spawn_blocking(move || result_rx.recv_timeout(std::time::Duration::from_secs(5))).await.unwrap();
            assert_eq!(result, Ok(Ok(())), "the connection opened on worker 0 still works");
        });
    }
}
