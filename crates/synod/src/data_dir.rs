//! Data directories: created on first use and locked for the life of the process that uses
//! them, so two servers can never write the same durable state.
//!
//! The lock is an exclusive `flock` on the file `LOCK` in the directory. The kernel releases
//! it when the process exits, however it exits (SIGKILL included), so there is no stale lock
//! to clean up after a crash; the file itself stays and holds the pid of the last owner,
//! which is what the error message names and what operators (and tests) can read.
//!
//! Small files beside the durable state (a replica's identity, `up`'s recorded ports) are
//! replaced whole with [`write_atomically`].

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive hold on a data directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Creates `dir` if needed and locks it, or explains who holds it.
pub fn lock(dir: &Path) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let path: PathBuf = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock only reads the descriptor number, which `file` keeps open.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::WouldBlock {
            return Err(error).with_context(|| format!("locking {}", path.display()));
        }
        let mut holder = String::new();
        // The holder's pid is informative only; an unreadable file still means "in use".
        let _ = file.read_to_string(&mut holder);
        let pid = match holder.trim() {
            "" => "unknown".to_string(),
            pid => pid.to_string(),
        };
        bail!(
            "data directory {} is in use by another synod process (pid {pid})",
            dir.display()
        );
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(DirLock { _file: file })
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a crash leaves
/// the old contents or the new, never a mix or an empty file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        let err = lock(dir.path()).unwrap_err().to_string();
        let want = format!(
            "data directory {} is in use by another synod process (pid {})",
            dir.path().display(),
            std::process::id()
        );
        assert_eq!(err, want);
        drop(held);
        lock(dir.path()).expect("free again once the holder is gone");
    }
}
