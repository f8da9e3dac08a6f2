//! Binding the configured addresses.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flaskhost_config::Bind;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: String,
    #[source]
    pub source: io::Error,
}

pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix {
        listener: tokio::net::UnixListener,
        /// Removed when serving ends (uWSGI's `vacuum`).
        path: PathBuf,
    },
}

impl Listener {
    /// The address for logs: `http://127.0.0.1:8000` or `unix:/path`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".into(),
            },
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

/// A socket file left by a process that is gone refuses connections; one still in use
/// accepts them and must not be taken over.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on it",
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// Binds every address. Must run inside the tokio runtime.
pub fn bind(
    binds: &[Bind],
    socket_mode: Option<u32>,
    backlog: u32,
) -> Result<Vec<Listener>, BindError> {
    let mut out = Vec::with_capacity(binds.len());
    for b in binds {
        let err = |source: io::Error| BindError {
            addr: match b {
                Bind::Tcp(a) => a.to_string(),
                Bind::Unix(p) => format!("unix:{}", p.display()),
            },
            source,
        };
        match b {
            Bind::Tcp(addr) => {
                let sock = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(err)?;
                sock.set_reuseaddr(true).map_err(err)?;
                sock.bind(*addr).map_err(err)?;
                out.push(Listener::Tcp(sock.listen(backlog).map_err(err)?));
            }
            Bind::Unix(path) => {
                remove_stale_socket(path).map_err(err)?;
                let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
                if let Some(mode) = socket_mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                        .map_err(err)?;
                }
                out.push(Listener::Unix {
                    listener,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(out)
}
