//! The few Linux system calls and `/proc` reads the benchmark needs: CPU
//! pinning, the file-descriptor limit, parent-death signal, and the RSS and
//! CPU time of a process.

use std::io;

/// Pins the calling thread (and every thread it creates afterwards) to `cpu`.
///
/// # Errors
/// The CPU does not exist or is not allowed for this process.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, initialised `cpu_set_t`; CPU_SET only writes
    // the bit for `cpu`, which it bounds-checks against the set's size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 means the calling thread; the pointer and size describe
    // `set`, which lives across the call.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
///
/// # Errors
/// `getrlimit`/`setrlimit` failed.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid, initialised `rlimit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// Asks the kernel to SIGKILL this process when its parent dies, so a
/// crashed or killed benchmark never leaves servers behind.
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Resident set size of process `pid`, in bytes (`VmRSS` of `/proc/<pid>/status`).
///
/// # Errors
/// The process is gone or the file has no `VmRSS` line.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().map_err(io::Error::other)?;
            return Ok(kib * 1024);
        }
    }
    Err(io::Error::other("no VmRSS line"))
}

/// User plus system CPU time used so far by process `pid` (all its
/// threads), in seconds.
///
/// # Errors
/// The process is gone or `/proc/<pid>/stat` is malformed.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after it are
    // plain. utime and stime are fields 14 and 15, i.e. the 12th and 13th
    // after the closing parenthesis (which is followed by field 3).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| io::Error::other("bad stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> io::Result<u64> {
        fields.get(i).ok_or_else(|| io::Error::other("short stat"))?.parse().map_err(io::Error::other)
    };
    let ticks = field(11)? + field(12)?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(ticks as f64 / hz)
}

/// CPU time all processes of the machine used so far (user, nice, system,
/// irq, softirq, steal of the `cpu` line of `/proc/stat`), in seconds. Over
/// a window, this minus the server's and the client's share is what
/// something else took: a benchmark run is only clean when that is near 0.
///
/// # Errors
/// `/proc/stat` cannot be read or is malformed.
pub fn machine_busy_seconds() -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .next()
        .filter(|line| line.starts_with("cpu "))
        .ok_or_else(|| io::Error::other("bad /proc/stat"))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(busy as f64 / hz)
}

/// Sets both the soft and the hard `RLIMIT_NOFILE` to at least `want`
/// (capped by `/proc/sys/fs/nr_open`; raising the hard limit needs root).
/// Children inherit it. Returns the new soft limit, which may be lower
/// than asked if the hard limit could not be raised.
///
/// # Errors
/// `getrlimit` failed.
pub fn raise_nofile_to(want: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let nr_open: u64 =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(want);
    let target = want.min(nr_open).max(limit.rlim_max);
    let wanted = libc::rlimit { rlim_cur: target, rlim_max: target };
    // SAFETY: `wanted` is a valid, initialised `rlimit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return Ok(target);
    }
    // Not allowed to raise the hard limit: take what the hard limit allows.
    raise_nofile_limit()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in bytes.
///
/// # Errors
/// The process is gone or the file has no such line.
pub fn status_bytes(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')) {
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().map_err(io::Error::other)?;
            return Ok(kib * 1024);
        }
    }
    Err(io::Error::other(format!("no {field} line")))
}
