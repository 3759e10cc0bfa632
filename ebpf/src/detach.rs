//! Detaching every probe at once, without waiting for the kernel.
//!
//! Closing the last reference of a uprobe link unregisters its perf uprobe
//! event, which waits for grace periods under the kernel's global
//! `event_mutex`: ~80–100 ms per link on 6.18, one link after the other even
//! from parallel threads (12 links: 1.03 s in turn, 0.83 s from 12 threads).
//!
//! A link whose last reference is a bpffs pin is freed on a kernel worker
//! instead (`bpf_link_put` defers the free when the pin goes). So each link
//! is pinned in a private bpffs instance (mounted in a mount namespace of
//! one short-lived thread, invisible to the rest of the system), its file
//! descriptor closed (not the last reference: fast) and its pin removed (the
//! last reference: the free is queued). The caller returns in about a
//! millisecond; the kernel finishes the unregistration in the background.
//! The programs have stopped capturing before (the `stopped` flag of
//! `rc_filter`), so nothing is recorded in between.
//!
//! Where that is not possible (no bpffs, no mount namespaces, a link that is
//! not a bpf link) the links are closed from parallel threads.

use aya::programs::links::FdLink;
use std::path::Path;

/// Releases `links`. Returns how many were handed to the kernel's worker
/// (the others were closed from parallel threads).
pub(crate) fn release(links: Vec<FdLink>) -> usize {
    if links.is_empty() {
        return 0;
    }
    let dir = std::env::temp_dir();
    // The links move to the thread; if it cannot start, they come back.
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name("rcapture-detach".into())
        .spawn(move || {
            let links: Vec<FdLink> = rx.recv().unwrap_or_default();
            hand_to_kernel(&dir, links)
        });
    let (handed, left) = match t {
        Ok(t) => {
            let _ = tx.send(links);
            t.join().unwrap_or((0, Vec::new()))
        }
        Err(_) => (0, links),
    };
    drop_in_parallel(left);
    handed
}

/// Runs on its own thread (the private mount namespace dies with it).
/// Returns the count handed over and the links it could not pin.
fn hand_to_kernel(dir: &Path, links: Vec<FdLink>) -> (usize, Vec<FdLink>) {
    if let Err(e) = crate::sys::private_bpffs(dir) {
        eprintln!("rcapture: detaching probes in parallel (no private bpffs: {e})");
        return (0, links);
    }
    let mut handed = 0;
    for (i, link) in links.into_iter().enumerate() {
        let pin = dir.join(format!("link{i}"));
        // On failure the link is closed with the error: here, in turn.
        if let Ok(pinned) = link.pin(&pin) {
            drop(pinned); // our fd: the pin still holds the link
            // If the pin cannot be removed, it goes with this thread's
            // mount namespace (the same deferred release).
            let _ = std::fs::remove_file(&pin);
            handed += 1;
        }
    }
    (handed, Vec::new())
}

/// Drops every item on its own thread, all at once.
fn drop_in_parallel<T: Send>(items: Vec<T>) {
    std::thread::scope(|s| {
        for item in items {
            // Without a thread, dropped here (in turn): slower, not wrong.
            let _ = std::thread::Builder::new()
                .name("rcapture-detach".into())
                .spawn_scoped(s, move || drop(item));
        }
    });
}
