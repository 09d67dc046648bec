//! How much memory this process may use: the memory limit of its cgroup (a
//! container's limit), or the machine's RAM when no cgroup sets one.
//!
//! `max_memory = "75%"` is a share of this figure, so a container image can
//! size its cache from whatever limit the orchestrator gives it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The memory available to this process, and where the figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit, in bytes.
    pub bytes: u64,
    /// Where it was read.
    pub source: LimitSource,
}

/// Where a [`MemoryLimit`] was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `memory.max` of a cgroup v2.
    CgroupV2,
    /// `memory.limit_in_bytes` of a cgroup v1 memory controller.
    CgroupV1,
    /// `MemTotal` in `/proc/meminfo`: no cgroup sets a lower limit.
    PhysicalMemory,
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitSource::CgroupV2 => "cgroup v2 memory.max",
            LimitSource::CgroupV1 => "cgroup v1 memory.limit_in_bytes",
            LimitSource::PhysicalMemory => "physical memory",
        })
    }
}

/// Cgroup v1 reports "no limit" as the largest page-aligned `i64`; anything
/// this large is no limit either.
const CGROUP_V1_UNLIMITED: u64 = 1 << 62;

/// Reads the memory limit of this process from `/sys/fs/cgroup` and
/// `/proc`.
///
/// # Errors
/// A message when neither a cgroup limit nor `/proc/meminfo` can be read
/// (for example on a system other than Linux).
pub fn detect() -> Result<MemoryLimit, String> {
    detect_under(Path::new("/"))
}

/// As [`detect`], with `/sys` and `/proc` found under `root` (for tests).
///
/// The cgroup limit is the smallest one set on this process's cgroup and its
/// ancestors, since each level caps the ones below it; it is capped in turn
/// by physical memory.
///
/// # Errors
/// As [`detect`].
pub fn detect_under(root: &Path) -> Result<MemoryLimit, String> {
    let read = |path: &Path| std::fs::read_to_string(root.join(path)).ok();
    let own_cgroups = read(Path::new("proc/self/cgroup")).unwrap_or_default();
    let physical = read(Path::new("proc/meminfo"))
        .as_deref()
        .and_then(parse_meminfo_total);

    let cgroup = if root.join("sys/fs/cgroup/cgroup.controllers").exists() {
        let path = cgroup_v2_path(&own_cgroups).unwrap_or_else(|| PathBuf::from("/"));
        smallest_on_path(&path, |dir| {
            read(&Path::new("sys/fs/cgroup").join(dir).join("memory.max"))
                .as_deref()
                .and_then(parse_cgroup_v2_max)
        })
        .map(|bytes| (bytes, LimitSource::CgroupV2))
    } else {
        let path = cgroup_v1_memory_path(&own_cgroups).unwrap_or_else(|| PathBuf::from("/"));
        smallest_on_path(&path, |dir| {
            read(
                &Path::new("sys/fs/cgroup/memory")
                    .join(dir)
                    .join("memory.limit_in_bytes"),
            )
            .as_deref()
            .and_then(parse_cgroup_v1_limit)
        })
        .map(|bytes| (bytes, LimitSource::CgroupV1))
    };

    match (cgroup, physical) {
        (Some((bytes, source)), Some(ram)) if bytes < ram => Ok(MemoryLimit { bytes, source }),
        (Some((bytes, source)), None) => Ok(MemoryLimit { bytes, source }),
        (_, Some(ram)) => Ok(MemoryLimit {
            bytes: ram,
            source: LimitSource::PhysicalMemory,
        }),
        (None, None) => Err(
            "cannot find how much memory this process may use: no cgroup memory limit \
             and no /proc/meminfo"
                .to_string(),
        ),
    }
}

/// The smallest limit `limit_of` finds on `path` or any of its ancestors;
/// directories without a readable limit are skipped.
fn smallest_on_path(path: &Path, limit_of: impl Fn(&Path) -> Option<u64>) -> Option<u64> {
    path.ancestors()
        .filter_map(|dir| limit_of(dir.strip_prefix("/").unwrap_or(dir)))
        .min()
}

/// The cgroup v2 path in `/proc/self/cgroup` (the `0::/path` line).
fn cgroup_v2_path(own_cgroups: &str) -> Option<PathBuf> {
    own_cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .and_then(safe_cgroup_path)
}

/// The path of the cgroup v1 memory controller in `/proc/self/cgroup` (a
/// line such as `4:memory:/kubepods/pod1/abc`).
fn cgroup_v1_memory_path(own_cgroups: &str) -> Option<PathBuf> {
    own_cgroups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers
            .split(',')
            .any(|controller| controller == "memory")
            .then(|| safe_cgroup_path(path))
            .flatten()
    })
}

/// An absolute cgroup path without `..` (a process outside its cgroup
/// namespace sees such paths; they do not name a directory we can read).
fn safe_cgroup_path(text: &str) -> Option<PathBuf> {
    let text = text.trim();
    (text.starts_with('/') && !text.split('/').any(|part| part == "..")).then(|| text.into())
}

/// Parses a cgroup v2 `memory.max`: a byte count, or `max` for no limit
/// (`None`).
pub fn parse_cgroup_v2_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        number => number.parse().ok(),
    }
}

/// Parses a cgroup v1 `memory.limit_in_bytes`; the huge figure v1 uses for
/// "no limit" gives `None`.
pub fn parse_cgroup_v1_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < CGROUP_V1_UNLIMITED)
}

/// Parses the `MemTotal` line of `/proc/meminfo` (in KiB) into bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:         1234 kB\n";
    const RAM: u64 = 16_384_000 * 1024;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn cgroup_files_parse_including_no_limit() {
        assert_eq!(parse_cgroup_v2_max("536870912\n"), Some(536_870_912));
        assert_eq!(parse_cgroup_v2_max("max\n"), None);
        assert_eq!(parse_cgroup_v2_max("lots"), None);
        assert_eq!(parse_cgroup_v1_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_cgroup_v1_limit("9223372036854771712\n"), None);
        assert_eq!(parse_meminfo_total(MEMINFO), Some(RAM));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn own_cgroup_paths_are_found() {
        assert_eq!(
            cgroup_v2_path("0::/kubepods.slice/pod1/cri-abc\n"),
            Some(PathBuf::from("/kubepods.slice/pod1/cri-abc"))
        );
        assert_eq!(cgroup_v2_path("0::/../../system.slice\n"), None);
        let v1 = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/x\n";
        assert_eq!(
            cgroup_v1_memory_path(v1),
            Some(PathBuf::from("/docker/abc"))
        );
    }

    #[test]
    fn a_container_limit_under_cgroup_v2_wins() {
        let root = tempfile::tempdir().expect("tempdir");
        write(root.path(), "proc/meminfo", MEMINFO);
        write(root.path(), "proc/self/cgroup", "0::/\n");
        write(root.path(), "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(root.path(), "sys/fs/cgroup/memory.max", "1073741824\n");
        let limit = detect_under(root.path()).expect("detects");
        assert_eq!(limit.bytes, 1 << 30);
        assert_eq!(limit.source, LimitSource::CgroupV2);
    }

    #[test]
    fn the_smallest_limit_among_ancestors_applies() {
        let root = tempfile::tempdir().expect("tempdir");
        write(root.path(), "proc/meminfo", MEMINFO);
        write(
            root.path(),
            "proc/self/cgroup",
            "0::/app.slice/shoal.service\n",
        );
        write(root.path(), "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(
            root.path(),
            "sys/fs/cgroup/app.slice/memory.max",
            "2147483648\n",
        );
        write(
            root.path(),
            "sys/fs/cgroup/app.slice/shoal.service/memory.max",
            "max\n",
        );
        assert_eq!(detect_under(root.path()).expect("detects").bytes, 2 << 30);
    }

    #[test]
    fn no_cgroup_limit_means_physical_memory() {
        let root = tempfile::tempdir().expect("tempdir");
        write(root.path(), "proc/meminfo", MEMINFO);
        write(root.path(), "proc/self/cgroup", "0::/\n");
        write(root.path(), "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(root.path(), "sys/fs/cgroup/memory.max", "max\n");
        let limit = detect_under(root.path()).expect("detects");
        assert_eq!(limit.bytes, RAM);
        assert_eq!(limit.source, LimitSource::PhysicalMemory);
    }

    #[test]
    fn cgroup_v1_is_the_fallback_and_ram_caps_it() {
        let root = tempfile::tempdir().expect("tempdir");
        write(root.path(), "proc/meminfo", MEMINFO);
        write(
            root.path(),
            "proc/self/cgroup",
            "4:memory:/kubepods/pod1/abc\n",
        );
        // Inside a container the mount shows its own cgroup at the top.
        write(
            root.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "536870912\n",
        );
        let limit = detect_under(root.path()).expect("detects");
        assert_eq!(limit.bytes, 512 << 20);
        assert_eq!(limit.source, LimitSource::CgroupV1);

        write(
            root.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "99999999999999999\n",
        );
        assert_eq!(detect_under(root.path()).expect("detects").bytes, RAM);
    }

    #[test]
    fn nothing_to_read_is_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let error = detect_under(root.path()).expect_err("no limit anywhere");
        assert!(error.contains("/proc/meminfo"), "{error}");
    }

    #[test]
    fn this_machine_has_a_limit() {
        if cfg!(target_os = "linux") {
            assert!(detect().expect("detects on Linux").bytes > 0);
        }
    }
}
