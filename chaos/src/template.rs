//! A bootstrapped data directory shared by every cluster on the machine.
//!
//! `mariadb-install-db` takes about a second of CPU time, and several on a
//! busy two-core machine. Its result is always the same for a given server
//! binary and InnoDB sizing, so it is made once, kept in the temporary
//! directory as `sluice-chaos-template-<key>/data`, and copied (sparsely:
//! a fresh data directory is mostly zeros) for every node. The key hashes
//! the `mariadbd` binary's path, size and modification time, the options
//! used and the user id, so an upgraded server or another user gets a fresh
//! template. It is a few megabytes on disk and goes with the temporary
//! directory.
//!
//! The template is bootstrapped in a staging directory named like a
//! cluster directory of the bootstrapping process (so an interrupted
//! bootstrap is cleaned up like an abandoned cluster) and renamed into place
//! atomically; when two processes race, the loser discards its copy.

use std::env;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cluster::TEMP_PREFIX;
use crate::node::{server_binary, INNODB_SIZING, LOG_TAIL_LINES};
use crate::process::run_logged;
use crate::sql::log_tail;

/// Options of `mariadb-install-db` (besides the directories and sizing):
/// `root` without a password on `localhost`, `127.0.0.1` and `::1`, no
/// `test` database, no host name lookups.
const INSTALL_OPTIONS: [&str; 4] = [
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-name-resolve",
    "--user=root",
];

/// Returns the template data directory, bootstrapping it first if needed.
pub(crate) fn datadir(timeout: Duration) -> Result<PathBuf> {
    let temp = env::temp_dir();
    let home = temp.join(format!("{TEMP_PREFIX}template-{:016x}", cache_key()));
    let data = home.join("data");
    if data.is_dir() {
        return Ok(data);
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-template-", std::process::id()))
        .tempdir_in(&temp)
        .context("creating a staging directory for the template")?;
    bootstrap(staging.path(), timeout)?;
    match fs::rename(staging.path(), &home) {
        Ok(()) => {
            // The directory now lives on under its final name.
            let _ = staging.keep();
            tracing::debug!(dir = %home.display(), "bootstrapped a template data directory");
        }
        // Another process or thread got there first; `staging` is removed.
        Err(_) if data.is_dir() => {}
        Err(err) => {
            return Err(err).with_context(|| format!("renaming the template to {}", home.display()))
        }
    }
    Ok(data)
}

/// Runs `mariadb-install-db` into `dir/data` (with `dir/tmp` as `tmpdir`
/// and its output in `dir/install.log`).
fn bootstrap(dir: &Path, timeout: Duration) -> Result<()> {
    let (data, tmp, log) = (dir.join("data"), dir.join("tmp"), dir.join("install.log"));
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut cmd = Command::new("mariadb-install-db");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        // A private tmpdir: see `Node::tmpdir_option`.
        .arg(format!("--tmpdir={}", tmp.display()))
        .args(INSTALL_OPTIONS)
        .args(INNODB_SIZING);
    let status = run_logged(cmd, &log, timeout).context("running mariadb-install-db")?;
    if !status.success() {
        // The server's own messages come before a long generic advice text.
        let text = fs::read_to_string(&log).unwrap_or_default();
        let cause = match text.find("Installation of system tables failed") {
            Some(end) => text[..end].trim_end().to_owned(),
            None => log_tail(&log, LOG_TAIL_LINES),
        };
        bail!("mariadb-install-db failed ({status}):\n{cause}");
    }
    Ok(())
}

/// Identifies what the template depends on.
fn cache_key() -> u64 {
    let mut hasher = DefaultHasher::new();
    let binary = server_binary();
    binary.hash(&mut hasher);
    if let Ok(meta) = fs::metadata(&binary) {
        (meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
    }
    (INSTALL_OPTIONS, INNODB_SIZING).hash(&mut hasher);
    // SAFETY: getuid(2) cannot fail.
    unsafe { libc::getuid() }.hash(&mut hasher);
    hasher.finish()
}

/// Copies the directory tree `from` to `to` (which must not exist).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            copy_sparse(&entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Copies a file, leaving holes where it has blocks of zeros. A fresh data
/// directory is mostly preallocated, still-zero redo log and system
/// tablespace: this writes a tenth of the bytes a plain copy would.
fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut source = File::open(from)?;
    let mut target = File::create(to)?;
    let mut block = vec![0u8; BLOCK];
    // Comparing with a zero block is a memcmp, fast even in debug builds.
    let zeros = vec![0u8; BLOCK];
    let mut length = 0u64;
    loop {
        let n = source.read(&mut block)?;
        if n == 0 {
            break;
        }
        if block[..n] == zeros[..n] {
            target.seek(SeekFrom::Current(n as i64))?;
        } else {
            target.write_all(&block[..n])?;
        }
        length += n as u64;
    }
    // Sets the size when the file ends in a hole.
    target.set_len(length)?;
    target.set_permissions(source.metadata()?.permissions())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copies_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::create_dir_all(from.join("sub")).unwrap();
        let mut data = vec![0u8; 300 * 1024];
        data[5] = 1;
        data[200 * 1024] = 2;
        fs::write(from.join("mixed"), &data).unwrap();
        fs::write(from.join("sub/zeros"), vec![0u8; 100 * 1024]).unwrap();
        fs::write(from.join("empty"), b"").unwrap();
        copy_tree(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("mixed")).unwrap(), data);
        assert_eq!(
            fs::read(to.join("sub/zeros")).unwrap(),
            vec![0u8; 100 * 1024]
        );
        assert!(fs::read(to.join("empty")).unwrap().is_empty());
    }

    #[test]
    fn the_template_is_bootstrapped_once() {
        let first = datadir(Duration::from_secs(120)).unwrap();
        assert!(first.join("mysql").is_dir());
        let second = datadir(Duration::from_secs(120)).unwrap();
        assert_eq!(first, second);
    }
}
