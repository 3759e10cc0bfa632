//! Every raw OS call of this crate: privileges, RLIMIT_MEMLOCK, page size.
//!
//! bpf() itself goes through aya (whose own `sys` module is the seam there).

use std::{fs, io};

const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// True when the process runs as root or has both CAP_BPF and CAP_PERFMON.
pub(crate) fn may_use_bpf() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    effective_caps()
        .is_some_and(|caps| caps & (1 << CAP_BPF) != 0 && caps & (1 << CAP_PERFMON) != 0)
}

fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Tries to lift RLIMIT_MEMLOCK (kernels before 5.11 charge BPF memory to it).
pub(crate) fn raise_memlock() -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Gives the calling thread (only) its own file-system context and mount
/// namespace, private from the rest of the system, and mounts a fresh bpffs
/// instance over `dir` there: nobody else sees it, and it goes with the
/// thread.
pub(crate) fn private_bpffs(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: unshare(2) with namespace flags only; CLONE_FS and
    // CLONE_NEWNS are allowed in a multi-threaded process and affect the
    // calling thread alone.
    check(unsafe { libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) })?;
    // SAFETY: static NUL-terminated strings; makes every mount of the new
    // namespace private, so the mount below does not propagate out.
    check(unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    // SAFETY: NUL-terminated strings that outlive the call.
    check(unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            path.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    })
}
