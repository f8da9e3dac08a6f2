//! Process titles, so that `ps`, `top` and `pgrep` tell the roles apart: a worker shows as
//! `flaskhost worker 3`, the fork server as `flaskhost fork-server wsgi:application`, instead
//! of the long hidden command line they were started with.
//!
//! Two names are changed:
//! - the command line (`/proc/PID/cmdline`, what `ps -ef` shows): the argv strings lie in one
//!   contiguous area, `arg_start..arg_end` in `/proc/self/stat` (fields 48 and 49). The title
//!   is written over it in place and the rest zero-filled, never past `arg_end`, as
//!   setproctitle does without borrowing the environment's area. The hidden `worker` command
//!   line is far longer than any title, so it fits; a longer title is cut.
//! - the thread name (`/proc/PID/comm`, what `top` shows, at most 15 bytes), through
//!   `PR_SET_NAME`. Threads started later inherit it.
//!
//! Call only once argv is no longer needed (clap has parsed it); `std::env::args` reads the
//! new title afterwards.

use std::ffi::CString;

/// Sets the command line to `title` and the thread name to `short` (cut to 15 bytes).
/// Failures are ignored: a title is cosmetic.
pub fn set(title: &str, short: &str) {
    let mut name: Vec<u8> = short.bytes().filter(|&b| b != 0).take(15).collect();
    name.push(0);
    if let Ok(name) = CString::from_vec_with_nul(name) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which `name`
        // is; it changes only this thread's name.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
        }
    }
    if let Some((start, end)) = argv_area() {
        // SAFETY: `start..end` is this process's argv string area as the kernel reports it:
        // mapped, writable (it is on the initial stack) and owned by nothing that still needs
        // it once the arguments have been parsed. Nothing is written outside it.
        unsafe { overwrite(start as *mut u8, end - start, title.as_bytes()) }
    }
}

/// Writes `title` at `area`, cut to `len - 1` bytes, and zero-fills the rest of the `len`
/// bytes, so the last byte stays NUL (the kernel then shows exactly the area, not the
/// environment after it).
///
/// # Safety
/// `area..area + len` must be writable memory owned by the caller.
unsafe fn overwrite(area: *mut u8, len: usize, title: &[u8]) {
    if len == 0 {
        return;
    }
    let n = title.len().min(len - 1);
    // SAFETY: both ranges lie inside `area..area + len` (n < len), which the caller vouches
    // for; the title is a separate Rust allocation, so they do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(title.as_ptr(), area, n);
        std::ptr::write_bytes(area.add(n), 0, len - n);
    }
}

/// `arg_start` and `arg_end` of this process, from `/proc/self/stat`.
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_argv_area(&stat)
}

/// Fields 48 and 49 of a `/proc/PID/stat` line. The second field (the command name, in
/// parentheses) may itself contain spaces and parentheses, so counting starts after the last
/// `)`, where field 3 begins.
fn parse_argv_area(stat: &str) -> Option<(usize, usize)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(48 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_area_is_read_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "140000".into();
        fields[49 - 3] = "140100".into();
        let line = format!("1234 (a b) c) {}\n", fields.join(" "));
        assert_eq!(parse_argv_area(&line), Some((140_000, 140_100)));
    }

    #[test]
    fn this_process_has_an_argv_area() {
        let (start, end) = argv_area().expect("a Linux /proc/self/stat");
        assert!(end > start);
    }

    #[test]
    fn overwrite_cuts_and_zero_fills() {
        let mut area = *b"flaskhost\0worker\0--module\0";
        // SAFETY: the array is ours and `len` is its length.
        unsafe { overwrite(area.as_mut_ptr(), area.len(), b"flaskhost worker 3") };
        assert_eq!(&area[..18], b"flaskhost worker 3");
        assert!(area[18..].iter().all(|&b| b == 0));

        let mut small = *b"abcdef";
        // SAFETY: as above.
        unsafe { overwrite(small.as_mut_ptr(), small.len(), b"flaskhost worker 3") };
        assert_eq!(&small, b"flask\0");
    }
}
