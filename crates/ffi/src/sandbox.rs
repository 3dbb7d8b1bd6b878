//! The driver host's sandbox: what a process drops before it loads a driver.
//!
//! In order, [`enter_and_load`] makes the process undumpable (no other
//! process of the same user may open its `/proc/PID/mem`) and die with its
//! parent, leaves the daemon's session (no controlling terminal), closes
//! every descriptor but the ones it is told to keep and puts `/dev/null` on
//! descriptor 2, confines the files it may open with a Landlock ruleset
//! ([`FileAccess`]: read-only the driver, the system's libraries, `/sys` and
//! `/proc/self`; read-write only the devices its config names; nothing
//! else, so not the daemon's data directory, its keys or another process's
//! `/proc` entries), sets resource limits, installs a seccomp filter that
//! allows only the system calls a driver needs, and only then loads the
//! driver. Anything else fails with `EPERM` (or `EACCES` for a path outside
//! the ruleset): no sockets of any family, no `exec`, no new processes or
//! threads, no signals to other processes (`kill`, or `F_SETOWN`/`FIOASYNC`
//! signal arming), no typing into terminals, no creating or truncating
//! files, no file locks (which could stall the daemon's database), no
//! raising of the limits, no `ptrace`, no mounts.
//!
//! The filter is an allow-list, written for x86-64 and aarch64 Linux. A
//! driver that needs another call fails with `EPERM` on it; widening the list
//! is a reviewed change here, not a configuration option.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope,
};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use thiserror::Error;

/// Resource limits for a driver host. Each is set as both the soft and the
/// hard limit (CPU time: hard one second above), and the filter forbids
/// changing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Virtual address space, in bytes (`RLIMIT_AS`).
    pub address_space_bytes: u64,
    /// CPU time, in seconds (`RLIMIT_CPU`); the kernel kills the host past it.
    pub cpu_seconds: u64,
    /// Open descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
}

/// The files a driver host may open once confined (Landlock). Everything
/// else is refused, whatever its permission bits say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAccess {
    /// Files and directory trees opened read-only (the driver library and
    /// whatever else it is configured to read).
    pub read: Vec<PathBuf>,
    /// Devices (files or trees) opened for reading and writing, with device
    /// `ioctl`s; never created, truncated, renamed or removed.
    pub read_write: Vec<PathBuf>,
    /// Whether the host may run on a kernel without Landlock (files are then
    /// confined only by permissions). Off unless the operator opts out.
    pub dangerous_allow_without_landlock: bool,
}

/// What [`FileAccess`] always adds: what a driver's loader and a sensor
/// driver read. System libraries hold no secrets; `/proc/self` is this
/// process only; the character devices hold nothing.
pub const ALWAYS_READ: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/sys",
    "/proc/self",
];

/// The Landlock ABI the ruleset is written for; on an older kernel the
/// rights it does not know are dropped (best effort), and on a kernel
/// without Landlock nothing is enforced, which the host refuses unless
/// [`FileAccess::dangerous_allow_without_landlock`].
const LANDLOCK_ABI: ABI = ABI::V6;

/// How a host ended up confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confinement {
    /// Whether the Landlock ruleset is in force (fully, or as far as the
    /// kernel's Landlock version allows).
    pub files_confined: bool,
}

/// Why the sandbox could not be entered. The host must not load the driver
/// after any of these.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// Listing or closing descriptors failed.
    #[error("cannot close inherited descriptors: {0}")]
    Descriptors(std::io::Error),
    /// A `setrlimit` or `prctl` call failed.
    #[error("cannot set {what}: {source}")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Building or installing the seccomp filter failed.
    #[error("cannot install the seccomp filter: {0}")]
    Seccomp(String),
    /// A path the ruleset names could not be opened.
    #[error("cannot open {path} for the file ruleset: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Landlock ruleset could not be built or applied.
    #[error("cannot apply the Landlock file ruleset: {0}")]
    Landlock(String),
    /// The kernel has no Landlock and the operator did not opt out.
    #[error(
        "this kernel does not enforce Landlock, so the driver's file access cannot be confined; \
         the host refuses to run (set dangerous_allow_without_landlock = true on the driver to run it anyway)"
    )]
    NoLandlock,
}

/// Enters the sandbox. `keep` lists the descriptors to keep open (the host's
/// pipe); every other is closed.
///
/// # Errors
/// [`SandboxError`]; the process is then only partly confined and must exit.
fn enter(
    keep: &[RawFd],
    limits: Limits,
    parent: u32,
    files: &FileAccess,
) -> Result<Confinement, SandboxError> {
    make_undumpable().map_err(|source| SandboxError::Limit {
        what: "PR_SET_DUMPABLE",
        source,
    })?;
    die_with_parent(parent)?;
    new_session();
    close_other_descriptors(keep)?;
    stderr_to_null()?;
    let files_confined = confine_files(files)?;
    set_limits(limits)?;
    install_filter()?;
    Ok(Confinement { files_confined })
}

/// Applies the Landlock ruleset of `files` to this process. Returns whether
/// it is enforced.
fn confine_files(files: &FileAccess) -> Result<bool, SandboxError> {
    let landlock = |e: &dyn std::fmt::Display| SandboxError::Landlock(e.to_string());
    let abi = LANDLOCK_ABI;
    let read = AccessFs::from_read(abi);
    let read_write = read | AccessFs::WriteFile | AccessFs::IoctlDev;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| landlock(&e))?
        .scope(Scope::from_all(abi))
        .map_err(|e| landlock(&e))?
        .create()
        .map_err(|e| landlock(&e))?;
    let always = ALWAYS_READ.iter().map(PathBuf::from);
    let optional = always.map(|p| (p, read, false));
    let named = files.read.iter().map(|p| (p.clone(), read, true)).chain(
        files
            .read_write
            .iter()
            .map(|p| (p.clone(), read_write, true)),
    );
    for (path, access, required) in optional.chain(named) {
        let fd = match PathFd::new(&path) {
            Ok(fd) => fd,
            // A system directory this machine does not have.
            Err(_) if !required => continue,
            Err(e) => {
                let source = std::io::Error::other(e.to_string());
                return Err(SandboxError::Path { path, source });
            }
        };
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        // A rule on a file may only carry the rights that apply to files.
        let access = if is_dir {
            access
        } else {
            access & file_rights(abi)
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| landlock(&e))?;
    }
    let status = ruleset.restrict_self().map_err(|e| landlock(&e))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(true),
        RulesetStatus::NotEnforced if files.dangerous_allow_without_landlock => Ok(false),
        RulesetStatus::NotEnforced => Err(SandboxError::NoLandlock),
    }
}

/// The Landlock rights that apply to a file (not a directory).
fn file_rights(abi: ABI) -> BitFlags<AccessFs> {
    AccessFs::from_all(abi)
        & (AccessFs::ReadFile
            | AccessFs::WriteFile
            | AccessFs::Execute
            | AccessFs::Truncate
            | AccessFs::IoctlDev)
}

/// Enters the sandbox, then loads the driver at `path`: the only way this
/// crate offers to load a driver outside its own tests, so that loading
/// always happens confined. `keep` lists the descriptors to keep (the host's
/// pipes); `parent` is the daemon's pid as the host saw it at start.
///
/// # Errors
/// [`HostError::Sandbox`] when the sandbox could not be entered (nothing was
/// loaded), [`HostError::Driver`] when the driver could not be loaded.
pub fn enter_and_load(
    keep: &[RawFd],
    limits: Limits,
    parent: u32,
    path: &std::path::Path,
    files: &FileAccess,
) -> Result<(std::sync::Arc<crate::Library>, Confinement), HostError> {
    let mut files = files.clone();
    files.read.push(path.to_owned());
    let confinement = enter(keep, limits, parent, &files).map_err(HostError::Sandbox)?;
    let library = crate::Library::load(path).map_err(HostError::Driver)?;
    Ok((library, confinement))
}

/// Why [`enter_and_load`] failed.
#[derive(Debug, Error)]
pub enum HostError {
    /// The sandbox could not be entered.
    #[error(transparent)]
    Sandbox(SandboxError),
    /// The driver could not be loaded.
    #[error(transparent)]
    Driver(crate::DriverError),
}

/// Leaves the daemon's session and process group, so the host has no
/// controlling terminal to type into (`TIOCSTI`) and no group to signal.
fn new_session() {
    // SAFETY: setsid takes no arguments. It fails only when the process
    // already leads a group, which is harmless here.
    let _ = unsafe { libc::setsid() };
}

/// Puts `/dev/null` on descriptor 2, so nothing the Rust runtime writes
/// there (an allocation failure, a stack overflow) reaches a device the
/// driver opened.
fn stderr_to_null() -> Result<(), SandboxError> {
    use std::os::fd::IntoRawFd as _;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(SandboxError::Descriptors)?
        .into_raw_fd();
    // Descriptor 2 was closed just before, so the open most likely took it.
    if null == 2 {
        return Ok(());
    }
    // SAFETY: `null` is the descriptor opened above, owned by nobody else
    // since `into_raw_fd`; descriptor 2 is closed and owned by nothing in
    // this process. dup2 copies the one onto the other, then `null` is
    // closed once.
    let rc = unsafe { libc::dup2(null, 2) };
    // SAFETY: as above; `null` is not used after this.
    unsafe { libc::close(null) };
    if rc != 2 {
        return Err(SandboxError::Descriptors(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Asks the kernel to kill this process when its parent dies, so a host never
/// outlives the daemon; and checks the parent is still `parent`, since a
/// daemon that died before the request was made sends no signal.
fn die_with_parent(parent: u32) -> Result<(), SandboxError> {
    // SAFETY: PR_SET_PDEATHSIG takes one integer argument, a signal number;
    // no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if rc != 0 {
        return Err(SandboxError::Limit {
            what: "the parent-death signal",
            source: std::io::Error::last_os_error(),
        });
    }
    if std::os::unix::process::parent_id() != parent {
        return Err(SandboxError::Limit {
            what: "the parent-death signal",
            source: std::io::Error::other("the daemon is gone"),
        });
    }
    Ok(())
}

/// Makes this process undumpable: other processes of the same user can no
/// longer open its `/proc/PID/mem`, `fd` or `environ`, so a driver that
/// escaped its host's filter by some other path still cannot reach into the
/// daemon or a sibling host. The daemon calls it once at start, and every
/// host before it loads its driver.
///
/// # Errors
/// The OS error.
pub fn make_undumpable() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; no memory is
    // passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Closes every open descriptor not in `keep`.
fn close_other_descriptors(keep: &[RawFd]) -> Result<(), SandboxError> {
    // Collect first: the directory's own descriptor must be closed by
    // `read_dir` before we close the rest.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(SandboxError::Descriptors)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if keep.contains(&fd) {
            continue;
        }
        // SAFETY: this runs only through `enter_and_load`, which the driver
        // host calls first thing, before it creates any Rust object owning a
        // descriptor: the only owned descriptors are the standard streams,
        // those not in `keep` are never used again, and descriptor 2 is
        // replaced by /dev/null right after. The descriptor of the directory
        // listing above is in the list but already closed, so closing it
        // fails with EBADF, which is ignored.
        let rc = unsafe { libc::close(fd) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBADF) {
                return Err(SandboxError::Descriptors(e));
            }
        }
    }
    Ok(())
}

fn set_limits(limits: Limits) -> Result<(), SandboxError> {
    let set = |what: &'static str, resource, value: u64| {
        // The hard limit one above the soft one for CPU time: the kernel
        // sends SIGXCPU at the soft limit (a clear reason in the daemon's
        // log) and SIGKILL only at the hard one. The driver cannot move
        // either: setrlimit and prlimit are not in the filter.
        let hard = if resource == libc::RLIMIT_CPU {
            value.saturating_add(1)
        } else {
            value
        };
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: hard,
        };
        // SAFETY: `lim` is a valid rlimit that outlives the call.
        let rc = unsafe { libc::setrlimit(resource, &raw const lim) };
        if rc == 0 {
            Ok(())
        } else {
            Err(SandboxError::Limit {
                what,
                source: std::io::Error::last_os_error(),
            })
        }
    };
    set("RLIMIT_AS", libc::RLIMIT_AS, limits.address_space_bytes)?;
    set("RLIMIT_CPU", libc::RLIMIT_CPU, limits.cpu_seconds)?;
    set("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, limits.open_files)?;
    // No files written, no core dumps (a crashing driver must not fill the
    // disk), no new processes.
    set("RLIMIT_FSIZE", libc::RLIMIT_FSIZE, 0)?;
    set("RLIMIT_CORE", libc::RLIMIT_CORE, 0)?;
    set("RLIMIT_NPROC", libc::RLIMIT_NPROC, 0)?;
    Ok(())
}

/// System calls a driver (and the host loop around it) may make.
const ALLOWED: &[libc::c_long] = &[
    // Descriptors: the pipe, device files, /proc and /sys reads.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents64,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // Time and waiting.
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    // Signals within this process, and leaving.
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Identity and entropy.
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getrandom,
    libc::SYS_uname,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
];

/// x86-64 only: the legacy calls glibc still uses there.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = &[
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_arch_prctl,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[libc::c_long] = &[];

/// `fcntl` commands refused: `F_SETOWN`, `F_SETSIG`, `F_SETOWN_EX` (signal
/// arming), and the record locks `F_SETLK`, `F_SETLKW`, `F_OFD_SETLK`,
/// `F_OFD_SETLKW` (a lock on a file the daemon shares, such as a database's
/// index, would stall it).
const FCNTL_REFUSED: [u64; 7] = [8, 10, 15, 6, 7, 37, 38];
/// `ioctl` requests refused: `TIOCSTI`, `TIOCLINUX`, `FIOASYNC`,
/// `FIOSETOWN`, `SIOCSPGRP`.
const IOCTL_REFUSED: [u64; 5] = [0x5412, 0x541C, 0x5452, 0x8901, 0x8902];

fn target_arch() -> Result<TargetArch, SandboxError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(SandboxError::Seccomp(
            "no filter for this architecture".to_owned(),
        ))
    }
}

/// Builds the filter program (separate from installing it, for tests).
fn build_filter() -> Result<BpfProgram, SandboxError> {
    let err = |e: &dyn std::fmt::Display| SandboxError::Seccomp(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|&nr| (nr, Vec::new()))
        .collect();
    // Signals only to this process itself (abort() raises SIGABRT this way).
    // SAFETY: getpid takes no arguments and cannot fail.
    let pid = unsafe { libc::getpid() };
    let own = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        u64::try_from(pid).map_err(|e| err(&e))?,
    )
    .map_err(|e| err(&e))?;
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![own]).map_err(|e| err(&e))?],
    );
    // A rule's conditions must all hold. `arg Ne v` for each refused value.
    let none_of = |arg: u8, values: &[u64]| -> Result<SeccompRule, SandboxError> {
        let conditions = values
            .iter()
            // Dword: the kernel takes these `cmd` arguments as `unsigned
            // int` and ignores the upper half, so a Qword comparison could
            // be dodged by setting high bits (the flatpak CVE-2019-10063).
            .map(|&v| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&e))?;
        SeccompRule::new(conditions).map_err(|e| err(&e))
    };
    // fcntl, but not to make the kernel signal another process when a
    // descriptor is ready (which could kill the daemon reading our pipe).
    rules.insert(libc::SYS_fcntl, vec![none_of(1, &FCNTL_REFUSED)?]);
    // ioctl for devices, but not to type into a terminal or to arm
    // asynchronous I/O signals to another process.
    rules.insert(libc::SYS_ioctl, vec![none_of(1, &IOCTL_REFUSED)?]);
    // Opening files, but never creating, truncating or making a temporary
    // file: the flags argument must have none of those bits.
    let creates =
        u64::try_from(libc::O_CREAT | libc::O_TRUNC | (libc::O_TMPFILE & !libc::O_DIRECTORY))
            .map_err(|e| err(&e))?;
    let open_flags = |arg: u8| -> Result<SeccompRule, SandboxError> {
        let c = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(creates),
            0,
        )
        .map_err(|e| err(&e))?;
        SeccompRule::new(vec![c]).map_err(|e| err(&e))
    };
    rules.insert(libc::SYS_openat, vec![open_flags(2)?]);
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_open, vec![open_flags(1)?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(u32::try_from(libc::EPERM).map_err(|e| err(&e))?),
        SeccompAction::Allow,
        target_arch()?,
    )
    .map_err(|e| err(&e))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(&e))
}

/// Installs the filter for this thread and every thread it creates (it may
/// create none). Sets `no_new_privs` first, as seccomp requires.
fn install_filter() -> Result<(), SandboxError> {
    let program = build_filter()?;
    seccompiler::apply_filter(&program).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_fcntl_commands_are_the_libc_ones() {
        // libc does not name F_SETSIG (10) and F_SETOWN_EX (15).
        let named = [
            libc::F_SETOWN,
            10,
            15,
            libc::F_SETLK,
            libc::F_SETLKW,
            libc::F_OFD_SETLK,
            libc::F_OFD_SETLKW,
        ];
        let named: Vec<u64> = named.iter().map(|&c| u64::try_from(c).unwrap()).collect();
        assert_eq!(named, FCNTL_REFUSED);
    }

    #[test]
    fn the_filter_builds_for_this_machine() {
        let program = build_filter().unwrap();
        // One instruction at least per allowed call.
        assert!(program.len() > ALLOWED.len());
    }

    #[test]
    fn socket_exec_and_process_creation_are_not_allowed() {
        for nr in [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_kill,
            libc::SYS_ptrace,
            libc::SYS_prlimit64,
            libc::SYS_setrlimit,
            libc::SYS_mount,
            libc::SYS_flock,
            libc::SYS_landlock_create_ruleset,
        ] {
            assert!(
                !ALLOWED.contains(&nr) && !ALLOWED_ARCH.contains(&nr),
                "{nr}"
            );
        }
    }
}
