//! The flaskhost binary. `serve` is the process lifecycle, top to bottom (see serve.rs);
//! `worker` is the hidden command the pool re-executes this binary as; `reload` and `stop`
//! signal a running server (control.rs).

mod activation;
mod cli;
mod control;
mod fdlimit;
mod metrics;
mod notify;
mod pidfile;
mod privileges;
mod serve;
mod stats;
mod worker;

use std::process::ExitCode;

/// Exit code for a bad command line or configuration (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        cli::Cmd::Serve(args) => serve::run(&args),
        cli::Cmd::Stats(a) => stats::client(&a.addr, a.watch, a.json),
        cli::Cmd::Reload(a) => control::reload(&a),
        cli::Cmd::Stop(a) => control::stop(&a),
        cli::Cmd::Worker(args) => worker::run(args),
    }
}

/// Logs go to stderr, one line per event; `RUST_LOG` overrides the configured level.
pub fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
