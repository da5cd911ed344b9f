//! Test certificates made with the `openssl` command-line tool.
//!
//! A fresh CA is created for every cluster, and one server certificate signed
//! by it is shared by all nodes. The server certificate names
//! `IP:127.0.0.1` and `DNS:localhost` as subject alternative names, so a
//! client that verifies the server against [`TlsFiles::ca_cert`] accepts any
//! node reached at either name. Keys are unencrypted RSA-2048 in PKCS#8 PEM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::run_captured;

const OPENSSL: &str = "openssl";
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(60);
const VALID_DAYS: &str = "3650";

const CA_CONFIG: &str = "\
[req]
prompt = no
distinguished_name = dn
x509_extensions = ca_ext
[dn]
CN = Sluice chaos test CA
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

const SERVER_REQUEST_CONFIG: &str = "\
[req]
prompt = no
distinguished_name = dn
[dn]
CN = localhost
";

const SERVER_EXTENSIONS: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
";

/// PEM files of a cluster's test PKI.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients should trust.
    pub ca_cert: PathBuf,
    /// The servers' certificate (signed by the CA).
    pub server_cert: PathBuf,
    /// The servers' private key.
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// Creates `dir` and generates a CA and a server certificate in it.
    pub(crate) fn generate(dir: &Path) -> Result<TlsFiles> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = |name: &str| dir.join(name);
        for (name, text) in [
            ("ca.cnf", CA_CONFIG),
            ("server-req.cnf", SERVER_REQUEST_CONFIG),
            ("server-ext.cnf", SERVER_EXTENSIONS),
        ] {
            fs::write(path(name), text)
                .with_context(|| format!("writing {}", path(name).display()))?;
        }
        let files = TlsFiles {
            ca_cert: path("ca.pem"),
            server_cert: path("server-cert.pem"),
            server_key: path("server-key.pem"),
        };
        let ca_key = path("ca-key.pem");
        let request = path("server.csr");

        openssl(|cmd| {
            cmd.args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", VALID_DAYS, "-config",
            ])
            .arg(path("ca.cnf"))
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&files.ca_cert);
        })?;
        openssl(|cmd| {
            cmd.args(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-config"])
                .arg(path("server-req.cnf"))
                .arg("-keyout")
                .arg(&files.server_key)
                .arg("-out")
                .arg(&request);
        })?;
        openssl(|cmd| {
            cmd.args([
                "x509",
                "-req",
                "-days",
                VALID_DAYS,
                "-set_serial",
                "2",
                "-in",
            ])
            .arg(&request)
            .arg("-CA")
            .arg(&files.ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(path("server-ext.cnf"))
            .arg("-out")
            .arg(&files.server_cert);
        })?;
        Ok(files)
    }
}

/// Runs one `openssl` command built by `build`, failing with its stderr.
fn openssl(build: impl FnOnce(&mut Command)) -> Result<()> {
    let mut cmd = Command::new(OPENSSL);
    build(&mut cmd);
    let shown = format!("{cmd:?}");
    let out =
        run_captured(cmd, None, OPENSSL_TIMEOUT).with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, out.stderr.trim());
    }
    Ok(())
}
