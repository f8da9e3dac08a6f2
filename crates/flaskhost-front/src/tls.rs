//! TLS with rustls: certificates from PEM files (or a self-signed one for localhost), chosen
//! by SNI, re-read on SIGHUP; ALPN h2 and http/1.1; session resumption by cache and tickets.
//!
//! The certificates sit behind a [`CertStore`] that every handshake asks; a reload swaps the
//! whole set at once, so handshakes in progress and open connections keep what they had and
//! new handshakes get the new certificates. A reload that fails (a file missing or not
//! matching its key) keeps the old set and says why.

use std::path::Path;
use std::sync::{Arc, RwLock};

use flaskhost_config::{CertFiles, TlsConfig, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use thiserror::Error;

/// Sessions kept for stateful resumption (TLS 1.2 session IDs, TLS 1.3 without tickets);
/// roughly nginx's `ssl_session_cache shared:SSL:10m`.
const SESSION_CACHE_ENTRIES: usize = 40_000;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {source}")]
    CertFile {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("cannot read private key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the key in {key} does not fit the certificate in {cert}: {source}")]
    KeyMismatch {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot make the self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate set a handshake chooses from.
#[derive(Debug)]
struct CertSet {
    /// In configuration order; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
}

/// Hands rustls the certificate for each handshake, and swaps the set on reload.
#[derive(Debug)]
pub struct CertStore {
    set: RwLock<Arc<CertSet>>,
    files: Vec<CertFiles>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current();
        let default = set.keys.first().cloned();
        let Some(name) = hello.server_name() else {
            return default;
        };
        let Ok(name) = ServerName::try_from(name) else {
            return default;
        };
        // Like nginx's server_name matching, the first certificate valid for the name wins;
        // a name no certificate covers gets the default one (the client will say so).
        set.keys
            .iter()
            .find(|ck| {
                ck.end_entity_cert()
                    .ok()
                    .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
                    .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .cloned()
            .or(default)
    }
}

impl CertStore {
    fn current(&self) -> Arc<CertSet> {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads every certificate and key file. On success the new set serves every later
    /// handshake; on failure nothing changes. Returns the number of certificates loaded.
    ///
    /// # Errors
    ///
    /// The first file that cannot be read or does not match its key.
    pub fn reload(&self) -> Result<usize, TlsError> {
        if self.files.is_empty() {
            // The self-signed certificate has no file to re-read.
            return Ok(self.current().keys.len());
        }
        let set = load_files(&self.files, &self.provider)?;
        let n = set.keys.len();
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        Ok(n)
    }
}

fn load_files(files: &[CertFiles], provider: &CryptoProvider) -> Result<CertSet, TlsError> {
    let mut keys = Vec::with_capacity(files.len());
    for f in files {
        keys.push(Arc::new(load_pair(&f.cert, &f.key, provider)?));
    }
    Ok(CertSet { keys })
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::CertFile {
            path: cert_name.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name });
    }
    // PKCS#8, PKCS#1 (RSA) and SEC1 (EC) keys are all recognised by their PEM label.
    let der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::KeyFile {
        path: key_name.clone(),
        source,
    })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|source| TlsError::KeyMismatch {
        cert: cert_name,
        key: key_name,
        source,
    })
}

/// The TLS side of the edge: the acceptor for the listeners and the store SIGHUP reloads.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub store: Arc<CertStore>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificates (or makes the self-signed one) and builds the server config.
    ///
    /// # Errors
    ///
    /// A file that cannot be read or parsed, a key that does not match its certificate.
    pub fn load(cfg: &TlsConfig) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let set = if cfg.self_signed {
            self_signed(&provider)?
        } else {
            load_files(&cfg.certs, &provider)?
        };
        let store = Arc::new(CertStore {
            set: RwLock::new(Arc::new(set)),
            files: if cfg.self_signed {
                Vec::new()
            } else {
                cfg.certs.clone()
            },
            provider: provider.clone(),
        });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        // HTTP/2 first: hyper serves both on the same connection types.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Resumption: a session cache for TLS 1.2 session IDs, and stateless tickets (keys
        // rotated every 6 hours) for TLS 1.2 and 1.3.
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            store,
        })
    }
}

/// A certificate for localhost made now; nothing is written to disk.
fn self_signed(provider: &CryptoProvider) -> Result<CertSet, TlsError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)?;
    let chain = vec![generated.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let ck = CertifiedKey::from_der(chain, key, provider)?;
    Ok(CertSet {
        keys: vec![Arc::new(ck)],
    })
}
