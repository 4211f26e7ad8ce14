//! The environment's image registry: Debian's `docker-registry` (the CNCF distribution
//! registry) serving the cached storage the recipes were pushed to. Each environment runs one on
//! the host's end of its node's link, read-only; `testenv install` runs one on loopback for its
//! pushes. Plain HTTP: it is reachable from this machine and its node only.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::repository_path;
use crate::error::{Error, IoContext, Result};
use crate::process::{Spec, Supervised, WorkDir};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the registry keeps its blobs and manifests, under the images' cache folder.
pub fn storage_dir(images_dir: &Path) -> PathBuf {
    images_dir.join("registry")
}

pub struct Registry {
    address: SocketAddr,
    process: Supervised,
}

impl Registry {
    /// A read-only registry of the cached images on `ip`, at a port free there.
    pub fn start(workdir: &Arc<WorkDir>, images_dir: &Path, ip: Ipv4Addr) -> Result<Self> {
        Self::spawn(workdir, images_dir, ip, true)
    }

    /// A registry on loopback that takes pushes.
    pub(super) fn start_for_pushing(workdir: &Arc<WorkDir>, images_dir: &Path) -> Result<Self> {
        Self::spawn(workdir, images_dir, Ipv4Addr::LOCALHOST, false)
    }

    fn spawn(workdir: &Arc<WorkDir>, images_dir: &Path, ip: Ipv4Addr, read_only: bool) -> Result<Self> {
        let port = TcpListener::bind((ip, 0))
            .and_then(|listener| listener.local_addr())
            .context(|| format!("finding a free port on {ip}"))?
            .port();
        let address = SocketAddr::from((ip, port));
        let storage = storage_dir(images_dir);
        fs::create_dir_all(&storage).context(|| format!("creating {}", storage.display()))?;
        let config = workdir.join(format!("registry-{port}.yml"));
        fs::write(&config, config_yaml(&storage, address, read_only))
            .context(|| format!("writing {}", config.display()))?;
        let process = Supervised::spawn(
            workdir,
            Spec::new(format!("registry-{port}"), "docker-registry").arg("serve").arg(config.display().to_string()),
        )?;
        let registry = Self { address, process };
        registry.wait_ready()?;
        Ok(registry)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn check_alive(&self) -> Result<()> {
        self.process.check_alive()
    }

    /// Where an image named `name` (as pods name it) is pushed on this registry.
    pub(super) fn push_reference(&self, name: &str) -> String {
        format!("{}/{}", self.address, repository_path(name))
    }

    /// Waits until `GET /v2/` answers 200, failing early if the process has ended.
    fn wait_ready(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            if answers(self.address) {
                return Ok(());
            }
            self.process.check_alive()?;
            if started.elapsed() > READY_TIMEOUT {
                return Err(Error::Prerequisite(format!(
                    "the image registry did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                    self.address,
                    self.process.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether the registry's API root answers 200.
fn answers(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut response = [0u8; 16];
    stream.write_all(request.as_bytes()).is_ok()
        && stream
            .read(&mut response)
            .is_ok_and(|n| response[..n].starts_with(b"HTTP/1.0 200") || response[..n].starts_with(b"HTTP/1.1 200"))
}

fn config_yaml(storage: &Path, address: SocketAddr, read_only: bool) -> String {
    // Uploads are never purged by age (a push in progress is only ours), and a read-only
    // registry refuses pushes, so an environment can never change what others pull.
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: {read_only}
http:
  addr: {address}
",
        storage = storage.display(),
    )
}
