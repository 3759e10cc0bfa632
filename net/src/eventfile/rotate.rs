//! Size-based rotation of the event file, logrotate style.
//!
//! `PATH` is always the file being written. Rotating closes it and shifts
//! names up by one: `PATH.{keep-1}` → `PATH.{keep}`, …, `PATH.1` → `PATH.2`,
//! `PATH` → `PATH.1`; the old `PATH.{keep}` is deleted first (counted). So
//! `PATH.{keep}` is the oldest file and reading `PATH.{keep}` … `PATH.1`,
//! `PATH` in that order gives the entries in order. With `keep == 0` a
//! rotated file is deleted at once. Rotated files are expected to be
//! numbered without gaps (as this module leaves them); one found past a gap
//! is not counted and may be replaced.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The name of rotated file `n` (`n == 0` is `PATH` itself).
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// What one rotation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rotated {
    /// Files deleted because `keep` were already there.
    pub deleted: u64,
}

/// Shifts `PATH` → `PATH.1` → … (the caller has closed `PATH`). Rotated
/// files are found by probing `PATH.1`, `PATH.2`, … up to the first one
/// missing, so a rotation costs a few syscalls whatever `keep` is.
pub(super) fn shift(path: &Path, keep: usize) -> io::Result<Rotated> {
    if keep == 0 {
        return match fs::remove_file(path) {
            Ok(()) => Ok(Rotated { deleted: 1 }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Rotated::default()),
            Err(e) => Err(with_path(e, "delete", path)),
        };
    }
    let mut r = Rotated::default();
    let mut top = 0;
    while top < keep && rotated_path(path, top + 1).exists() {
        top += 1;
    }
    if top == keep {
        let oldest = rotated_path(path, keep);
        fs::remove_file(&oldest).map_err(|e| with_path(e, "delete", &oldest))?;
        r.deleted += 1;
        top -= 1;
    }
    for n in (0..=top).rev() {
        let from = rotated_path(path, n);
        match fs::rename(&from, rotated_path(path, n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && n == 0 => {}
            Err(e) => return Err(with_path(e, "rename", &from)),
        }
    }
    Ok(r)
}

/// Creates `PATH` empty, for writing at explicit offsets.
pub(super) fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| with_path(e, "create", path))
}

/// Opens `PATH` to append to it (after a failed rotation: never truncates).
pub(super) fn append(path: &Path) -> io::Result<(File, u64)> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| with_path(e, "open", path))?;
    let len = f.metadata()?.len();
    Ok((f, len))
}

/// An error naming the operation and the file.
pub(super) fn with_path(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_deletes_the_oldest() {
        let dir = std::env::temp_dir().join(format!("rcapture-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("events.pb");
        assert_eq!(rotated_path(&p, 3), dir.join("events.pb.3"));
        for round in 0..4u8 {
            fs::write(&p, [round]).unwrap();
            let r = shift(&p, 2).unwrap();
            assert_eq!(r.deleted, u64::from(round >= 2));
        }
        assert!(!p.exists());
        assert_eq!(fs::read(rotated_path(&p, 1)).unwrap(), [3]);
        assert_eq!(fs::read(rotated_path(&p, 2)).unwrap(), [2]);
        assert!(!rotated_path(&p, 3).exists());
        fs::write(&p, [9]).unwrap();
        assert_eq!(shift(&p, 0).unwrap().deleted, 1);
        assert!(!p.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
