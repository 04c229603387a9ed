//! TLS material: one CA per cluster, node certificates (server + client auth) and client
//! certificates, whose role rides in the subject's organizational unit (`quiver:node`,
//! `quiver:client`, `quiver:admin`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// A certificate holder's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A broker or name server.
    Node,
    /// An application client.
    Client,
    /// An operator allowed to run admin requests.
    Admin,
}

impl Role {
    fn unit(self) -> &'static str {
        match self {
            Role::Node => "quiver:node",
            Role::Client => "quiver:client",
            Role::Admin => "quiver:admin",
        }
    }

    fn from_unit(unit: &str) -> Option<Self> {
        [Role::Node, Role::Client, Role::Admin]
            .into_iter()
            .find(|role| role.unit() == unit)
    }
}

/// Who is on the other end of a connection, from its verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The certificate's common name.
    pub name: String,
    /// The certificate's role.
    pub role: Role,
}

/// Errors making or loading TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A PEM file did not hold what was expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("TLS client verifier: {0}")]
    Verifier(String),
}

/// What `quiver certs init` should make.
#[derive(Clone, Debug, Default)]
pub struct CertPlan {
    /// Node certificates: name and extra subject alternative names.
    pub nodes: Vec<(String, Vec<String>)>,
    /// Client certificates: name and whether it has the admin role.
    pub clients: Vec<(String, bool)>,
}

/// Default subject alternative names of a node certificate.
pub const DEFAULT_SANS: &[&str] = &["localhost", "127.0.0.1"];

/// Creates (or reuses) `dir/ca.{pem,key}` and writes `dir/<name>.{pem,key}` for every node and
/// client of the plan. Returns the files written.
pub fn init_dir(dir: &Path, plan: &CertPlan) -> Result<Vec<PathBuf>, TlsError> {
    fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
    let mut written = Vec::new();
    let (ca_pem, ca_key) = load_or_create_ca(dir, &mut written)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    for (name, sans) in &plan.nodes {
        let sans = if sans.is_empty() {
            DEFAULT_SANS.iter().map(|s| s.to_string()).collect()
        } else {
            sans.clone()
        };
        let mut params = leaf_params(name, Role::Node, sans)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        write_leaf(dir, name, params, &issuer, &mut written)?;
    }
    for (name, admin) in &plan.clients {
        let role = if *admin { Role::Admin } else { Role::Client };
        let mut params = leaf_params(name, role, Vec::new())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        write_leaf(dir, name, params, &issuer, &mut written)?;
    }
    Ok(written)
}

fn load_or_create_ca(
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(String, KeyPair), TlsError> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        let pem = read_text(&cert_path)?;
        let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(|err| TlsError::Pem {
            path: key_path.clone(),
            reason: err.to_string(),
        })?;
        return Ok((pem, key));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Quiver cluster CA");
    dn.push(DnType::OrganizationName, "Quiver");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, 10);
    let cert = params.self_signed(&key)?;
    write_secret(&key_path, &key.serialize_pem(), written)?;
    write_file(&cert_path, &cert.pem(), written)?;
    Ok((cert.pem(), key))
}

fn leaf_params(name: &str, role: Role, sans: Vec<String>) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, role.unit());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, 5);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, years: i32) {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let year = 1970 + (now_secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn write_leaf(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    written: &mut Vec<PathBuf>,
) -> Result<(), TlsError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    write_secret(
        &dir.join(format!("{name}.key")),
        &key.serialize_pem(),
        written,
    )?;
    write_file(&dir.join(format!("{name}.pem")), &cert.pem(), written)
}

fn write_file(path: &Path, text: &str, written: &mut Vec<PathBuf>) -> Result<(), TlsError> {
    fs::write(path, text).map_err(|source| io_err(path, source))?;
    written.push(path.to_owned());
    Ok(())
}

fn write_secret(path: &Path, text: &str, written: &mut Vec<PathBuf>) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io_err(path, source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| io_err(path, source))?;
    written.push(path.to_owned());
    Ok(())
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| pem_err(path, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_err(path, err))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// Loads a private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| pem_err(path, err))
}

fn pem_err(path: &Path, err: rustls::pki_types::pem::Error) -> TlsError {
    match err {
        rustls::pki_types::pem::Error::Io(source) => io_err(path, source),
        other => TlsError::Pem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|err| TlsError::Pem {
            path: ca.to_owned(),
            reason: err.to_string(),
        })?;
    }
    Ok(roots)
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Paths of a server's TLS material.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The cluster CA (trust anchor for client certificates).
    pub ca: PathBuf,
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

impl ServerTls {
    /// `dir/ca.pem`, `dir/<node>.pem`, `dir/<node>.key`.
    pub fn in_dir(dir: &Path, node: &str) -> Self {
        ServerTls {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{node}.pem")),
            key: dir.join(format!("{node}.key")),
        }
    }

    /// A rustls server config: TLS 1.3, ALPN `quiver/1`, no early data, client certificates
    /// verified against the CA when presented (optional: send/pull are open to any TLS client;
    /// admin requests check the role).
    pub fn rustls_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&self.ca)?), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|err| TlsError::Verifier(err.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(load_certs(&self.cert)?, load_key(&self.key)?)?;
        config.alpn_protocols = vec![quiver_proto::ALPN.to_vec()];
        config.max_early_data_size = 0;
        Ok(config)
    }
}

/// Paths of a client's TLS material.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The cluster CA the server's certificate must chain to.
    pub ca: PathBuf,
    /// Optional client certificate and key (needed for admin requests).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// A rustls client config: TLS 1.3, ALPN `quiver/1`, no early data.
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(&self.ca)?);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![quiver_proto::ALPN.to_vec()];
        config.enable_early_data = false;
        Ok(config)
    }
}

/// The identity in a verified peer certificate chain (leaf first). `None` when the leaf has no
/// Quiver role.
pub fn identity_of(chain: &[CertificateDer<'_>]) -> Option<Identity> {
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let role = subject
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok())
        .find_map(Role::from_unit)?;
    Some(Identity { name, role })
}

/// Where the CLI and client look for TLS files when not told: the standalone's default
/// `./quiver-data/tls/`.
pub const DEFAULT_TLS_DIR: &str = "quiver-data/tls";

/// Finds the CA: `explicit` (a flag), then `QUIVER_CA`, then `./quiver-data/tls/ca.pem`. The
/// error lists every path tried.
pub fn locate_ca(explicit: Option<&Path>) -> Result<PathBuf, String> {
    locate(
        explicit.map(Path::to_path_buf),
        "QUIVER_CA",
        Path::new(DEFAULT_TLS_DIR).join("ca.pem"),
        "the cluster CA certificate",
        "pass --ca FILE or set QUIVER_CA (start `quiver standalone` to create ./quiver-data/tls)",
    )
}

/// Finds a client certificate pair: explicit flags, then `QUIVER_CERT`/`QUIVER_KEY`, then
/// `admin.{pem,key}` and `client.{pem,key}` beside the CA (`ca`), then the same two in
/// `./quiver-data/tls/`. `Ok(None)` when none is found (requests will then be refused with a
/// message naming the fix, unless the server allows anonymous data-plane access).
pub fn locate_client_pair(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => return Ok(Some((cert.to_owned(), key.to_owned()))),
        (Some(_), None) | (None, Some(_)) => {
            return Err("--cert and --key go together: pass both or neither".into());
        }
        (None, None) => {}
    }
    if let (Some(cert), Some(key)) = (
        std::env::var_os("QUIVER_CERT"),
        std::env::var_os("QUIVER_KEY"),
    ) {
        return Ok(Some((cert.into(), key.into())));
    }
    let dirs = [ca.parent(), Some(Path::new(DEFAULT_TLS_DIR))];
    Ok(dirs
        .into_iter()
        .flatten()
        .flat_map(|dir| ["admin", "client"].map(|name| (dir, name)))
        .find_map(|(dir, name)| pair_in(dir, name)))
}

/// `dir/<name>.{pem,key}` when both exist.
pub fn pair_in(dir: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    (cert.exists() && key.exists()).then_some((cert, key))
}

/// The places `locate_client_pair` looks, for error messages.
pub const CLIENT_PAIR_SEARCH: &str = "--cert/--key, QUIVER_CERT/QUIVER_KEY, admin.{pem,key} and client.{pem,key} beside the CA, then in ./quiver-data/tls/";

fn locate(
    explicit: Option<PathBuf>,
    env: &str,
    default: PathBuf,
    what: &str,
    fix: &str,
) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    if let Some(path) = explicit {
        if path.exists() {
            return Ok(path);
        }
        tried.push(format!("flag: {}", path.display()));
    }
    if let Some(path) = std::env::var_os(env).map(PathBuf::from) {
        if path.exists() {
            return Ok(path);
        }
        tried.push(format!("{env}: {}", path.display()));
    } else {
        tried.push(format!("{env}: not set"));
    }
    if default.exists() {
        return Ok(default);
    }
    tried.push(format!("default: ./{}", default.display()));
    Err(format!(
        "could not find {what} (tried {}): {fix}",
        tried.join(", ")
    ))
}

#[cfg(test)]
mod tests;
