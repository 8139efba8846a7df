//! The local AWS emulator (moto) a tabletop runs against: found in the
//! project's virtualenv or on PATH, started on a free loopback port, stopped
//! when dropped unless the responder keeps it to look around.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How a fresh machine gets the emulator (the version the tests pin).
pub const INSTALL_HINT: &str = "install it with ./scripts/setup-emulator.sh in the breakglass checkout the binary was built in, \
     or point BREAKGLASS_MOTO_SERVER at a moto_server executable (pip install 'moto[server]==5.2.5')";

/// A running moto server on 127.0.0.1.
pub struct Emulator {
    child: Option<Child>,
    pub port: u16,
}

impl Emulator {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Result<Emulator, Error> {
        let exe = find().ok_or_else(|| {
            Error::Emulator(format!(
                "the moto emulator (moto_server) was not found: {INSTALL_HINT}"
            ))
        })?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::Emulator(format!("no free loopback port: {e}")))?;
        let mut cmd = Command::new(&exe);
        // The emulator never sees the responder's AWS credentials or settings.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&k);
            }
        }
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // moto's default AMI catalogue brings thousands of public
            // snapshots that answer to `OwnerIds=self`; a real account has
            // only its own.
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            // AdministratorAccess and the other AWS managed policies exist.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Emulator(format!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    exe.display()
                ))
            })?;
        let mut emulator = Emulator {
            child: Some(child),
            port,
        };
        emulator.wait_ready()?;
        Ok(emulator)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Leaves the emulator running after breakglass exits.
    pub fn keep(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Emulator(format!(
                    "moto_server exited at start ({status}): {INSTALL_HINT}"
                )));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Emulator(format!(
            "moto_server did not answer on port {} within 60 s",
            self.port
        )))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `BREAKGLASS_MOTO_SERVER`, else `.venv/bin/moto_server` in the checkout
/// the breakglass executable was built in (above it). Never the working
/// directory or PATH: a `moto_server` planted there would run with the
/// responder's rights.
fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BREAKGLASS_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = |dir: &Path| {
        let p = dir.join(".venv/bin/moto_server");
        p.is_file().then_some(p)
    };
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).find_map(venv)
}
