//! The `sluice` binary: `sluice --config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice::net::TokioNet;
use sluice::Config;

const USAGE: &str = "usage: sluice --config FILE [--check]\n\n  --config FILE  TOML configuration (see docs/config.md)\n  --check        validate the configuration and exit\n";

fn parse_args() -> Result<(PathBuf, bool), String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut check = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "--check" => check = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((config.ok_or("missing --config FILE")?, check))
}

fn main() -> ExitCode {
    let (path, check) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sluice: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(1);
        }
    };
    if check {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.proxy.worker_threads > 0 {
        builder.worker_threads(cfg.proxy.worker_threads);
    }
    let rt = match builder.enable_all().build() {
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
        let handle = match sluice::start(TokioNet, cfg, u64::from_le_bytes(seed)).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::from(1);
            }
        };
        println!("sluice listening on {}", handle.local_addr());
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, waiting for running commands");
        let left = handle.shutdown().await;
        if left > 0 {
            tracing::warn!(sessions = left, "shutdown timeout reached with sessions still open");
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                biased;
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
