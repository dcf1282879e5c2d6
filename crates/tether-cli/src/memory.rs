//! Process resources a server at scale needs: giving the memory of
//! departed connections back to the system, and enough file descriptors.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse, and
//! raises its `mmap` threshold each time a large block is freed, so after
//! thousands of compressed connections leave (each held a few hundred KiB
//! of zlib state) a server's resident memory stays at its peak. A server
//! that has just lost many connections asks the allocator to return its
//! free pages (`malloc_trim`): one pass over the arenas, off the runtime's
//! worker threads, once a wave of departures has passed, never on the
//! message path.

use std::time::Duration;

use tether::Hub;

/// Connections that must have left since the last trim before another.
const DEPARTURES_PER_TRIM: usize = 256;

/// Watches the hub's count and trims after enough departures. Runs until
/// the runtime ends.
pub async fn trim_after_departures(hub: Hub) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_count = hub.count();
    let mut departed = 0;
    loop {
        ticks.tick().await;
        let count = hub.count();
        let leaving = count < last_count;
        departed += last_count.saturating_sub(count);
        last_count = count;
        // Once the wave has passed: the connections that left during this
        // tick may still be freeing their buffers.
        if departed >= DEPARTURES_PER_TRIM && !leaving {
            departed = 0;
            // A trim of gigabytes takes milliseconds: not on a worker.
            let _ = tokio::task::spawn_blocking(return_free_pages).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_free_pages() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes the arena locks itself and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_free_pages() {}

/// Raises this process's open-file limit to its hard limit: every
/// connection is a descriptor, and the soft limit (often 1,024) would cap
/// a server or a load generator far below what the machine holds.
/// Returns the limit now in force.
#[cfg(unix)]
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid, initialised `rlimit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}
