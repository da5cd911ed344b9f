//! [`SimServer`]: one simulated server as the async layer sees it — the synchronous
//! [`engine::Server`] behind a mutex, its lifecycle (running / paused / crashed), the
//! change notification every waiting task listens to, its accounts and the per-server
//! authentication state.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice::protocol::auth::{self, RsaKeys};
use tokio::sync::Notify;

use crate::engine::{self, BinlogEvent, Flavour, GtidPosition};

/// Simulated time of one host, in milliseconds since the host's software started.
///
/// Every turmoil host runs its own paused tokio runtime whose `Instant`s are not
/// comparable with another host's, so a clock must only be read on the host that
/// created it. All hosts registered before the simulation starts begin at simulated
/// time 0, so their clocks agree.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// Starts a clock at the current instant of the current runtime.
    pub fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// A change notification with deterministic wake-up order.
///
/// `tokio::sync::watch` spreads its waiters over several `Notify`s chosen with tokio's
/// thread RNG, which is seeded randomly unless tokio is built with `tokio_unstable`, so
/// the order in which it wakes tasks differs between runs. This signal keeps one waiter
/// list, so the same simulation wakes its tasks in the same order every time.
#[derive(Default)]
pub struct Signal {
    version: AtomicU64,
    notify: Notify,
}

impl Signal {
    /// Bumps the version and wakes every waiter.
    pub fn bump(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

/// One task's view of a [`Signal`]: which version it has seen.
pub struct Watcher {
    signal: Arc<Signal>,
    seen: u64,
}

impl Watcher {
    pub fn new(signal: Arc<Signal>) -> Watcher {
        let seen = signal.version();
        Watcher { signal, seen }
    }

    /// Marks the current version as seen (call before checking the state the signal
    /// guards, so a change after the check is not missed).
    pub fn mark_seen(&mut self) {
        self.seen = self.signal.version();
    }

    /// Waits until the version differs from the one seen, then marks it seen.
    /// Cancel-safe. Never fails; the `Result` mirrors `watch::Receiver::changed`.
    pub async fn changed(&mut self) -> Result<(), Gone> {
        loop {
            let notified = self.signal.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let v = self.signal.version();
            if v != self.seen {
                self.seen = v;
                return Ok(());
            }
            notified.await;
        }
    }
}

/// Authentication plugin of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plugin {
    Native,
    CachingSha2,
}

impl Plugin {
    pub fn name(self) -> &'static str {
        match self {
            Plugin::Native => auth::NATIVE,
            Plugin::CachingSha2 => auth::CACHING_SHA2,
        }
    }
}

/// A login account of a simulated server.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: String,
    pub password: String,
    /// `None`: the flavour's default plugin (MariaDB: native, MySQL 8: caching_sha2).
    pub plugin: Option<Plugin>,
    /// May run the binlog dump command (replication user).
    pub replication: bool,
}

impl Account {
    pub fn new(user: &str, password: &str) -> Account {
        Account { user: user.into(), password: password.into(), plugin: None, replication: false }
    }

    pub fn with_plugin(mut self, p: Plugin) -> Account {
        self.plugin = Some(p);
        self
    }

    pub fn with_replication(mut self) -> Account {
        self.replication = true;
        self
    }
}

/// Lifecycle of a simulated server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Running,
    /// Keeps its connections but answers nothing (like SIGSTOP).
    Paused,
    /// Down: no listener, no connections, until restarted.
    Crashed,
}

/// How a [`SimServer`] is built.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// Host name (for logs and peer addresses), e.g. `"db0"`.
    pub name: String,
    pub accounts: Vec<Account>,
    /// Version string of the initial handshake; default: MariaDB `5.5.5-<@@version>`,
    /// MySQL `<@@version>`.
    pub handshake_version: Option<String>,
    /// Most connections served at once (ER_CON_COUNT_ERROR beyond).
    pub max_connections: usize,
    /// Largest packet accepted from a client.
    pub max_allowed_packet: usize,
    /// Most prepared statements per connection.
    pub max_prepared: usize,
    /// Bits of the RSA key for caching_sha2_password full authentication, generated on
    /// first use from the server's seeded RNG; `0` (the default) uses the fixed 1024-bit
    /// key in `sim/testdata/server_rsa_key.pem`, as a real server reads its key from a
    /// file (generating one costs more than a whole simulated run's other work).
    pub rsa_bits: usize,
    /// Seed of the server's RNG (nonces, RSA key).
    pub seed: u64,
}

impl ServerOpts {
    pub fn new(name: &str) -> ServerOpts {
        ServerOpts {
            name: name.into(),
            accounts: default_accounts(),
            handshake_version: None,
            max_connections: 512,
            max_allowed_packet: 64 << 20,
            max_prepared: 1024,
            rsa_bits: 0,
            seed: 0,
        }
    }
}

/// `app`/`app`, `repl`/`repl` (replication), `root`/`root`.
pub fn default_accounts() -> Vec<Account> {
    vec![Account::new("app", "app"), Account::new("repl", "repl").with_replication(), Account::new("root", "root").with_replication()]
}

/// The engine's user name for a session whose login is still in progress. The engine
/// cannot change a session's user after it is opened (see the crate docs), and the
/// connection id must be known before the client says who it is.
pub const PRE_AUTH_USER: &str = "unauthenticated";

/// Most binlog events one replication batch carries.
pub const MAX_BATCH: usize = 256;

struct Lifecycle {
    life: Life,
    /// Bumped by every crash: connections of an older incarnation are gone.
    incarnation: u64,
}

struct Inner {
    opts: ServerOpts,
    flavour: Flavour,
    handshake_version: String,
    engine: Mutex<engine::Server>,
    lifecycle: Mutex<Lifecycle>,
    /// Any engine change that may unblock a waiting statement or a replication thread.
    changed: Arc<Signal>,
    /// Lifecycle changes (crash, restart, pause, resume) and sessions killed or gone:
    /// all an idle connection waits for.
    life_signal: Arc<Signal>,
    accounts: BTreeMap<String, Account>,
    sha2_cache: Mutex<BTreeSet<String>>,
    rng: Mutex<ChaCha8Rng>,
    rsa: Mutex<Option<Arc<RsaKeys>>>,
    /// Replication batches handed to a replica's IO thread, by token.
    outbox: Mutex<Outbox>,
    /// The latest simulated time this server's own tasks have seen (for harness calls
    /// that run elsewhere and need a `now`).
    last_now: AtomicU64,
    /// Bumped when the harness reconfigures replication (the IO thread reconnects).
    repl_epoch: AtomicU64,
    /// Open connections (bounded by `max_connections`).
    connections: Mutex<usize>,
}

#[derive(Default)]
struct Outbox {
    next: u64,
    batches: BTreeMap<u64, Vec<BinlogEvent>>,
}

/// A handle to one simulated server; cheap to clone.
#[derive(Clone)]
pub struct SimServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer").field("name", &self.inner.opts.name).field("life", &self.life()).finish()
    }
}

/// The server went away under a task (crashed, or restarted since the task began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl SimServer {
    pub fn new(server: engine::Server, opts: ServerOpts) -> SimServer {
        let flavour = server.flavour();
        let handshake_version = opts.handshake_version.clone().unwrap_or_else(|| match flavour {
            Flavour::MariaDb => format!("5.5.5-{}", server.config().version()),
            Flavour::MySql8 => server.config().version(),
        });
        let accounts = opts.accounts.iter().map(|a| (a.user.clone(), a.clone())).collect();
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let changed = Arc::new(Signal::default());
        SimServer {
            inner: Arc::new(Inner {
                flavour,
                handshake_version,
                engine: Mutex::new(server),
                lifecycle: Mutex::new(Lifecycle { life: Life::Running, incarnation: 0 }),
                changed,
                life_signal: Arc::new(Signal::default()),
                accounts,
                sha2_cache: Mutex::new(BTreeSet::new()),
                rng: Mutex::new(rng),
                rsa: Mutex::new(None),
                outbox: Mutex::new(Outbox::default()),
                last_now: AtomicU64::new(0),
                repl_epoch: AtomicU64::new(0),
                connections: Mutex::new(0),
                opts,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.opts.name
    }

    pub fn opts(&self) -> &ServerOpts {
        &self.inner.opts
    }

    pub fn flavour(&self) -> Flavour {
        self.inner.flavour
    }

    pub fn handshake_version(&self) -> &str {
        &self.inner.handshake_version
    }

    pub fn account(&self, user: &str) -> Option<&Account> {
        self.inner.accounts.get(user)
    }

    /// The plugin an account authenticates with.
    pub fn plugin_of(&self, a: &Account) -> Plugin {
        a.plugin.unwrap_or(self.default_plugin())
    }

    /// The plugin announced in the initial handshake.
    pub fn default_plugin(&self) -> Plugin {
        match self.inner.flavour {
            Flavour::MariaDb => Plugin::Native,
            Flavour::MySql8 => Plugin::CachingSha2,
        }
    }

    /// Runs `f` on the engine; if it changed anything that may unblock a waiter, every
    /// task of this server is woken.
    pub fn with<R>(&self, f: impl FnOnce(&mut engine::Server) -> R) -> R {
        let (r, changed, sessions_changed) = {
            let mut e = self.engine();
            let (g0, s0) = (e.generation(), e.session_generation());
            let r = f(&mut e);
            (r, e.generation() != g0, e.session_generation() != s0)
        };
        if sessions_changed {
            self.inner.life_signal.bump();
        }
        if changed {
            self.notify();
        }
        r
    }

    /// Read-only access to the engine (no notification).
    pub fn engine(&self) -> MutexGuard<'_, engine::Server> {
        self.inner.engine.lock().expect("engine lock")
    }

    /// Wakes every task waiting for an engine change on this server (blocked
    /// statements, replication threads); idle connections are not woken.
    pub fn notify(&self) {
        self.inner.changed.bump();
    }

    /// Wakes every task of this server, idle connections included.
    pub fn notify_all(&self) {
        self.inner.life_signal.bump();
        self.inner.changed.bump();
    }

    /// Watches every engine change (and lifecycle changes).
    pub fn subscribe(&self) -> Watcher {
        Watcher::new(self.inner.changed.clone())
    }

    /// Watches lifecycle changes and sessions being killed or dropped only: what an
    /// idle connection must notice.
    pub fn subscribe_life(&self) -> Watcher {
        Watcher::new(self.inner.life_signal.clone())
    }

    pub fn life(&self) -> Life {
        self.inner.lifecycle.lock().expect("lifecycle lock").life
    }

    pub fn incarnation(&self) -> u64 {
        self.inner.lifecycle.lock().expect("lifecycle lock").incarnation
    }

    /// `Ok(life)` while the incarnation `inc` is still current.
    pub fn state_for(&self, inc: u64) -> Result<Life, Gone> {
        let l = self.inner.lifecycle.lock().expect("lifecycle lock");
        if l.incarnation != inc || l.life == Life::Crashed {
            Err(Gone)
        } else {
            Ok(l.life)
        }
    }

    /// Waits while paused; `Err` once incarnation `inc` is gone.
    pub async fn gate(&self, inc: u64, rx: &mut Watcher) -> Result<(), Gone> {
        loop {
            rx.mark_seen();
            match self.state_for(inc)? {
                Life::Running => return Ok(()),
                Life::Paused | Life::Crashed => {
                    if rx.changed().await.is_err() {
                        return Err(Gone);
                    }
                }
            }
        }
    }

    /// Waits until the server is not crashed; returns its incarnation.
    pub async fn wait_up(&self, rx: &mut Watcher) -> u64 {
        loop {
            rx.mark_seen();
            {
                let l = self.inner.lifecycle.lock().expect("lifecycle lock");
                if l.life != Life::Crashed {
                    return l.incarnation;
                }
            }
            if rx.changed().await.is_err() {
                // The server handle is gone: nothing will ever change again.
                std::future::pending::<()>().await;
            }
        }
    }

    fn set_life(&self, f: impl FnOnce(&mut Lifecycle)) {
        {
            let mut l = self.inner.lifecycle.lock().expect("lifecycle lock");
            f(&mut l);
        }
        self.notify_all();
    }

    /// Crashes the server: connections drop, new ones are refused until
    /// [`Self::restart`]; the engine loses what a crash loses. With `lose_after`, the
    /// binlog tail not contained in that position is lost too (unsynced binlog).
    pub fn crash(&self, lose_after: Option<&GtidPosition>) -> Vec<BinlogEvent> {
        self.set_life(|l| {
            l.life = Life::Crashed;
            l.incarnation += 1;
        });
        self.inner.sha2_cache.lock().expect("cache lock").clear();
        self.inner.outbox.lock().expect("outbox lock").batches.clear();
        let lost = self.with(|e| match lose_after {
            Some(pos) => e.lose_unreplicated(pos),
            None => {
                e.crash();
                Vec::new()
            }
        });
        self.notify_all();
        lost
    }

    /// Brings a crashed server back (a no-op otherwise).
    pub fn restart(&self) {
        self.set_life(|l| {
            if l.life == Life::Crashed {
                l.life = Life::Running;
            }
        });
    }

    pub fn pause(&self) {
        self.set_life(|l| {
            if l.life == Life::Running {
                l.life = Life::Paused;
            }
        });
    }

    pub fn resume(&self) {
        self.set_life(|l| {
            if l.life == Life::Paused {
                l.life = Life::Running;
            }
        });
    }

    /// Records the time a task of this server saw, and returns it.
    pub fn now(&self, clock: &Clock) -> u64 {
        let now = clock.now_ms();
        self.inner.last_now.fetch_max(now, Ordering::Relaxed);
        now
    }

    /// The latest time this server's tasks have seen.
    pub fn last_now(&self) -> u64 {
        self.inner.last_now.load(Ordering::Relaxed)
    }

    pub fn repl_epoch(&self) -> u64 {
        self.inner.repl_epoch.load(Ordering::Relaxed)
    }

    /// Makes the replication IO thread reconnect (after a configuration change).
    pub fn bump_repl_epoch(&self) {
        self.inner.repl_epoch.fetch_add(1, Ordering::Relaxed);
        self.notify();
    }

    /// A 20-byte printable nonce.
    pub fn nonce(&self) -> Vec<u8> {
        let mut rng = self.inner.rng.lock().expect("rng lock");
        (0..20)
            .map(|_| loop {
                let b: u8 = rng.gen_range(33..127);
                if b != b'$' {
                    break b;
                }
            })
            .collect()
    }

    /// The server's RSA key pair, generated on first use.
    pub fn rsa(&self) -> Arc<RsaKeys> {
        let mut slot = self.inner.rsa.lock().expect("rsa lock");
        if let Some(k) = slot.as_ref() {
            return k.clone();
        }
        let keys = {
            let mut rng = self.inner.rng.lock().expect("rng lock");
            generate_rsa(&mut rng, self.inner.opts.rsa_bits)
        };
        let keys = Arc::new(keys);
        *slot = Some(keys.clone());
        keys
    }

    pub fn sha2_cached(&self, user: &str) -> bool {
        self.inner.sha2_cache.lock().expect("cache lock").contains(user)
    }

    pub fn sha2_remember(&self, user: &str) {
        self.inner.sha2_cache.lock().expect("cache lock").insert(user.to_string());
    }

    /// Counts a new connection; `false` when the limit is reached.
    pub(crate) fn try_open_connection(&self) -> bool {
        let mut n = self.inner.connections.lock().expect("conn lock");
        if *n >= self.inner.opts.max_connections {
            return false;
        }
        *n += 1;
        true
    }

    pub(crate) fn close_connection(&self) {
        let mut n = self.inner.connections.lock().expect("conn lock");
        *n = n.saturating_sub(1);
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        *self.inner.connections.lock().expect("conn lock")
    }

    /// Hands a batch of binlog events to a replica; returns its token.
    pub(crate) fn put_batch(&self, events: Vec<BinlogEvent>) -> u64 {
        let mut o = self.inner.outbox.lock().expect("outbox lock");
        o.next += 1;
        let t = o.next;
        o.batches.insert(t, events);
        t
    }

    /// Takes a batch announced over the wire; `None` if it is gone (server crashed).
    pub fn take_batch(&self, token: u64) -> Option<Vec<BinlogEvent>> {
        self.inner.outbox.lock().expect("outbox lock").batches.remove(&token)
    }

    pub(crate) fn drop_batch(&self, token: u64) {
        self.inner.outbox.lock().expect("outbox lock").batches.remove(&token);
    }
}

/// The key servers use unless told to generate one (`ServerOpts::rsa_bits`).
const SERVER_RSA_KEY: &str = include_str!("../../testdata/server_rsa_key.pem");

fn generate_rsa(rng: &mut ChaCha8Rng, bits: usize) -> RsaKeys {
    if bits == 0 {
        return RsaKeys::from_private_pem(SERVER_RSA_KEY).expect("fixed server key parses");
    }
    if bits >= 2048 {
        return RsaKeys::generate(rng).expect("RSA key generation");
    }
    // Smaller keys keep simulations fast; sluice only offers 2048-bit generation, so
    // build the PEM through the same crate it uses.
    sluice_rsa::generate(rng, bits)
}

/// Small RSA keys for simulations, built with the `rsa` crate Sluice depends on.
mod sluice_rsa {
    use rand_chacha::ChaCha8Rng;
    use sluice::protocol::auth::RsaKeys;

    pub fn generate(rng: &mut ChaCha8Rng, bits: usize) -> RsaKeys {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(rng, bits.max(1024)).expect("RSA key generation");
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM encoding");
        RsaKeys::from_private_pem(&pem).expect("own PEM parses")
    }
}

/// Sleeps for `ms` simulated milliseconds (at least 1).
pub(crate) async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms.max(1))).await;
}
