//! Giving freed memory back to the operating system once a burst of work is over.
//!
//! RocksDB allocates through glibc's malloc (memtables, write batches, block reads), and glibc
//! keeps what it frees for reuse: after RocksDB has flushed a 16 MiB memtable, the memtable's
//! memory stays in the process. That is right while work goes on (the next memtable reuses
//! it), but an idle server kept the memory of its busiest moment indefinitely: Nexmark q12 held
//! 59 MiB of anonymous memory two seconds after its last event, 44 MiB once glibc was asked to
//! trim. (Rust's allocations go through mimalloc, which returns pages it has freed by itself;
//! what it held at that point was live.)
//!
//! [`trim_when_idle`] watches the committed epoch: once it has stood still for a whole interval
//! after moving, it asks glibc to return its free pages (`malloc_trim`). While epochs keep
//! coming it does nothing: returning memory that the next epoch takes again would only cost
//! page faults.

use std::time::Duration;

/// How long the committed epoch must stand still, after moving, before free memory is returned.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Starts a thread that calls `release` each time `epoch` has stood still for `interval` after
/// moving. It stops once `epoch` gives `None` (its source is gone).
pub fn watch<T, E, R>(interval: Duration, epoch: E, release: R) -> std::io::Result<()>
where
    T: PartialEq + Send + 'static,
    E: Fn() -> Option<T> + Send + 'static,
    R: Fn() + Send + 'static,
{
    std::thread::Builder::new().name("freshet-trim".into()).spawn(move || {
        let Some(mut seen) = epoch() else {
            return;
        };
        let mut moved = false;
        loop {
            std::thread::sleep(interval);
            let Some(now) = epoch() else {
                return;
            };
            if now != seen {
                seen = now;
                moved = true;
            } else if moved {
                release();
                moved = false;
            }
        }
    })?;
    Ok(())
}

/// [`watch`] with [`IDLE_AFTER`] and glibc's `malloc_trim`; nothing where the C allocator is
/// not glibc's.
pub fn trim_when_idle<T, E>(epoch: E) -> std::io::Result<()>
where
    T: PartialEq + Send + 'static,
    E: Fn() -> Option<T> + Send + 'static,
{
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            /// glibc: returns free memory at the top of each arena and in whole free pages.
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and locks each arena it trims. (Declared here
        // rather than taken from the `libc` crate: a new dependency of this crate renames
        // every function in it, and `link/symbol-order.txt` would no longer match.)
        watch(IDLE_AFTER, epoch, || unsafe {
            malloc_trim(0);
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = epoch;
        Ok(())
    }
}

/// Takes back, now, the blocks of this thread's allocations that other threads have freed.
///
/// mimalloc gives a block freed by another thread back to the thread that allocated it only
/// when that thread next looks at the block's page, and a thread allocating blocks of many
/// sizes seldom looks at the pages it has finished with. A scan of stored rows allocates each
/// batch on a blocking thread and DataFusion frees it on a runtime worker: counting the 2.76M
/// rows of Nexmark q0's view held ~90 MiB of such blocks until the scan ended; called after
/// each batch a scan hands over, 10-15 MiB (a scan thread's pages are few, so looking costs
/// little).
pub fn collect_freed_elsewhere() {
    extern "C" {
        /// mimalloc: frees what this thread's heap no longer uses (`force`: all of it).
        fn mi_collect(force: bool);
    }
    // The allocator's crate named, so that it is linked where this crate is not the binary
    // (whose global allocator it is) but a test.
    let _ = mimalloc::MiMalloc;
    // SAFETY: mi_collect takes no pointers and acts on the calling thread's own heap.
    unsafe { mi_collect(false) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn releases_once_after_work_stops_and_never_without_work() {
        let epoch = Arc::new(AtomicU64::new(1));
        let released = Arc::new(AtomicU64::new(0));
        let (e, r) = (Arc::downgrade(&epoch), released.clone());
        let interval = Duration::from_millis(20);
        watch(
            interval,
            move || e.upgrade().map(|e| e.load(Ordering::SeqCst)),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        // No epoch has moved: nothing to give back, however long it stays so.
        std::thread::sleep(interval * 10);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        // Work, then quiet: released once.
        epoch.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        while released.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "never released");
            std::thread::sleep(interval);
        }
        std::thread::sleep(interval * 10);
        assert_eq!(released.load(Ordering::SeqCst), 1, "released again without new work");
    }
}
