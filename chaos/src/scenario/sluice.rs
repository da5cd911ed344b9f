//! The `sluice` process of a chaos scenario: started from a binary with a config file
//! written into the cluster's directory, on a fixed port of 127.0.0.1 (so a restart
//! takes the same address and clients reconnect to it), its log in `sluice.log` beside
//! the config. Killed with SIGKILL for the restart scenario, with SIGTERM at the end.

use std::fs::{self, OpenOptions};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running (or restartable) `sluice` process.
pub struct SluiceProcess {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl SluiceProcess {
    /// Writes `config` (its `listen` must be `127.0.0.1:<port>`) into `dir` as
    /// `<name>.toml` and starts `bin` with it (log in `<name>.log`), waiting until it
    /// accepts connections.
    pub fn start(bin: &Path, dir: &Path, name: &str, config: &str, port: u16) -> Result<SluiceProcess> {
        if !bin.is_file() {
            bail!("no sluice binary at {} (build it with `cargo build -p sluice-proxy --bin sluice`, or pass --sluice PATH)", bin.display());
        }
        let path = dir.join(format!("{name}.toml"));
        fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        let mut p = SluiceProcess { bin: bin.to_path_buf(), config: path, log: dir.join(format!("{name}.log")), port, child: None };
        p.spawn()?;
        Ok(p)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).with_context(|| format!("opening {}", self.log.display()))?;
        let err = log.try_clone()?;
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .env("SLUICE_LOG", std::env::var("SLUICE_CHAOS_LOG").unwrap_or_else(|_| "sluice=info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("sluice exited at start ({status}); its log:\n{}", self.log_tail(40));
                }
            }
            if Instant::now() > deadline {
                bail!("sluice did not accept connections on port {} within 30 s; its log:\n{}", self.port, self.log_tail(40));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would; the port is free again once the process is reaped.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().context("killing sluice")?;
            c.wait().context("reaping sluice")?;
        }
        Ok(())
    }

    /// Starts the process again with the same config and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        // A listening socket is released with the process; retry while the port is
        // still held.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    tracing::info!("sluice restart: {e:#}; retrying");
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGTERM, then waits up to 10 s before SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on a child we own and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of the log matching `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
