//! Running external programs: short-lived helpers (`mariadb`, `openssl`,
//! `mariadb-install-db`) with a deadline, and long-lived `mariadbd` servers
//! through a [`Spawner`] thread so that they die together with the test
//! process.
//!
//! # Why a spawner thread
//!
//! Every child is started with `prctl(PR_SET_PDEATHSIG, SIGKILL)` in a
//! `pre_exec` hook, so the kernel kills it when its parent goes away, even if
//! the parent is killed with SIGKILL and never gets to run destructors. The
//! kernel ties that signal to the *thread* that forked the child, not to the
//! whole process: a server forked from a short-lived thread would be killed as
//! soon as that thread returned. Servers are therefore forked by one dedicated
//! thread per cluster that lives exactly as long as the cluster, whatever
//! thread creates, moves or drops the cluster.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Output of a finished helper program.
#[derive(Debug)]
pub(crate) struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Makes the kernel SIGKILL the child when the thread that spawns it exits.
///
/// If the parent already died between `fork` and `prctl`, the child refuses
/// to `exec` (the spawn then fails with `ESRCH`).
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the hook only calls async-signal-safe syscalls (prctl, getppid)
    // and builds an io::Error from a raw errno without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Runs `cmd` to completion, feeding it `stdin` and capturing its output.
///
/// The program is killed and an [`io::ErrorKind::TimedOut`] error returned if
/// it has not exited after `timeout`. Only for programs that do not leave
/// grandchildren holding the output pipes open.
pub(crate) fn run_captured(
    mut cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> io::Result<Captured> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    let writer = match (child.stdin.take(), stdin) {
        (Some(mut pipe), Some(input)) => {
            let input = input.to_owned();
            // A write error means the program exited early (for example on a
            // connection error); its exit status and stderr tell why.
            Some(thread::spawn(move || {
                drop(pipe.write_all(input.as_bytes()))
            }))
        }
        _ => None,
    };
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    if !matches!(status, Ok(Some(_))) {
        // Timed out, or waiting failed: make sure the child is gone before
        // joining the pipe readers.
        drop(child.kill());
        drop(child.wait());
    }
    if let Some(writer) = writer {
        drop(writer.join());
    }
    let stdout = join_reader(stdout);
    let stderr = join_reader(stderr);
    match status? {
        Some(status) => Ok(Captured {
            status,
            stdout,
            stderr,
        }),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{:?} did not finish within {timeout:?}", cmd.get_program()),
        )),
    }
}

/// Runs `cmd` to completion with stdout and stderr appended to `log`.
///
/// Used for programs that start grandchildren of their own (such as
/// `mariadb-install-db`), whose inherited pipes could outlive a killed
/// program. On timeout the program is killed and a
/// [`io::ErrorKind::TimedOut`] error returned.
pub(crate) fn run_logged(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> io::Result<ExitStatus> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    match wait_until(&mut child, Instant::now() + timeout) {
        Ok(Some(status)) => Ok(status),
        other => {
            drop(child.kill());
            drop(child.wait());
            other?;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{:?} did not finish within {timeout:?}", cmd.get_program()),
            ))
        }
    }
}

/// Polls `child` until it exits (`Some(status)`) or `deadline` passes (`None`).
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            drop(pipe.read_to_end(&mut buf));
            buf
        })
    })
}

fn join_reader(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    reader
        .and_then(|r| r.join().ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Sends `signal` to the process `pid`.
pub(crate) fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens `path` for appending, creating it if needed (server stderr target).
pub(crate) fn append_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// A thread that forks long-lived server processes on behalf of a cluster.
///
/// See the [module documentation](self) for why it exists. Dropping the
/// spawner ends the thread, which makes the kernel SIGKILL every process it
/// spawned that is still alive.
pub(crate) struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    pub(crate) fn new() -> io::Result<Spawner> {
        let (requests, queue) = mpsc::channel::<SpawnRequest>();
        let thread = thread::Builder::new()
            .name("chaos-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in queue {
                    die_with_parent(&mut cmd);
                    drop(reply.send(cmd.spawn()));
                }
            })?;
        Ok(Spawner {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Spawns `cmd` from the spawner thread.
    pub(crate) fn spawn(&self, cmd: Command) -> io::Result<Child> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the spawner thread has exited");
        let (reply, answer) = mpsc::channel();
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send((cmd, reply))
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            drop(thread.join());
        }
    }
}
