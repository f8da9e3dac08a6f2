//! The stats socket (uWSGI's `stats`): every connection gets one JSON document describing the
//! pool, then is closed. `flaskhost stats ADDR` reads it and prints a table.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use flaskhost_config::Bind;
use flaskhost_pool::Pool;
use tokio::io::AsyncWriteExt;

/// Serves the stats document on `bind` until the task is dropped.
pub async fn serve(bind: Bind, pool: Pool, started: Instant) {
    let pid = std::process::id();
    let render = move || pool.stats().to_json(pid, started.elapsed());
    match bind {
        Bind::Tcp(addr) => {
            let l = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => return tracing::error!("stats: cannot listen on {addr}: {e}"),
            };
            if let Ok(a) = l.local_addr() {
                tracing::info!("stats on {a}");
            }
            while let Ok((mut s, _)) = l.accept().await {
                let doc = render();
                tokio::spawn(async move {
                    let _ = s.write_all(doc.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        }
        Bind::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let l = match tokio::net::UnixListener::bind(&path) {
                Ok(l) => l,
                Err(e) => {
                    return tracing::error!("stats: cannot listen on {}: {e}", path.display());
                }
            };
            tracing::info!("stats on unix:{}", path.display());
            while let Ok((mut s, _)) = l.accept().await {
                let doc = render();
                tokio::spawn(async move {
                    let _ = s.write_all(doc.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        }
    }
}

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
        "flaskhost pid {}  up {}s  requests {}  exceptions {}  harakiri {}  respawns {}  queue {} (rejected {}, timed out {})\n",
        doc["pid"],
        doc["uptime_seconds"],
        doc["requests"],
        doc["exceptions"],
        doc["harakiri"],
        doc["respawns"],
        doc["queue"]["length"],
        doc["queue"]["rejections"],
        doc["queue"]["timeouts"],
    );
    s.push_str(&format!(
        "{:>4} {:>8} {:>9} {:>10} {:>6} {:>9} {:>9} {:>8} {:>8}\n",
        "id", "pid", "status", "requests", "exc", "avg ms", "rss MiB", "uptime", "respawn"
    ));
    for w in doc["workers"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "{:>4} {:>8} {:>9} {:>10} {:>6} {:>9.2} {:>9.1} {:>7}s {:>8}\n",
            w["id"],
            w["pid"],
            w["status"].as_str().unwrap_or("?"),
            w["requests"],
            w["exceptions"],
            n(w, "avg_response_ms"),
            n(w, "rss_bytes") / 1_048_576.0,
            w["uptime_seconds"],
            w["respawns"],
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
