//! CPU quotas per node: each `mariadbd` in its own cgroup with a CFS
//! bandwidth limit, so that one node saturates at its share of a CPU as it
//! would on a small host of its own.
//!
//! Kernel documentation: cgroup v2 `cpu.max` and `cpu.stat`
//! (<https://docs.kernel.org/admin-guide/cgroup-v2.html#cpu-interface-files>);
//! cgroup v1 `cpu.cfs_period_us`/`cpu.cfs_quota_us` and `cpuacct.usage`
//! (<https://docs.kernel.org/scheduler/sched-bwc.html>,
//! <https://docs.kernel.org/admin-guide/cgroup-v1/cpuacct.html>).
//!
//! # Which hierarchy
//!
//! [`CpuCgroups::create`] reads `/proc/self/mountinfo`:
//!
//! 1. a `cgroup2` mount whose `cgroup.controllers` lists `cpu` is used
//!    first (the quota goes into `cpu.max` as `"QUOTA 100000"`; usage and
//!    throttling come from `cpu.stat`);
//! 2. otherwise a cgroup v1 hierarchy with the `cpu` controller (the quota
//!    goes into `cpu.cfs_quota_us` with `cpu.cfs_period_us` = 100000;
//!    throttling from `cpu.stat`), plus, for usage, the hierarchy with
//!    `cpuacct` (often the same mount, `cpu,cpuacct`);
//! 3. otherwise [`CpuCgroups::create`] fails: a cluster asked to run with a
//!    quota never runs without one.
//!
//! Machines with a hybrid layout (v1 controllers, and a `cgroup2` mount at
//! `/sys/fs/cgroup/unified` without controllers) take the v1 path.
//!
//! # Layout and lifetime
//!
//! Under the root of each hierarchy used, the launcher creates
//! `sluice-chaos-<pid>-<n>/` (`<n>` counts the clusters of the process) and in
//! it `node<i>/` per node. On cgroup v2 `+cpu` is written to the root's
//! `cgroup.subtree_control` when it is not already enabled there (and left
//! enabled), and to the cluster's own group. Creating groups at the root needs root or a delegated
//! hierarchy; failures say which file could not be written.
//!
//! A server joins its group before it runs any code of its own: the
//! `pre_exec` hook of its `Command` writes `0` ("the writing process") to
//! the group's `cgroup.procs`, so every thread it later starts is capped and
//! counted. [`CpuCgroups`] removes the groups when dropped, after the
//! [`Cluster`](crate::Cluster) has killed and reaped the servers (also while
//! unwinding from a panic). Groups of processes that died without dropping
//! their cluster are removed by the next [`CpuCgroups::create`] (the servers
//! in them died with their parent; see the crate documentation).

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cluster::TEMP_PREFIX;

/// CFS bandwidth period used for every quota, in microseconds (the kernel's
/// default period).
pub(crate) const PERIOD_US: u64 = 100_000;

/// The smallest quota the kernel accepts is 1 ms per period.
pub(crate) const MIN_CPUS: f64 = 1_000.0 / PERIOD_US as f64;

/// The largest quota the launcher accepts, in CPUs.
pub(crate) const MAX_CPUS: f64 = 1024.0;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Clusters of this process with CPU quotas so far (names their groups).
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// The cgroup interface the quotas are implemented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy: `cpu.max`, `cpu.stat`.
    V2,
    /// The legacy `cpu` (and `cpuacct`) controllers: `cpu.cfs_quota_us`,
    /// `cpuacct.usage`.
    V1,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V2 => "cgroup v2",
            CgroupVersion::V1 => "cgroup v1",
        })
    }
}

/// CPU time and throttling of one node's cgroup since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuStat {
    /// CPU time used by the group's processes (`usage_usec` on cgroup v2,
    /// `cpuacct.usage` on v1); `None` on a v1 machine without the `cpuacct`
    /// controller.
    pub usage: Option<Duration>,
    /// Enforcement periods in which the group was runnable (`nr_periods`).
    pub periods: u64,
    /// Periods in which it ran out of quota (`nr_throttled`).
    pub throttled_periods: u64,
    /// Total time it spent throttled (`throttled_usec`/`throttled_time`).
    pub throttled: Duration,
}

/// A cluster's cgroup layout as found in `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    V2 {
        root: PathBuf,
    },
    V1 {
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
    },
}

/// One node's cgroup: its directory in the `cpu` hierarchy and, on v1 with a
/// separate `cpuacct` hierarchy, its directory there.
#[derive(Debug)]
pub struct CpuCgroup {
    version: CgroupVersion,
    cpu: PathBuf,
    /// Where `cpuacct.usage` is (v1 only; equal to `cpu` when co-mounted).
    acct: Option<PathBuf>,
    /// `cgroup.procs` of every group the server joins, for the pre-exec hook.
    procs: Vec<CString>,
}

impl CpuCgroup {
    /// The interface in use.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The node's group in the hierarchy with the `cpu` controller.
    pub fn path(&self) -> &Path {
        &self.cpu
    }

    /// Every group directory of the node (the `cpu` one first; on v1 also the
    /// `cpuacct` one when that controller is mounted separately).
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cpu.as_path()];
        if let Some(acct) = self.acct.as_deref().filter(|a| *a != self.cpu) {
            paths.push(acct);
        }
        paths
    }

    /// The quota now in force, in CPUs (`None`: unlimited).
    pub fn quota(&self) -> Result<Option<f64>> {
        match self.version {
            CgroupVersion::V2 => parse_cpu_max(&read(&self.cpu.join("cpu.max"))?),
            CgroupVersion::V1 => {
                let quota: i64 = parse_number(&read(&self.cpu.join("cpu.cfs_quota_us"))?)?;
                let period: u64 = parse_number(&read(&self.cpu.join("cpu.cfs_period_us"))?)?;
                Ok((quota >= 0).then(|| quota as f64 / period as f64))
            }
        }
    }

    /// Sets the quota to `cpus` CPUs per period, or removes it (`None`).
    pub fn set_quota(&self, cpus: Option<f64>) -> Result<()> {
        if let Some(cpus) = cpus {
            validate_cpus(cpus)?;
        }
        let quota_us = cpus.map(quota_us);
        match self.version {
            CgroupVersion::V2 => {
                let value = match quota_us {
                    Some(q) => format!("{q} {PERIOD_US}"),
                    None => format!("max {PERIOD_US}"),
                };
                write(&self.cpu.join("cpu.max"), &value)
            }
            CgroupVersion::V1 => {
                // The period first: the quota is checked against it.
                write(&self.cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                let value = quota_us.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                write(&self.cpu.join("cpu.cfs_quota_us"), &value)
            }
        }
    }

    /// CPU time and throttling counters of the group.
    pub fn stat(&self) -> Result<CpuStat> {
        let stat = read(&self.cpu.join("cpu.stat"))?;
        let field = |name: &str| -> u64 {
            stat.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(match self.version {
            CgroupVersion::V2 => CpuStat {
                usage: Some(Duration::from_micros(field("usage_usec"))),
                periods: field("nr_periods"),
                throttled_periods: field("nr_throttled"),
                throttled: Duration::from_micros(field("throttled_usec")),
            },
            CgroupVersion::V1 => CpuStat {
                usage: match &self.acct {
                    Some(acct) => Some(Duration::from_nanos(parse_number(&read(
                        &acct.join("cpuacct.usage"),
                    )?)?)),
                    None => None,
                },
                periods: field("nr_periods"),
                throttled_periods: field("nr_throttled"),
                throttled: Duration::from_nanos(field("throttled_time")),
            },
        })
    }

    /// Makes the process that `cmd` starts join this group before `exec`.
    pub(crate) fn join_on_exec(&self, cmd: &mut Command) {
        let files = self.procs.clone();
        // SAFETY: the hook only calls async-signal-safe syscalls (open,
        // write, close) on paths prepared before the fork, and builds its
        // error from a raw errno without allocating.
        unsafe {
            cmd.pre_exec(move || {
                for file in &files {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let err = io::Error::last_os_error();
                    libc::close(fd);
                    if written != 1 {
                        return Err(err);
                    }
                }
                Ok(())
            });
        }
    }
}

/// The cgroups of one cluster: a group per node under a parent group the
/// cluster owns, removed on drop.
#[derive(Debug)]
pub(crate) struct CpuCgroups {
    /// The cluster's parent groups (one per hierarchy used).
    parents: Vec<PathBuf>,
    nodes: Vec<CpuCgroup>,
    /// Every directory created, parents before children.
    created: Vec<PathBuf>,
}

impl CpuCgroups {
    /// Creates a group with a quota of `cpus` CPUs for each of `nodes` nodes.
    pub(crate) fn create(nodes: usize, cpus: f64) -> Result<CpuCgroups> {
        validate_cpus(cpus)?;
        let mountinfo =
            fs::read_to_string(MOUNTINFO).with_context(|| format!("reading {MOUNTINFO}"))?;
        let hierarchy = find_hierarchy(&parse_mountinfo(&mountinfo), |root| {
            fs::read_to_string(root.join("cgroup.controllers")).ok()
        })?;
        let name = format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let roots = match &hierarchy {
            Hierarchy::V2 { root } => vec![root.clone()],
            Hierarchy::V1 { cpu, cpuacct } => {
                let mut roots = vec![cpu.clone()];
                roots.extend(cpuacct.iter().filter(|a| *a != cpu).cloned());
                roots
            }
        };
        for root in &roots {
            remove_abandoned_groups(root);
        }
        let mut groups = CpuCgroups {
            parents: Vec::new(),
            nodes: Vec::new(),
            created: Vec::new(),
        };
        // From here on, dropping `groups` removes what was created.
        if let Hierarchy::V2 { root } = &hierarchy {
            enable_cpu_controller(root)?;
        }
        for root in &roots {
            let parent = root.join(&name);
            fs::create_dir(&parent).with_context(|| {
                format!(
                    "creating cgroup {} (CPU quotas need root or a delegated cgroup hierarchy)",
                    parent.display()
                )
            })?;
            groups.created.push(parent.clone());
            groups.parents.push(parent);
        }
        if let Hierarchy::V2 { .. } = &hierarchy {
            enable_cpu_controller(&groups.parents[0])?;
        }
        for i in 0..nodes {
            let node = format!("node{i}");
            let dirs: Vec<PathBuf> = groups.parents.iter().map(|p| p.join(&node)).collect();
            for dir in &dirs {
                fs::create_dir(dir)
                    .with_context(|| format!("creating cgroup {}", dir.display()))?;
                groups.created.push(dir.clone());
            }
            let procs = dirs
                .iter()
                .map(|d| {
                    CString::new(d.join("cgroup.procs").as_os_str().as_bytes())
                        .map_err(|_| anyhow!("cgroup path {} contains a NUL byte", d.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let group = match &hierarchy {
                Hierarchy::V2 { .. } => CpuCgroup {
                    version: CgroupVersion::V2,
                    cpu: dirs[0].clone(),
                    acct: None,
                    procs,
                },
                Hierarchy::V1 { cpuacct, .. } => CpuCgroup {
                    version: CgroupVersion::V1,
                    cpu: dirs[0].clone(),
                    acct: cpuacct
                        .as_ref()
                        .map(|_| dirs.last().cloned().unwrap_or_default()),
                    procs,
                },
            };
            group
                .set_quota(Some(cpus))
                .with_context(|| format!("setting the CPU quota of {}", group.cpu.display()))?;
            groups.nodes.push(group);
        }
        tracing::info!(
            version = %groups.nodes.first().map_or(CgroupVersion::V2, |g| g.version),
            parent = %groups.parents[0].display(),
            cpus,
            "CPU quota per node"
        );
        Ok(groups)
    }

    /// The group of node `index`.
    pub(crate) fn node(&self, index: usize) -> Option<&CpuCgroup> {
        self.nodes.get(index)
    }
}

impl Drop for CpuCgroups {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            if let Err(err) = remove_group(dir) {
                tracing::warn!(dir = %dir.display(), %err, "cannot remove cgroup");
            }
        }
    }
}

/// Removes an (empty) cgroup directory. A group whose last process has just
/// been reaped can report busy for a moment, so that is retried for a second.
fn remove_group(dir: &Path) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && attempts < 100 => {
                attempts += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Removes the groups of clusters whose process no longer exists.
fn remove_abandoned_groups(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(owner) = owner else {
            continue;
        };
        if owner == std::process::id() || crate::cluster::process_exists(owner) {
            continue;
        }
        let parent = entry.path();
        tracing::info!(dir = %parent.display(), "removing an abandoned cgroup");
        if let Ok(children) = fs::read_dir(&parent) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    drop(remove_group(&child.path()));
                }
            }
        }
        if let Err(err) = remove_group(&parent) {
            tracing::warn!(dir = %parent.display(), %err, "cannot remove abandoned cgroup");
        }
    }
}

/// Makes the `cpu` controller available to the children of v2 group `dir`.
fn enable_cpu_controller(dir: &Path) -> Result<()> {
    let control = dir.join("cgroup.subtree_control");
    if read(&control)?.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    write(&control, "+cpu").context(
        "enabling the cpu controller (a cgroup v2 group with processes of its own cannot \
         pass controllers to its children; run as root outside a container, or delegate a \
         cgroup subtree)",
    )
}

fn validate_cpus(cpus: f64) -> Result<()> {
    if !(MIN_CPUS..=MAX_CPUS).contains(&cpus) {
        bail!(
            "CPU quota {cpus} is out of range: it must be between {MIN_CPUS} and {MAX_CPUS} CPUs"
        );
    }
    Ok(())
}

/// The quota per period for `cpus` CPUs, in microseconds.
pub(crate) fn quota_us(cpus: f64) -> u64 {
    (cpus * PERIOD_US as f64).round() as u64
}

/// The quota in CPUs written in a v2 `cpu.max` (`"max 100000"` → `None`).
fn parse_cpu_max(text: &str) -> Result<Option<f64>> {
    let mut fields = text.split_whitespace();
    let (Some(quota), Some(period)) = (fields.next(), fields.next()) else {
        bail!("unexpected cpu.max contents {text:?}");
    };
    if quota == "max" {
        return Ok(None);
    }
    let quota: f64 = parse_number(quota)?;
    let period: f64 = parse_number(period)?;
    Ok(Some(quota / period))
}

fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.trim()
        .parse()
        .map_err(|_| anyhow!("expected a number, found {text:?}"))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

/// A mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub super_options: Vec<String>,
}

/// Parses `/proc/self/mountinfo` (see proc(5)): field 5 is the mount point
/// (with `\ooo` octal escapes), and after the `-` separator come the file
/// system type, the source and the super-block options.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            let super_options = fields.get(sep + 3).copied().unwrap_or("");
            Some(Mount {
                point: PathBuf::from(unescape_octal(point)),
                fstype: (*fstype).to_owned(),
                super_options: super_options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Undoes the `\ooo` escapes the kernel uses for spaces, tabs, newlines and
/// backslashes in mount points.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match escape {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Chooses the hierarchy for CPU quotas among `mounts`. `controllers` reads
/// the `cgroup.controllers` file of a v2 mount.
pub(crate) fn find_hierarchy(
    mounts: &[Mount],
    controllers: impl Fn(&Path) -> Option<String>,
) -> Result<Hierarchy> {
    let mut v2_seen = Vec::new();
    for mount in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let offered = controllers(&mount.point).unwrap_or_default();
        if offered.split_whitespace().any(|c| c == "cpu") {
            return Ok(Hierarchy::V2 {
                root: mount.point.clone(),
            });
        }
        v2_seen.push(format!(
            "{} offers [{}]",
            mount.point.display(),
            offered.trim()
        ));
    }
    let v1_with = |controller: &str| {
        mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
            .map(|m| m.point.clone())
    };
    if let Some(cpu) = v1_with("cpu") {
        return Ok(Hierarchy::V1 {
            cpu,
            cpuacct: v1_with("cpuacct"),
        });
    }
    let v2 = if v2_seen.is_empty() {
        "no cgroup2 file system is mounted".to_owned()
    } else {
        format!("cgroup2 {} without cpu", v2_seen.join("; "))
    };
    bail!(
        "CPU quotas are not available on this machine: {v2}, and no cgroup v1 hierarchy has the \
         cpu controller (see {MOUNTINFO})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const COMOUNTED: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/cpuset rw,nosuid shared:13 - cgroup cgroup rw,cpuset
";

    #[test]
    fn unified_hierarchy_with_cpu_is_preferred() {
        let mounts = parse_mountinfo(UNIFIED);
        let found =
            find_hierarchy(&mounts, |_| Some("cpuset cpu io memory pids\n".into())).unwrap();
        assert_eq!(
            found,
            Hierarchy::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
    }

    #[test]
    fn hybrid_layout_without_v2_cpu_uses_the_v1_cpu_and_cpuacct_mounts() {
        let mounts = parse_mountinfo(HYBRID);
        let found = find_hierarchy(&mounts, |_| Some("hugetlb\n".into())).unwrap();
        assert_eq!(
            found,
            Hierarchy::V1 {
                cpu: "/sys/fs/cgroup/cpu".into(),
                cpuacct: Some("/sys/fs/cgroup/cpuacct".into()),
            }
        );
    }

    #[test]
    fn cpuset_alone_is_not_mistaken_for_cpu() {
        let mounts = parse_mountinfo(
            "34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        let err = find_hierarchy(&mounts, |_| Some("hugetlb".into())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not available"), "{text}");
        assert!(
            text.contains("/sys/fs/cgroup/unified offers [hugetlb]"),
            "{text}"
        );
    }

    #[test]
    fn comounted_cpu_and_cpuacct_share_one_directory() {
        let mounts = parse_mountinfo(COMOUNTED);
        assert_eq!(
            find_hierarchy(&mounts, |_| None).unwrap(),
            Hierarchy::V1 {
                cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
                cpuacct: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
            }
        );
    }

    #[test]
    fn no_cgroups_at_all_is_an_error() {
        let mounts = parse_mountinfo("22 1 0:21 / / rw - ext4 /dev/vda1 rw\n");
        let err = find_hierarchy(&mounts, |_| None).unwrap_err().to_string();
        assert!(err.contains("no cgroup2 file system is mounted"), "{err}");
    }

    #[test]
    fn mount_points_are_unescaped() {
        let mounts = parse_mountinfo("1 0 0:1 / /mnt/a\\040b\\134c rw - cgroup2 none rw\n");
        assert_eq!(mounts[0].point, PathBuf::from("/mnt/a b\\c"));
    }

    #[test]
    fn quotas_convert_to_microseconds_per_period() {
        assert_eq!(quota_us(0.25), 25_000);
        assert_eq!(quota_us(1.5), 150_000);
        assert_eq!(parse_cpu_max("25000 100000\n").unwrap(), Some(0.25));
        assert_eq!(parse_cpu_max("max 100000\n").unwrap(), None);
        assert!(validate_cpus(0.001).is_err());
        assert!(validate_cpus(f64::NAN).is_err());
        assert!(validate_cpus(0.01).is_ok());
    }
}
