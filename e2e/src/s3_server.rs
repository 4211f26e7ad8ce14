//! A private S3-protocol server on a free loopback port: moto's server mode (PyPI's
//! `moto[server]`, pinned, in a cached virtualenv), for the backup tests. It speaks the S3 REST
//! protocol with signature V4, multipart uploads (with S3's 5 MiB minimum part size), listing
//! and deletion, and keeps objects in memory, spilling large ones to temporary files in its work
//! directory. Tests create their own buckets; any access key is accepted.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
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
    /// `http://<address>:<port>`: this host's end of the real node's link in a whole
    /// environment, so that pods reach it too; `127.0.0.1` otherwise.
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
        let authority = self.authority()?;
        let status = request(
            authority,
            &format!("PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
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
    /// `<address>:<port>` of the endpoint.
    fn authority(&self) -> Result<&str> {
        self.endpoint
            .strip_prefix("http://")
            .filter(|authority| authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()))
            .ok_or_else(|| Error::Prerequisite(format!("S3 endpoint {} is not http://<address>:<port>", self.endpoint)))
    }

    /// The keys of `bucket`'s objects under `prefix` (S3's `ListObjectsV2`, one page of up to
    /// 1000).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let authority = self.authority()?;
        let mut stream = TcpStream::connect(authority).context(|| "connecting to the S3 server".into())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).context(|| "setting a timeout".into())?;
        write!(
            stream,
            "GET /{bucket}?list-type=2&prefix={prefix} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )
        .context(|| "asking the S3 server".into())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).context(|| "reading the S3 server's answer".into())?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(Error::Prerequisite(format!("listing {bucket}: {}", answer.lines().next().unwrap_or(""))));
        }
        Ok(answer
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect())
    }

    /// Multipart uploads begun in `bucket` and neither completed nor aborted (S3's
    /// `ListMultipartUploads`): what a failed upload must not leave behind.
    pub fn pending_multipart_uploads(&self, bucket: &str) -> Result<usize> {
        let authority = self.authority()?;
        let mut stream = TcpStream::connect(authority).context(|| "connecting to the S3 server".into())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).context(|| "setting a timeout".into())?;
        write!(stream, "GET /{bucket}?uploads HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
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

    /// Listens on `address` (this host's end of the real node's link, for pods to reach it too;
    /// never every interface).
    pub async fn start(workdir: &Arc<WorkDir>, address: Ipv4Addr) -> Result<Self> {
        let venv = tokio::task::spawn_blocking(Self::ensure).await.expect("the moto installer panicked")?;
        let dir = workdir.join("s3");
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let process = Supervised::spawn(
            workdir,
            Spec::new("s3", venv.join("bin/moto_server"))
                .args(["-H", &address.to_string(), "-p", &port.to_string()])
                // Large objects spill to temporary files: keep them in the work directory.
                .env("TMPDIR", dir.display().to_string())
                .current_dir(&dir),
        )?;
        let authority = format!("{address}:{port}");
        process
            .wait_ready("the S3 server", Duration::from_secs(60), || async {
                request(&authority, &format!("GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"))
                    .and_then(|status| if status == 200 { Ok(()) } else { Err(format!("HTTP {status}")) })
            })
            .await?;
        let endpoint = S3Endpoint {
            endpoint: format!("http://{authority}"),
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
fn request(authority: &str, request: &str) -> std::result::Result<u16, String> {
    let mut stream = TcpStream::connect(authority).map_err(|e| e.to_string())?;
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
