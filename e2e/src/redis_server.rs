//! A private Redis server (Debian's `redis-server`) on a free loopback port, keeping nothing on disk.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::install::{ensure_debian_packages, which};
use crate::process::{Spec, Supervised, WorkDir, free_port};

pub struct Redis {
    port: u16,
    process: Supervised,
}

impl Redis {
    pub async fn start(workdir: &Arc<WorkDir>) -> Result<Self> {
        ensure_debian_packages(&["redis-server"])?;
        let program = which("redis-server").unwrap_or_else(|| "/usr/bin/redis-server".into());
        let dir = workdir.join("redis");
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let process = Supervised::spawn(
            workdir,
            Spec::new("redis", program)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--dir", &dir.display().to_string()]),
        )?;
        process.wait_ready("Redis", Duration::from_secs(30), || async move { ping(port) }).await?;
        Ok(Self { port, process })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn process(&self) -> &Supervised {
        &self.process
    }
}

/// One `PING` in the inline protocol; enough to know the server answers commands.
fn ping(port: u16) -> std::result::Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).map_err(|e| e.to_string())?;
    if &reply == b"+PONG\r\n" { Ok(()) } else { Err(format!("unexpected reply {:?}", String::from_utf8_lossy(&reply))) }
}
