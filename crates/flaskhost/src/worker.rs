//! `flaskhost worker`: the hidden command the pool runs to get a Python process.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use flaskhost_worker::{Slots, Target, WorkerArgs};

use crate::cli;

pub fn run(args: cli::WorkerArgs) -> ExitCode {
    crate::init_tracing(&args.log_level);
    // First, before Python starts or the app is imported: the server's `uid`/`gid`. Also
    // before the parent-death signal is set, which a change of user would clear.
    if let Some(run_as) =
        crate::privileges::Credentials::from_worker_args(args.uid, args.gid, args.groups.clone())
        && let Err(e) = run_as.switch()
    {
        eprintln!("flaskhost worker: cannot switch users: {e}");
        return ExitCode::FAILURE;
    }
    let wargs = WorkerArgs {
        target: Target {
            module: args.module,
            attr: args.attr,
            call_args: args.call,
            app_dir: args.app_dir,
        },
        venv: args.venv,
        slot_options: Slots {
            multithread: args.multithread,
            multiprocess: args.multiprocess,
        },
        worker_id: args.worker_id,
        immortal: args.immortal,
    };
    let code = if args.fork_server {
        let Some(fd) = args.control_fd else {
            eprintln!("flaskhost worker: --fork-server needs --control-fd");
            return ExitCode::from(crate::EXIT_USAGE);
        };
        // SAFETY: the supervisor passed this descriptor to us for this purpose, and nothing
        // else in this process owns it.
        let ctl = unsafe { OwnedFd::from_raw_fd(fd) };
        flaskhost_worker::run_fork_server(&wargs, ctl)
    } else {
        if args.slot_fds.is_empty() {
            eprintln!(
                "flaskhost worker: this command is started by `flaskhost serve`, not by hand"
            );
            return ExitCode::from(crate::EXIT_USAGE);
        }
        // SAFETY: as above, one descriptor per slot, owned by nothing else here.
        let slots = args
            .slot_fds
            .iter()
            .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        flaskhost_worker::run_lazy_worker(&wargs, slots)
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
