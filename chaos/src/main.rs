//! `chaos`: command-line front end of the cluster launcher.
//!
//! `chaos cluster` starts a MariaDB cluster (see the library documentation),
//! prints where everything is, and keeps it running until SIGINT, SIGTERM or
//! SIGHUP, then tears it down. Output on stdout:
//!
//! ```text
//! chaos: cluster ready in 1.9s: 1 primary + 2 replicas, TLS, asynchronous replication
//!   node0  primary  127.0.0.1:40123  datadir=/tmp/sluice-chaos-AbCd/node0/data
//!   node1  replica  127.0.0.1:40125  datadir=/tmp/sluice-chaos-AbCd/node1/data
//!   node2  replica  127.0.0.1:40127  datadir=/tmp/sluice-chaos-AbCd/node2/data
//!   application user: app  password: app
//!   admin user: root  password: (empty)
//!   CA certificate: /tmp/sluice-chaos-AbCd/tls/ca.pem
//!   CPU quota: 0.25 CPU per node (cgroup v2, /sys/fs/cgroup/sluice-chaos-4242-0/node0 …)
//!   directory: /tmp/sluice-chaos-AbCd (removed on exit)
//! SLUICE_CLUSTER primary=127.0.0.1:40123 replicas=127.0.0.1:40125,127.0.0.1:40127 ca=/tmp/sluice-chaos-AbCd/tls/ca.pem user=app password=app dir=/tmp/sluice-chaos-AbCd
//! chaos: running; stop with Ctrl-C or SIGTERM
//! ```
//!
//! The `SLUICE_CLUSTER` line is for scripts: space-separated `key=value`
//! fields, `replicas` comma-separated (empty without replicas), `ca` empty
//! without TLS. `--print-env` adds `export SLUICE_…=…` lines, and
//! `--state-file FILE` writes the same facts (and per-node details) as JSON
//! once the cluster is ready, removing the file on exit, so a script can
//! wait for the file to appear. With `--cpu-quota CPUS` each node runs in
//! a cgroup of its own capped at CPUS CPUs; the state file then lists each
//! node's cgroup directories (`cgroups`), where `cpu.stat` (and, on cgroup
//! v1, `cpuacct.usage`) tell how much CPU it used and how often it was
//! throttled.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result};
use chaos::{Cluster, ClusterSpec, Node};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "chaos",
    version,
    about = "Real MariaDB clusters for testing Sluice"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a primary/replica cluster and keep it running until SIGINT or SIGTERM.
    Cluster(ClusterArgs),
    /// Run chaos scenarios: a cluster, the sluice binary in front, a recorded client
    /// workload, one fault; print a report per scenario (exit status 1 if any failed).
    Scenario(ScenarioArgs),
}

#[derive(Args)]
struct ScenarioArgs {
    /// Scenarios to run, or `all`: primary-kill, primary-hang, primary-black-hole,
    /// switchover, replica-crash, rolling-restart, sluice-restart.
    #[arg(required = true)]
    names: Vec<String>,
    /// The sluice binary (default: `sluice` beside this program, e.g. target/debug/sluice).
    #[arg(long, value_name = "PATH")]
    sluice: Option<PathBuf>,
    /// Asynchronous replication instead of semi-synchronous.
    #[arg(long = "async")]
    asynchronous: bool,
    /// Concurrent client sessions.
    #[arg(long, default_value_t = 6)]
    clients: u32,
    /// Registers (rows) the workload writes and reads.
    #[arg(long, default_value_t = 48)]
    keys: u32,
    /// Seed of the workload's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Load before the fault, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// Length of a timed fault (black hole, replica down), in milliseconds.
    #[arg(long, default_value_t = 3000)]
    fault_ms: u64,
    /// Load after the heal, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    tail_ms: u64,
    /// Failover target: writes must resume within this after the primary dies.
    #[arg(long, default_value_t = 3000)]
    failover_target_ms: u64,
    /// Sluice instances in front of the cluster (clients spread over them; exactly one
    /// may promote).
    #[arg(long, default_value_t = 1)]
    instances: u32,
    /// Repeat each scenario this many times (seed, seed+1, …).
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Also write the reports as a JSON array to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ClusterArgs {
    /// Number of replicas besides the primary.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Generate a test CA and server certificate and offer TLS on every node.
    #[arg(long)]
    tls: bool,
    /// Use semi-synchronous replication.
    #[arg(long)]
    semi_sync: bool,
    /// Put the nodes in DIR (must be missing or empty; kept on exit)
    /// instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Also print `export SLUICE_...=...` lines for a shell to eval.
    #[arg(long)]
    print_env: bool,
    /// Write the cluster's description as JSON to FILE once it is ready
    /// (removed on exit).
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// User name of the application account.
    #[arg(long, default_value = "app")]
    app_user: String,
    /// Password of the application account.
    #[arg(long, default_value = "app")]
    app_password: String,
    /// Extra mariadbd option for every node (repeatable), e.g.
    /// --server-option=--slave-net-timeout=3
    #[arg(
        long = "server-option",
        value_name = "--OPTION",
        allow_hyphen_values = true
    )]
    server_options: Vec<String>,
    /// Cap each mariadbd at CPUS CPUs (e.g. 0.25 = 25 ms per 100 ms) with a
    /// cgroup of its own; fails if the cgroup cpu controller is unavailable.
    #[arg(long, value_name = "CPUS")]
    cpu_quota: Option<f64>,
    /// Make replica N apply transactions SECS seconds after the primary
    /// committed them (MASTER_DELAY), e.g. --delay-replica 2=3 (repeatable).
    #[arg(long = "delay-replica", value_name = "N=SECS", value_parser = parse_delay)]
    delay_replica: Vec<(usize, u32)>,
}

fn parse_delay(s: &str) -> Result<(usize, u32), String> {
    let (n, secs) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected N=SECS, e.g. 2=3"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a node index"))?;
    let secs = secs
        .trim()
        .parse()
        .map_err(|_| format!("{secs:?} is not a whole number of seconds"))?;
    Ok((n, secs))
}

/// The `--state-file` contents.
#[derive(Serialize)]
struct State<'a> {
    primary: String,
    replicas: Vec<String>,
    ca: Option<&'a Path>,
    app_user: &'a str,
    app_password: &'a str,
    root_user: &'a str,
    root_password: &'a str,
    dir: &'a Path,
    /// CPUs each node is capped at, if any.
    cpu_quota: Option<f64>,
    /// Process id of the `chaos` process keeping the cluster up.
    pid: u32,
    nodes: Vec<NodeInfo<'a>>,
}

#[derive(Serialize)]
struct NodeInfo<'a> {
    index: usize,
    role: &'static str,
    addr: String,
    port: u16,
    server_id: u32,
    datadir: &'a Path,
    socket: &'a Path,
    error_log: &'a Path,
    pid: Option<u32>,
    /// The node's cgroup directories (the `cpu` one first), with a CPU quota.
    cgroups: Vec<&'a Path>,
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("chaos=info")),
        )
        .init();
    let result = match Cli::parse().command {
        Command::Cluster(args) => run_cluster(args),
        Command::Scenario(args) => run_scenarios(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chaos: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_scenarios(args: ScenarioArgs) -> Result<()> {
    use chaos::scenario::{self, Scenario};
    let mut list = Vec::new();
    for n in &args.names {
        if n == "all" {
            list.extend(Scenario::ALL);
        } else {
            list.push(Scenario::parse(n).with_context(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {n:?}; known: {}, all", names.join(", "))
            })?);
        }
    }
    let bin = match args.sluice {
        Some(p) => p,
        None => std::env::current_exe()?.parent().context("no directory for this program")?.join("sluice"),
    };
    let mut opts = scenario::Options::new(bin);
    opts.semi_sync = !args.asynchronous;
    opts.clients = args.clients;
    opts.keys = args.keys;
    opts.warmup = std::time::Duration::from_millis(args.warmup_ms);
    opts.fault = std::time::Duration::from_millis(args.fault_ms);
    opts.tail = std::time::Duration::from_millis(args.tail_ms);
    opts.failover_target = std::time::Duration::from_millis(args.failover_target_ms);
    opts.instances = args.instances.max(1);
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for s in list {
        for run in 0..args.runs {
            opts.seed = args.seed + run;
            let r = scenario::run(s, &opts).with_context(|| format!("scenario {}", s.name()))?;
            println!("{r}");
            if !r.passed {
                failed.push(format!("{} (seed {})", s.name(), opts.seed));
            }
            reports.push(r);
        }
    }
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string_pretty(&reports)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    println!("chaos: {} scenario runs, {} failed{}", reports.len(), failed.len(), if failed.is_empty() { String::new() } else { format!(": {}", failed.join(", ")) });
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} scenario runs failed", failed.len())
    }
}

fn run_cluster(args: ClusterArgs) -> Result<()> {
    // Installed before starting, so a signal during startup still leads to
    // an orderly teardown once startup is over.
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("installing the signal handler")?;

    let spec = ClusterSpec {
        replicas: args.replicas,
        tls: args.tls,
        semi_sync: args.semi_sync,
        base_dir: args.dir,
        app_user: args.app_user,
        app_password: args.app_password,
        server_options: args.server_options,
        cpu_quota: args.cpu_quota,
        replica_delays: args.delay_replica.iter().copied().collect(),
        ..ClusterSpec::default()
    };
    let started = Instant::now();
    let cluster = Cluster::start(spec).context("starting the cluster")?;
    let elapsed = started.elapsed();

    print_summary(&cluster, elapsed.as_secs_f64(), args.print_env);
    if let Some(path) = &args.state_file {
        write_state(&cluster, path)?;
    }
    println!("chaos: running; stop with Ctrl-C or SIGTERM");

    // Either a signal arrived or the handler is gone; both mean stop.
    let _ = stop_rx.recv();
    eprintln!("chaos: stopping the cluster");
    if let Some(path) = &args.state_file {
        if let Err(err) = fs::remove_file(path) {
            eprintln!("chaos: cannot remove {}: {err}", path.display());
        }
    }
    drop(cluster);
    Ok(())
}

fn role(node: &Node) -> &'static str {
    if node.is_primary() {
        "primary"
    } else {
        "replica"
    }
}

fn print_summary(cluster: &Cluster, seconds: f64, print_env: bool) {
    let spec = cluster.spec();
    let app = cluster.app_user();
    let root = cluster.root_user();
    let ca = cluster
        .ca_cert_path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let replicas = cluster
        .replicas()
        .iter()
        .map(|n| n.addr())
        .collect::<Vec<_>>()
        .join(",");
    let primary = cluster.primary().addr();
    let dir = cluster.dir().display().to_string();

    println!(
        "chaos: cluster ready in {seconds:.1}s: 1 primary + {} replica{}, {}, {} replication",
        spec.replicas,
        if spec.replicas == 1 { "" } else { "s" },
        if spec.tls { "TLS" } else { "no TLS" },
        if spec.semi_sync {
            "semi-synchronous"
        } else {
            "asynchronous"
        },
    );
    for node in cluster.nodes() {
        let delay = match cluster.replica_delay(node.index()) {
            0 => String::new(),
            secs => format!("  delay={secs}s"),
        };
        println!(
            "  node{}  {}  {}  datadir={}{delay}",
            node.index(),
            role(node),
            node.addr(),
            node.datadir().display()
        );
    }
    println!(
        "  application user: {}  password: {}",
        app.user, app.password
    );
    println!(
        "  admin user: {}  password: {}",
        root.user,
        if root.password.is_empty() {
            "(empty)"
        } else {
            &root.password
        }
    );
    if !ca.is_empty() {
        println!("  CA certificate: {ca}");
    }
    if let (Some(cpus), Some(group)) = (spec.cpu_quota, cluster.cpu_cgroup(0)) {
        println!(
            "  CPU quota: {cpus} CPU per node ({}, {} …)",
            group.version(),
            group.path().display()
        );
    }
    let kept = if spec.base_dir.is_some() {
        "kept on exit"
    } else {
        "removed on exit"
    };
    println!("  directory: {dir} ({kept})");
    println!(
        "SLUICE_CLUSTER primary={primary} replicas={replicas} ca={ca} user={} password={} dir={dir}",
        app.user, app.password
    );
    if print_env {
        for (name, value) in [
            ("SLUICE_PRIMARY", primary.as_str()),
            ("SLUICE_REPLICAS", replicas.as_str()),
            ("SLUICE_CA", ca.as_str()),
            ("SLUICE_APP_USER", app.user.as_str()),
            ("SLUICE_APP_PASSWORD", app.password.as_str()),
            ("SLUICE_CLUSTER_DIR", dir.as_str()),
        ] {
            println!("export {name}={}", shell_quote(value));
        }
    }
}

/// Quotes `value` for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Writes the state file atomically (temporary file, then rename).
fn write_state(cluster: &Cluster, path: &Path) -> Result<()> {
    let app = cluster.app_user();
    let root = cluster.root_user();
    let state = State {
        primary: cluster.primary().addr(),
        replicas: cluster.replicas().iter().map(|n| n.addr()).collect(),
        ca: cluster.ca_cert_path(),
        app_user: &app.user,
        app_password: &app.password,
        root_user: &root.user,
        root_password: &root.password,
        dir: cluster.dir(),
        cpu_quota: cluster.spec().cpu_quota,
        pid: std::process::id(),
        nodes: cluster
            .nodes()
            .iter()
            .map(|node| NodeInfo {
                index: node.index(),
                role: role(node),
                addr: node.addr(),
                port: node.port(),
                server_id: node.server_id(),
                datadir: node.datadir(),
                socket: node.socket(),
                error_log: node.error_log(),
                pid: node.pid(),
                cgroups: cluster
                    .cpu_cgroup(node.index())
                    .map(|g| g.paths())
                    .unwrap_or_default(),
            })
            .collect(),
    };
    let json = serde_json::to_string_pretty(&state)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    fs::write(&temp, json + "\n")
        .with_context(|| format!("writing {}", Path::new(&temp).display()))?;
    fs::rename(&temp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
