//! Every raw OS call of this crate: signals, thread CPU time, the trigger syscall.

use std::io;

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill has no memory preconditions; a bad pid is an error return.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time used so far by the calling thread, in seconds.
pub fn thread_cpu_secs() -> f64 {
    let ns = rcapture_core::sys::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    ns as f64 / 1e9
}

/// CPU time (user + system) used so far by this whole process, in seconds.
pub fn process_cpu_secs() -> f64 {
    let ns = rcapture_core::sys::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    ns as f64 / 1e9
}

/// The calling thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).unwrap_or(0)
}

/// One getppid(2): the capacity generator's trigger.
pub fn trigger() {
    // SAFETY: getppid has no preconditions and cannot fail; glibc does not cache it.
    unsafe { libc::getppid() };
}

/// The system's 1-minute load average (from /proc/loadavg), if readable.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes `value` to a sysctl file, returning the previous value.
pub fn set_sysctl(path: &str, value: &str) -> io::Result<String> {
    let old = std::fs::read_to_string(path)?;
    std::fs::write(path, value)?;
    Ok(old.trim().to_owned())
}

/// Makes `cmd`'s child get SIGKILL if this thread's process dies first, so a
/// killed harness leaves no tracer running.
pub fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
