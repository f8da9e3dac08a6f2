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
        /// For logs; `@name` for an abstract socket.
        path: PathBuf,
        /// Remove the socket file when serving ends (uWSGI's `vacuum`): true for the files
        /// flaskhost created, false for sockets handed over by systemd, which owns them.
        remove_on_exit: bool,
    },
}

/// A listening socket the process was handed at start (systemd socket activation), as std
/// types: the caller has checked that it is a listening stream socket of this family.
pub enum InheritedSocket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Takes over sockets handed to the process instead of binding addresses: each is made
/// non-blocking and registered with the runtime. Must run inside the tokio runtime.
///
/// # Errors
/// When a socket cannot be made non-blocking or registered; the error names it.
pub fn adopt(sockets: Vec<InheritedSocket>) -> Result<Vec<Listener>, BindError> {
    let mut out = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        let err = |source: io::Error| BindError {
            addr: format!("inherited socket {} (fd {})", i + 1, i + 3),
            source,
        };
        match socket {
            InheritedSocket::Tcp(l) => {
                l.set_nonblocking(true).map_err(err)?;
                out.push(Listener::Tcp(
                    tokio::net::TcpListener::from_std(l).map_err(err)?,
                ));
            }
            InheritedSocket::Unix(l) => {
                l.set_nonblocking(true).map_err(err)?;
                let path = l
                    .local_addr()
                    .map_or_else(|_| PathBuf::from("?"), |a| unix_label(&a));
                out.push(Listener::Unix {
                    listener: tokio::net::UnixListener::from_std(l).map_err(err)?,
                    path,
                    remove_on_exit: false,
                });
            }
        }
    }
    Ok(out)
}

/// A Unix socket address for logs: its path, `@name` for an abstract one.
fn unix_label(addr: &std::os::unix::net::SocketAddr) -> PathBuf {
    use std::os::linux::net::SocketAddrExt;
    if let Some(path) = addr.as_pathname() {
        return path.to_path_buf();
    }
    match addr.as_abstract_name() {
        Some(name) => PathBuf::from(format!("@{}", String::from_utf8_lossy(name))),
        None => PathBuf::from("(unnamed)"),
    }
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
                    remove_on_exit: true,
                });
            }
        }
    }
    Ok(out)
}
