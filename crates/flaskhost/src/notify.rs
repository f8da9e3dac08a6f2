//! systemd's notify protocol (`Type=notify`): datagrams to `$NOTIFY_SOCKET`. Without that
//! variable (not run by systemd) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
            // "@name" is a Linux abstract socket.
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name).ok()?
                }
                None => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
            };
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, addr))
        });
        Notifier { target }
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=…`); failures are logged, never fatal.
    pub fn send(&self, state: &str) {
        if let Some(Err(e)) = self
            .target
            .as_ref()
            .map(|(sock, addr)| sock.send_to_addr(state.as_bytes(), addr))
        {
            tracing::warn!("systemd notify failed: {e}");
        }
    }

    /// The watchdog interval systemd asked for (`WatchdogSec=`), if it is meant for us.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        let for_us = std::env::var("WATCHDOG_PID").map_or(true, |pid| {
            pid.parse::<u32>().ok() == Some(std::process::id())
        });
        if !for_us {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }

    /// Pings the watchdog at half its interval until the task is dropped.
    pub async fn watchdog(self: std::sync::Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every / 2);
        loop {
            tick.tick().await;
            self.send("WATCHDOG=1");
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants it next to `RELOADING=1`.
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000
    })
}
