//! TLS to PostgreSQL, with libpq's `sslmode` semantics over rustls.
//!
//! The database URL's `sslmode` says how a connection is secured:
//!
//! ```text
//! disable      plain TCP
//! prefer       TLS if the server offers it, without checking its certificate
//!              (the default, as in libpq)
//! require      TLS or nothing; the certificate is not checked, unless a CA
//!              file is given, which makes it verify-ca (as libpq does)
//! verify-ca    TLS; the certificate must chain to the CA file
//! verify-full  TLS; chain to the CA file, and name the host connected to
//! ```
//!
//! The CA file (PEM, one or more certificates) comes from the URL's
//! `sslrootcert=` or else from `--database-ca-file`
//! (`TANDEM_DATABASE_CA_FILE`), as libpq's `sslrootcert` wins over
//! `PGSSLROOTCERT`. `tokio-postgres` itself only knows `disable`, `prefer`
//! and `require`, so [`Target::parse`] takes `verify-ca`, `verify-full` and
//! `sslrootcert` out of the URL before handing the rest to it, and the
//! verification they ask for is done here, in the rustls connector that
//! every connection of the store (pool, writer, migrations) is made with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How connections to PostgreSQL are secured (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS or fail; unverified without a CA file, verify-ca with one.
    Require,
    /// TLS, the chain checked against the CA file.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(raw: &str) -> Result<Self, TlsConfigError> {
        Ok(match raw {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq's `allow` (plain first, TLS if refused) is not offered
            // by tokio-postgres.
            other => return Err(TlsConfigError::Mode(other.to_owned())),
        })
    }

    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Options of the connection that are not in the URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// CA certificates (PEM) the server's certificate must chain to, unless
    /// the URL names its own with `sslrootcert=`.
    pub ca_file: Option<PathBuf>,
}

/// Why a database URL's TLS settings cannot be used. The messages never
/// repeat the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// An `sslmode` that is not one of the five.
    #[error("unsupported sslmode {0:?} (use disable, prefer, require, verify-ca or verify-full)")]
    Mode(String),
    /// `verify-ca` or `verify-full` without certificates to verify with.
    #[error(
        "sslmode={0} needs the CA certificates to check the server's against: --database-ca-file (TANDEM_DATABASE_CA_FILE) or sslrootcert= in the URL"
    )]
    NoCaFile(&'static str),
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The rest of the URL does not parse.
    #[error("invalid database URL: {0}")]
    Url(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Where to connect and how: the driver's configuration and the TLS
/// connector that goes with it. Cheap to clone.
#[derive(Clone)]
pub struct Target {
    /// The driver's configuration (its `ssl_mode` is disable, prefer or
    /// require; stricter modes are enforced by `tls`).
    pub config: Config,
    /// The connector every connection is made with.
    pub tls: MakeRustlsConnect,
    /// The mode asked for.
    pub mode: SslMode,
}

impl Target {
    /// Reads `url` (a `postgres://` URL or a `key=value` string) and builds
    /// the connector its `sslmode` asks for.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError`] when the URL does not parse, names an unknown
    /// mode, or asks for verification without a readable CA file.
    pub fn parse(url: &str, options: &ConnectOptions) -> Result<Self, TlsConfigError> {
        let split = split_tls_params(url)?;
        let config = split
            .rest
            .parse::<Config>()
            .map_err(|e| TlsConfigError::Url(e.to_string()))?;
        let mode = match split.mode {
            Some(mode) => mode,
            None => match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                tokio_postgres::config::SslMode::Require => SslMode::Require,
                _ => SslMode::Prefer,
            },
        };
        let ca_file = split.root_cert.or_else(|| options.ca_file.clone());
        let tls = connector(mode, ca_file.as_deref())?;
        Ok(Self { config, tls, mode })
    }
}

/// A URL with libpq's TLS parameters taken out.
struct Split {
    /// The URL left for tokio-postgres, with verify-* turned into require.
    rest: String,
    /// The `sslmode` given, if any.
    mode: Option<SslMode>,
    /// The `sslrootcert` given, if any.
    root_cert: Option<PathBuf>,
}

/// What becomes of one parameter of the URL.
enum Param {
    /// Left as it was.
    Keep,
    /// Replaced by this `key=value`.
    Replace(String),
    /// Taken out.
    Drop,
}

/// Takes `sslmode` and `sslrootcert` out of `url`, leaving
/// `sslmode=require` for the verifying modes (tokio-postgres refuses their
/// names) and every other parameter as it was.
fn split_tls_params(url: &str) -> Result<Split, TlsConfigError> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: String| -> Result<Param, TlsConfigError> {
        match key {
            "sslmode" => {
                let parsed = SslMode::parse(&value)?;
                mode = Some(parsed);
                let left = match parsed {
                    SslMode::VerifyCa | SslMode::VerifyFull => "require",
                    other => other.as_str(),
                };
                Ok(Param::Replace(format!("sslmode={left}")))
            }
            "sslrootcert" => {
                root_cert = Some(PathBuf::from(value));
                Ok(Param::Drop)
            }
            _ => Ok(Param::Keep),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    match take(&percent_decode(key)?, percent_decode(value)?)? {
                        Param::Keep => kept.push(pair.to_owned()),
                        Param::Replace(s) => kept.push(s),
                        Param::Drop => {}
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        // key=value form; values with spaces must be quoted there, which
        // only matters for sslrootcert: quote-free paths are supported.
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            if (key == "sslmode" || key == "sslrootcert") && value.starts_with('\'') {
                return Err(TlsConfigError::Url(format!(
                    "a quoted {key} is not supported; use the postgres:// form"
                )));
            }
            match take(key, value.to_owned())? {
                Param::Keep => kept.push(token.to_owned()),
                Param::Replace(s) => kept.push(s),
                Param::Drop => {}
            }
        }
        kept.join(" ")
    };
    Ok(Split {
        rest,
        mode,
        root_cert,
    })
}

/// Decodes `%XX` escapes (a path in `sslrootcert=` may have them).
fn percent_decode(raw: &str) -> Result<String, TlsConfigError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| TlsConfigError::Url("bad %-escape in a parameter".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsConfigError::Url("a parameter is not UTF-8".into()))
}

/// `e` and every error under it, `: `-separated. The driver's own message
/// for a refused certificate is only "error performing TLS handshake"; the
/// reason ("invalid peer certificate: UnknownIssuer") is its source.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

/// rustls with *ring*: it builds with a C compiler alone (aws-lc-rs needs
/// cmake), which keeps the build lean. rustls 0.23.48 marks it deprecated
/// for lacking post-quantum key exchange; PostgreSQL servers do not offer
/// that yet either.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let bad = |reason: String| TlsConfigError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

/// The connector for `mode`, verifying against `ca_file` where it asks to.
fn connector(mode: SslMode, ca_file: Option<&Path>) -> Result<MakeRustlsConnect, TlsConfigError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, ca_file) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(TlsConfigError::NoCaFile(mode.as_str()));
        }
        // Never used for disable; prefer and require without a CA file
        // encrypt without knowing whom to (libpq's semantics).
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => {
            Arc::new(Unverified(provider.signature_verification_algorithms))
        }
        (_, Some(path)) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(load_roots(path)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` and `require` without a CA file: any certificate is taken (the
/// handshake's signatures are still checked, so the session is encrypted
/// to whoever holds that certificate's key).
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca` (and `require` with a CA file): the chain is checked, the
/// host name is not. rustls checks the name only once the chain verified,
/// so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> Split {
        split_tls_params(url).expect("splits")
    }

    #[test]
    fn verify_modes_become_require_for_the_driver() {
        let s = split(
            "postgres://u:p@db:5432/t?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(
            s.rest,
            "postgres://u:p@db:5432/t?sslmode=require&application_name=x"
        );
        assert_eq!(s.mode, Some(SslMode::VerifyFull));
        assert_eq!(s.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let s = split("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(s.rest, "host=db user=u sslmode=require");
        assert_eq!(s.mode, Some(SslMode::VerifyCa));
    }

    #[test]
    fn other_urls_pass_unchanged() {
        for url in [
            "postgres://u@db/t",
            "postgres://u@db/t?sslmode=disable",
            "postgresql://u@db/t?connect_timeout=3&sslmode=require",
            "host=db user=u",
        ] {
            let s = split(url);
            assert_eq!(s.rest, url);
            assert_eq!(s.root_cert, None);
        }
    }

    #[test]
    fn refusals_are_clear() {
        let e = split_tls_params("postgres://db/t?sslmode=allow")
            .err()
            .expect("refused");
        assert!(
            e.to_string().contains("unsupported sslmode \"allow\""),
            "{e}"
        );
        let e = Target::parse(
            "postgres://db/t?sslmode=verify-full",
            &ConnectOptions::default(),
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("--database-ca-file"), "{e}");
        let options = ConnectOptions {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let e = Target::parse("postgres://db/t?sslmode=verify-full", &options)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn the_url_ca_wins_over_the_option() {
        let options = ConnectOptions {
            ca_file: Some(PathBuf::from("/nonexistent/option.pem")),
        };
        let e = Target::parse(
            "postgres://db/t?sslmode=verify-ca&sslrootcert=/nonexistent/url.pem",
            &options,
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("/nonexistent/url.pem"), "{e}");
    }

    #[test]
    fn the_default_is_prefer() {
        let t = Target::parse("postgres://db/t", &ConnectOptions::default()).expect("parses");
        assert_eq!(t.mode, SslMode::Prefer);
        let t = Target::parse(
            "postgres://db/t?sslmode=disable",
            &ConnectOptions::default(),
        )
        .expect("parses");
        assert_eq!(t.mode, SslMode::Disable);
    }
}
