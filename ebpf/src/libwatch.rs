//! The `tls` module's watch for OpenSSL copies that processes start using
//! after the capture started (`libwatch.bpf.c`): control events on a small
//! ring buffer of its own, and the inode tables user space keeps.

use std::os::fd::{AsRawFd as _, RawFd};
use std::path::Path;

use aya::maps::{Array, HashMap, MapData, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::Error;

const MODULE: &str = "libwatch";
const OBJECT: &[u8] = include_bytes!("../obj/libwatch.bpf.o");
const TRACEFS: &str = "/sys/kernel/tracing";
const NAME_LEN: usize = 32;

/// `struct rc_lw_key`: an inode as the kernel names it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
}

// SAFETY: two u64, repr(C), no padding; every bit pattern is valid.
unsafe impl aya::Pod for Key {}

/// `struct rc_lw_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawEvent {
    kind: u32,
    pid: u32,
    dev: u64,
    ino: u64,
    fd: i32,
    held: u32,
    ktime: u64,
    name: [u8; NAME_LEN],
}

const _: () = assert!(std::mem::size_of::<RawEvent>() == 72);

/// What the watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Process `pid` maps a `libssl.so*` file not marked done (through its
    /// descriptor `fd`, still open while the process is held).
    Library {
        pid: u32,
        /// The inode, with `dev` in user space's encoding (`st_dev`).
        file: FileId,
        fd: i32,
        /// SIGSTOP was sent: the process waits for SIGCONT.
        held: bool,
        /// When (CLOCK_MONOTONIC, ns).
        ktime_ns: u64,
        name: String,
    },
    /// Process `pid` executes a file not seen before.
    Exec {
        pid: u32,
        file: FileId,
        name: String,
    },
}

/// A file by device and inode, `dev` as `stat(2)`'s `st_dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The id of the file at `path` (following links).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// From `/proc/PID/maps`'s `MAJOR:MINOR` (hex) and inode columns.
    pub fn from_maps(dev: &str, ino: &str) -> Option<Self> {
        let (major, minor) = dev.split_once(':')?;
        let major = u32::from_str_radix(major, 16).ok()?;
        let minor = u32::from_str_radix(minor, 16).ok()?;
        Some(Self {
            dev: libc::makedev(major, minor),
            ino: ino.parse().ok()?,
        })
    }

    /// `MAJOR:MINOR:INODE`, as `/status` shows it.
    pub fn display(&self) -> String {
        format!(
            "{}:{}:{}",
            libc::major(self.dev),
            libc::minor(self.dev),
            self.ino
        )
    }

    fn from_kernel(k: Key) -> Self {
        let (major, minor) = ((k.dev >> 20) as u32, (k.dev & 0xf_ffff) as u32);
        Self {
            dev: libc::makedev(major, minor),
            ino: k.ino,
        }
    }

    fn to_kernel(self) -> Key {
        let (major, minor) = (
            u64::from(libc::major(self.dev)),
            u64::from(libc::minor(self.dev)),
        );
        Key {
            dev: (major << 20) | (minor & 0xf_ffff),
            ino: self.ino,
        }
    }
}

/// The loaded and attached watch.
pub struct LibWatch {
    /// Programs and links; dropped by [`Self::detach`].
    ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    libs: HashMap<MapData, Key, u32>,
    execs: HashMap<MapData, Key, u8>,
    lost: Array<MapData, u64>,
}

impl std::fmt::Debug for LibWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibWatch")
            .field("attached", &self.ebpf.is_some())
            .finish_non_exhaustive()
    }
}

const LIB_DONE: u32 = 1;

impl LibWatch {
    /// Loads and attaches the watch (mounting tracefs at
    /// `/sys/kernel/tracing` if it is not); `self_tgid` (rcapture) is
    /// never held.
    pub fn load(self_tgid: u32) -> Result<Self, Error> {
        mount_tracefs();
        let mut ebpf = EbpfLoader::new()
            .override_global("self_tgid", &self_tgid, true)
            .load(OBJECT)
            .map_err(|source| Error::Load {
                module: MODULE,
                source,
            })?;
        let perr = |name: &'static str, at: &'static str| {
            move |source| Error::Program {
                module: MODULE,
                name,
                attach_point: at.into(),
                source: Box::new(source),
            }
        };
        {
            let at = "tracepoint syscalls/sys_enter_mmap";
            let prog: &mut TracePoint = ebpf
                .program_mut("rc_lw_mmap")
                .ok_or(Error::MissingProgram {
                    module: MODULE,
                    name: "rc_lw_mmap",
                })?
                .try_into()
                .map_err(perr("rc_lw_mmap", at))?;
            prog.load().map_err(perr("rc_lw_mmap", at))?;
            prog.attach("syscalls", "sys_enter_mmap")
                .map_err(perr("rc_lw_mmap", at))?;
        }
        {
            let at = "tp_btf sched_process_exec";
            let btf = Btf::from_sys_fs()
                .map_err(|e| perr("rc_lw_exec", at)(aya::programs::ProgramError::Btf(e)))?;
            let prog: &mut BtfTracePoint = ebpf
                .program_mut("rc_lw_exec")
                .ok_or(Error::MissingProgram {
                    module: MODULE,
                    name: "rc_lw_exec",
                })?
                .try_into()
                .map_err(perr("rc_lw_exec", at))?;
            prog.load("sched_process_exec", &btf)
                .map_err(perr("rc_lw_exec", at))?;
            prog.attach().map_err(perr("rc_lw_exec", at))?;
        }
        let map = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(Error::MissingMap {
                module: MODULE,
                name,
            })
        };
        let merr = |name: &'static str| {
            move |source| Error::Map {
                name: name.into(),
                source,
            }
        };
        let ring = RingBuf::try_from(map(&mut ebpf, "rc_lw_ring")?).map_err(merr("rc_lw_ring"))?;
        let libs =
            HashMap::try_from(map(&mut ebpf, "rc_lib_state")?).map_err(merr("rc_lib_state"))?;
        let execs =
            HashMap::try_from(map(&mut ebpf, "rc_exec_seen")?).map_err(merr("rc_exec_seen"))?;
        let lost = Array::try_from(map(&mut ebpf, "rc_lw_lost")?).map_err(merr("rc_lw_lost"))?;
        Ok(Self {
            ebpf: Some(ebpf),
            ring,
            libs,
            execs,
            lost,
        })
    }

    /// The ring's descriptor, readable when events are waiting (poll/epoll).
    pub fn poll_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<WatchEvent> {
        let item = self.ring.next()?;
        if item.len() < std::mem::size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: the item holds at least size_of::<RawEvent>() bytes, and
        // RawEvent is plain data valid for any bit pattern; read unaligned.
        let e: RawEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        let end = e.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let name = String::from_utf8_lossy(&e.name[..end]).into_owned();
        let file = FileId::from_kernel(Key {
            dev: e.dev,
            ino: e.ino,
        });
        Some(match e.kind {
            1 => WatchEvent::Library {
                pid: e.pid,
                file,
                fd: e.fd,
                held: e.held != 0,
                ktime_ns: e.ktime,
                name,
            },
            _ => WatchEvent::Exec {
                pid: e.pid,
                file,
                name,
            },
        })
    }

    /// Marks a libssl inode attached or refused: its mappers are no longer
    /// reported nor held.
    pub fn library_done(&mut self, file: FileId) -> Result<(), Error> {
        self.libs
            .insert(file.to_kernel(), LIB_DONE, 0)
            .map_err(|source| Error::Map {
                name: "rc_lib_state".into(),
                source,
            })
    }

    /// Marks an executable inode known: its execs are not reported.
    pub fn exec_known(&mut self, file: FileId) -> Result<(), Error> {
        self.execs
            .insert(file.to_kernel(), 1, 0)
            .map_err(|source| Error::Map {
                name: "rc_exec_seen".into(),
                source,
            })
    }

    /// (events the ring had no room for, SIGSTOPs that failed).
    pub fn lost(&self) -> (u64, u64) {
        let get = |i| self.lost.get(&i, 0).unwrap_or(0);
        (get(0), get(1))
    }

    /// Detaches the programs (no more events, nobody held from now on).
    pub fn detach(&mut self) {
        self.ebpf = None;
    }
}

/// Mounts tracefs where aya looks for tracepoint ids, if it is not there.
fn mount_tracefs() {
    if Path::new(TRACEFS).join("events").exists() {
        return;
    }
    // SAFETY: mount(2) with NUL-terminated static strings and no data.
    unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_convert_both_ways() {
        // 253:1 in the kernel's encoding (major << 20 | minor).
        let k = Key {
            dev: (253 << 20) | 1,
            ino: 42,
        };
        let f = FileId::from_kernel(k);
        assert_eq!((libc::major(f.dev), libc::minor(f.dev)), (253, 1));
        assert_eq!(f.to_kernel(), k);
        assert_eq!(f.display(), "253:1:42");
        assert_eq!(FileId::from_maps("fd:01", "42"), Some(f));
        assert_eq!(FileId::from_maps("fd01", "42"), None);
        assert_eq!(FileId::from_maps("00:00", "x"), None);
    }

    #[test]
    fn a_file_id_is_its_stat() {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata("/proc/self/exe").unwrap();
        let f = FileId::of(Path::new("/proc/self/exe")).unwrap();
        assert_eq!((f.dev, f.ino), (m.dev(), m.ino()));
    }
}
