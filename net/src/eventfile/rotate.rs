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
//!
//! Modes: `PATH` is created with the configured mode (default
//! [`DEFAULT_FILE_MODE`], 0600: only root reads captured plaintext), and
//! every file opened or shifted here is set to exactly that mode, so an
//! existing file with a wider one (an earlier run's 0644) is tightened.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the files rcapture writes unless told otherwise: owner only.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

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
pub(super) fn shift(path: &Path, keep: usize, mode: u32) -> io::Result<Rotated> {
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
        let to = rotated_path(path, n + 1);
        match fs::rename(&from, &to) {
            Ok(()) => fs::set_permissions(&to, Permissions::from_mode(mode))
                .map_err(|e| with_path(e, "chmod", &to))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound && n == 0 => {}
            Err(e) => return Err(with_path(e, "rename", &from)),
        }
    }
    Ok(r)
}

/// Opens `path` with `opts`, created with `mode`, and sets the file's mode
/// to `mode` if it is a regular file (an existing file keeps its own mode on
/// open). A device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named
/// pipe) keeps its mode: it is shared with the rest of the system.
pub fn open_with_mode(opts: &mut OpenOptions, path: &Path, mode: u32) -> io::Result<File> {
    let f = opts.mode(mode).open(path)?;
    if f.metadata()?.file_type().is_file() {
        f.set_permissions(Permissions::from_mode(mode))?;
    }
    Ok(f)
}

/// Creates `PATH` empty, for writing at explicit offsets.
pub(super) fn create(path: &Path, mode: u32) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    open_with_mode(&mut o, path, mode).map_err(|e| with_path(e, "create", path))
}

/// Opens `PATH` to append to it (after a failed rotation: never truncates).
pub(super) fn append(path: &Path, mode: u32) -> io::Result<(File, u64)> {
    let mut o = OpenOptions::new();
    o.append(true).create(true);
    let f = open_with_mode(&mut o, path, mode).map_err(|e| with_path(e, "open", path))?;
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

    /// Regular files get the mode; a device such as /dev/null keeps its own.
    #[test]
    fn only_regular_files_are_chmodded() {
        let dir = std::env::temp_dir().join(format!("rcapture-mode-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.log");
        fs::write(&p, b"").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        let mut o = OpenOptions::new();
        o.append(true).create(true);
        open_with_mode(&mut o, &p, 0o600).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let before = fs::metadata("/dev/null").unwrap().permissions().mode();
        let mut o = OpenOptions::new();
        o.append(true);
        // Opening /dev/null for writing works for anyone; its mode must not change.
        open_with_mode(&mut o, Path::new("/dev/null"), 0o600).unwrap();
        assert_eq!(
            fs::metadata("/dev/null").unwrap().permissions().mode(),
            before
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shifts_and_deletes_the_oldest() {
        let dir = std::env::temp_dir().join(format!("rcapture-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("events.pb");
        assert_eq!(rotated_path(&p, 3), dir.join("events.pb.3"));
        for round in 0..4u8 {
            fs::write(&p, [round]).unwrap();
            let r = shift(&p, 2, 0o600).unwrap();
            assert_eq!(r.deleted, u64::from(round >= 2));
        }
        assert!(!p.exists());
        assert_eq!(fs::read(rotated_path(&p, 1)).unwrap(), [3]);
        assert_eq!(fs::read(rotated_path(&p, 2)).unwrap(), [2]);
        assert!(!rotated_path(&p, 3).exists());
        fs::write(&p, [9]).unwrap();
        assert_eq!(shift(&p, 0, 0o600).unwrap().deleted, 1);
        assert!(!p.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
