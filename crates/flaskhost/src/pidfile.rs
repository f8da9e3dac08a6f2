//! The pidfile (`pidfile`): the main process's pid and a newline, written once every address
//! listens and removed at exit; and finding the server a pidfile (or a pid) names, for
//! `flaskhost reload` and `flaskhost stop`.
//!
//! A pidfile that names a running flaskhost stops start-up, as gunicorn's does (nginx
//! overwrites it): two servers sharing one pidfile would leave the first unreachable by
//! `reload`/`stop`. A pid counts as a running flaskhost when the process exists and has this
//! program's name (`/proc/PID/comm`), so a stale file whose pid was reused by another program
//! (after a reboot, say) is replaced, not obeyed.

use std::io;
use std::path::{Path, PathBuf};

/// The written pidfile; removed when dropped, if it still names this process.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path`, atomically (a temporary file in the same
    /// directory, then a rename), so a reader never sees a partial file.
    pub fn write(path: &Path) -> io::Result<PidFile> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    /// Best effort: after switching users the directory may no longer be writable (a root
    /// `/run`, say); the file left behind is stale and the next start replaces it.
    fn drop(&mut self) {
        if read_pid(&self.path).ok() != Some(std::process::id()) {
            return; // replaced by someone else meanwhile: theirs now
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(
                "pidfile: cannot remove {}: {e} (a stale pidfile is replaced at the next start)",
                self.path.display()
            );
        }
    }
}

/// Refuses to start when `path` names a running flaskhost. A missing or stale file is fine.
///
/// # Errors
/// A message for the user, saying which server runs.
pub fn check_free(path: &Path) -> Result<(), String> {
    let pid = match read_pid(path) {
        Ok(pid) => pid,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!("pidfile {}: {e}; replacing it", path.display());
            return Ok(());
        }
        Err(e) => return Err(format!("cannot read pidfile {}: {e}", path.display())),
    };
    if pid != std::process::id() && is_flaskhost(pid) {
        return Err(format!(
            "pidfile {} names pid {pid}, a flaskhost that is still running; stop it first \
             (`flaskhost stop --pidfile {}`) or use another pidfile",
            path.display(),
            path.display()
        ));
    }
    tracing::info!(
        "pidfile {}: pid {pid} is not another running flaskhost; replacing the stale file",
        path.display()
    );
    Ok(())
}

/// The pid in a pidfile: one decimal number, surrounding whitespace allowed.
pub fn read_pid(path: &Path) -> io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{:?} is not a pid", text.trim()),
            )
        })
}

/// True if `pid` is a live process running this program (same `comm` as this process).
pub fn is_flaskhost(pid: u32) -> bool {
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let zombie = state
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|st| st == "Z" || st == "X");
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => !zombie && theirs == ours,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fh-pidfile-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn write_check_and_remove() {
        let dir = temp_dir();
        let path = dir.join("fh.pid");
        let file = PidFile::write(&path).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n", std::process::id())
        );
        // Our own pid is never "another running server".
        assert_eq!(check_free(&path), Ok(()));
        drop(file);
        assert!(!path.exists());
        // A file someone else rewrote meanwhile is left alone.
        let file = PidFile::write(&path).expect("write");
        std::fs::write(&path, "1\n").expect("overwrite");
        drop(file);
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn stale_and_garbage_files_are_replaced() {
        let dir = temp_dir();
        let path = dir.join("stale.pid");
        // Pid 1 is init (not this program), and 4194304 is above the kernel's pid_max.
        for text in ["1\n", "4194304\n", "not a pid\n", ""] {
            std::fs::write(&path, text).expect("write");
            assert_eq!(check_free(&path), Ok(()), "{text:?}");
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn pids_are_read_strictly() {
        let dir = temp_dir();
        let path = dir.join("read.pid");
        std::fs::write(&path, " 42 \n").expect("write");
        assert_eq!(read_pid(&path).expect("pid"), 42);
        for bad in ["0", "-3", "42x", ""] {
            std::fs::write(&path, bad).expect("write");
            assert!(read_pid(&path).is_err(), "{bad:?}");
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
