//! A private S3-protocol server on a free loopback port: moto's server mode (PyPI's
//! `moto[server]`, pinned, in a cached virtualenv), for the backup tests. It speaks the S3 REST
//! protocol with signature V4, multipart uploads (with S3's 5 MiB minimum part size), listing
//! and deletion, and keeps objects in memory, spilling large ones to temporary files in its work
//! directory. Tests create their own buckets; any access key is accepted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::process::{Spec, Supervised, WorkDir, free_port, run};
use crate::venv::PinnedVenv;

/// The pinned release: another one may behave differently, which is a change to make on purpose.
pub const REQUIREMENT: &str = "moto[server]==5.2.5";
const VERSION: &str = "5.2.5";
const CACHE_NAME: &str = "moto-5.2.5";

/// What a client needs to reach the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Endpoint {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Endpoint {
    /// `object_store` configuration keys for this server (plain HTTP, path-style requests).
    pub fn object_store_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_region", self.region.as_str()),
            ("aws_access_key_id", self.access_key_id.as_str()),
            ("aws_secret_access_key", self.secret_access_key.as_str()),
            ("aws_allow_http", "true"),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates `bucket` (an S3 `PUT /<bucket>`); an existing one of ours is fine.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let port = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| Error::Prerequisite(format!("S3 endpoint {} has no port", self.endpoint)))?;
        let status = request(
            port,
            &format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .map_err(|e| Error::Prerequisite(format!("creating bucket {bucket}: {e}")))?;
        if status == 200 {
            Ok(())
        } else {
            Err(Error::Prerequisite(format!("creating bucket {bucket}: HTTP {status}")))
        }
    }
}

impl S3Endpoint {
    fn port(&self) -> Result<u16> {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| Error::Prerequisite(format!("S3 endpoint {} has no port", self.endpoint)))
    }

    /// Multipart uploads begun in `bucket` and neither completed nor aborted (S3's
    /// `ListMultipartUploads`): what a failed upload must not leave behind.
    pub fn pending_multipart_uploads(&self, bucket: &str) -> Result<usize> {
        let port = self.port()?;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).context(|| "connecting to the S3 server".into())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).context(|| "setting a timeout".into())?;
        write!(stream, "GET /{bucket}?uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .context(|| "asking the S3 server".into())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).context(|| "reading the S3 server's answer".into())?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(Error::Prerequisite(format!(
                "listing multipart uploads: {}",
                answer.lines().next().unwrap_or("")
            )));
        }
        Ok(answer.matches("<Upload>").count())
    }
}

/// The `moto_server` of the cached virtualenv.
pub struct S3Server {
    endpoint: S3Endpoint,
    process: Supervised,
}

impl S3Server {
    /// The virtualenv, installing it first when it is missing (about 30 s; instant once cached).
    pub fn ensure() -> Result<PathBuf> {
        PinnedVenv { name: CACHE_NAME, requirements: &[REQUIREMENT] }.ensure(check_version)
    }

    pub async fn start(workdir: &Arc<WorkDir>) -> Result<Self> {
        let venv = tokio::task::spawn_blocking(Self::ensure).await.expect("the moto installer panicked")?;
        let dir = workdir.join("s3");
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let process = Supervised::spawn(
            workdir,
            Spec::new("s3", venv.join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // Large objects spill to temporary files: keep them in the work directory.
                .env("TMPDIR", dir.display().to_string())
                .current_dir(&dir),
        )?;
        process
            .wait_ready("the S3 server", Duration::from_secs(60), || async move {
                request(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    .and_then(|status| if status == 200 { Ok(()) } else { Err(format!("HTTP {status}")) })
            })
            .await?;
        let endpoint = S3Endpoint {
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            access_key_id: "tenantry-test".into(),
            secret_access_key: "tenantry-test-secret".into(),
        };
        Ok(Self { endpoint, process })
    }

    pub fn endpoint(&self) -> &S3Endpoint {
        &self.endpoint
    }

    pub fn process(&self) -> &Supervised {
        &self.process
    }
}

/// One plain HTTP/1.1 request; the status code of its answer.
fn request(port: u16, request: &str) -> std::result::Result<u16, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head);
    text.strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}

fn check_version(venv: &Path) -> Result<()> {
    let output =
        run(&Spec::new("moto version", venv.join("bin/python")).args(["-c", "import moto; print(moto.__version__)"]))?;
    if output.trim() == VERSION {
        Ok(())
    } else {
        Err(Error::Prerequisite(format!("{REQUIREMENT} installed, but moto says {output:?}")))
    }
}
