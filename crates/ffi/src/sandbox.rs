//! The driver host's sandbox: what a process drops before it loads a driver.
//!
//! In order, [`enter`] makes the process die with its parent, closes every
//! descriptor but the ones it is told to keep, sets resource limits, and
//! installs a seccomp filter that allows only the system calls a driver
//! needs. Anything else fails with `EPERM`: no sockets of any family, no
//! `exec`, no new processes or threads, no signals to other processes, no
//! raising of the limits, no `ptrace`, no mounts.
//!
//! The filter is an allow-list, written for x86-64 and aarch64 Linux. A
//! driver that needs another call fails with `EPERM` on it; widening the list
//! is a reviewed change here, not a configuration option.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

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
}

/// Enters the sandbox. `keep` lists the descriptors to keep open (the host's
/// pipe); every other is closed.
///
/// # Errors
/// [`SandboxError`]; the process is then only partly confined and must exit.
pub fn enter(keep: &[RawFd], limits: Limits) -> Result<(), SandboxError> {
    die_with_parent()?;
    close_other_descriptors(keep)?;
    set_limits(limits)?;
    install_filter()
}

/// Asks the kernel to kill this process when its parent dies, so a host never
/// outlives the daemon.
fn die_with_parent() -> Result<(), SandboxError> {
    // SAFETY: PR_SET_PDEATHSIG takes one integer argument, a signal number;
    // no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if rc != 0 {
        return Err(SandboxError::Limit {
            what: "the parent-death signal",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
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
        // SAFETY: the host calls this first thing, before it creates any
        // Rust object owning a descriptor; the only owned descriptors are the
        // standard streams, and those not in `keep` are never used again
        // (the host writes nothing to stderr). The descriptor of the
        // directory listing above is in the list but already closed, so
        // closing it fails with EBADF, which is ignored.
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
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
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
    libc::SYS_open,
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
        ] {
            assert!(
                !ALLOWED.contains(&nr) && !ALLOWED_ARCH.contains(&nr),
                "{nr}"
            );
        }
    }
}
