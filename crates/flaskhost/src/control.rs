//! `flaskhost reload` and `flaskhost stop`: signal a running server, named by its pid or by
//! its pidfile, like `nginx -s reload|stop` (SIGHUP, SIGTERM, or SIGQUIT with `--fast`).

use std::process::ExitCode;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::{SignalArgs, StopArgs};

pub fn reload(args: &SignalArgs) -> ExitCode {
    send(args, Signal::SIGHUP)
}

pub fn stop(args: &StopArgs) -> ExitCode {
    let sig = if args.fast {
        Signal::SIGQUIT
    } else {
        Signal::SIGTERM
    };
    send(&args.target, sig)
}

fn send(args: &SignalArgs, sig: Signal) -> ExitCode {
    match target(args).and_then(|pid| {
        kill(Pid::from_raw(pid), sig)
            .map(|()| pid)
            .map_err(|e| format!("cannot send {sig} to pid {pid}: {e}"))
    }) {
        Ok(pid) => {
            println!("sent {sig} to flaskhost (pid {pid})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flaskhost: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The pid to signal: given, or read from the pidfile; either way it must be a running
/// flaskhost, so a stale pidfile never signals an unrelated process that got its pid.
fn target(args: &SignalArgs) -> Result<i32, String> {
    let (pid, from) = match (&args.pidfile, args.pid) {
        (Some(path), _) => {
            let pid = crate::pidfile::read_pid(path)
                .map_err(|e| format!("cannot read pidfile {}: {e}", path.display()))?;
            (pid, format!(" (from pidfile {})", path.display()))
        }
        (None, Some(pid)) => (
            u32::try_from(pid).map_err(|_| format!("{pid} is not a pid"))?,
            String::new(),
        ),
        (None, None) => return Err("give the server's pid or --pidfile FILE".into()),
    };
    if !crate::pidfile::is_flaskhost(pid) {
        let stale = if args.pidfile.is_some() {
            "; the pidfile is stale"
        } else {
            ""
        };
        return Err(format!("pid {pid}{from} is not a running flaskhost{stale}"));
    }
    i32::try_from(pid).map_err(|_| format!("{pid} is not a pid"))
}
