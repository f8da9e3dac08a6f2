//! The stats socket (uWSGI's `stats`): every connection gets one JSON document describing the
//! pool, then is closed. `flaskhost stats ADDR` reads it and prints a table.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use flaskhost_config::Bind;
use flaskhost_pool::Pool;
use tokio::io::AsyncWriteExt;

/// The stats socket, bound before the server switches users (`uid`), so that a Unix socket in
/// a root-owned directory or a port below 1024 works.
pub enum StatsListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Binds the stats address. Failure is logged, not fatal: the server runs without stats.
pub async fn bind(bind: Bind) -> Option<StatsListener> {
    match bind {
        Bind::Tcp(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    tracing::info!("stats on {a}");
                }
                Some(StatsListener::Tcp(l))
            }
            Err(e) => {
                tracing::error!("stats: cannot listen on {addr}: {e}");
                None
            }
        },
        Bind::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            match tokio::net::UnixListener::bind(&path) {
                Ok(l) => {
                    tracing::info!("stats on unix:{}", path.display());
                    Some(StatsListener::Unix(l))
                }
                Err(e) => {
                    tracing::error!("stats: cannot listen on {}: {e}", path.display());
                    None
                }
            }
        }
    }
}

/// Serves the stats document on `listener` until the task is dropped.
pub async fn serve(listener: StatsListener, pool: Pool, started: Instant) {
    let pid = std::process::id();
    let render = move || pool.stats().to_json(pid, started.elapsed());
    loop {
        let accepted = match &listener {
            StatsListener::Tcp(l) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Conn>),
            StatsListener::Unix(l) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Conn>),
        };
        let Ok(mut s) = accepted else { return };
        let doc = render();
        tokio::spawn(async move {
            let _ = s.write_all(doc.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

/// A stats connection, TCP or Unix.
trait Conn: tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

fn fetch(addr: &str) -> std::io::Result<String> {
    let mut out = String::new();
    if let Some(path) = addr.strip_prefix("unix:") {
        std::os::unix::net::UnixStream::connect(path)?.read_to_string(&mut out)?;
    } else {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.read_to_string(&mut out)?;
    }
    Ok(out)
}

fn table(doc: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut s = format!(
        "flaskhost pid {}  up {}s  requests {}  exceptions {}  harakiri {}  respawns {}  retries {}  queue {} (rejected {}, timed out {})\n",
        doc["pid"],
        doc["uptime_seconds"],
        doc["requests"],
        doc["exceptions"],
        doc["harakiri"],
        doc["respawns"],
        doc["retries"],
        doc["queue"]["length"],
        doc["queue"]["rejections"],
        doc["queue"]["timeouts"],
    );
    s.push_str(&format!(
        "{:>4} {:>8} {:>9} {:>10} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8}\n",
        "id",
        "pid",
        "status",
        "requests",
        "exc",
        "avg ms",
        "rss MiB",
        "uptime",
        "respawn",
        "harakiri"
    ));
    for w in doc["workers"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "{:>4} {:>8} {:>9} {:>10} {:>6} {:>9.2} {:>9.1} {:>7}s {:>8} {:>8}\n",
            w["id"],
            w["pid"],
            w["status"].as_str().unwrap_or("?"),
            w["requests"],
            w["exceptions"],
            n(w, "avg_response_ms"),
            n(w, "rss_bytes") / 1_048_576.0,
            w["uptime_seconds"],
            w["respawns"],
            w["harakiri_count"],
        ));
    }
    s
}

/// `flaskhost stats ADDR [--watch SECONDS] [--json]`.
pub fn client(addr: &str, watch: Option<f64>, json: bool) -> std::process::ExitCode {
    loop {
        let text = match fetch(addr) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("flaskhost stats: cannot read {addr}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let out = if json {
            text
        } else {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(doc) => table(&doc),
                Err(e) => {
                    eprintln!("flaskhost stats: {addr} did not send a stats document: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        };
        let Some(every) = watch else {
            print!("{out}");
            return std::process::ExitCode::SUCCESS;
        };
        // Clear the screen and redraw, like top.
        print!("\x1b[2J\x1b[H{out}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs_f64(every.max(0.1)));
    }
}
