//! The local AWS emulator (moto) a tabletop runs against: found in the
//! project's virtualenv, started on a loopback port it picks itself, stopped
//! when dropped unless the responder keeps it to look around.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
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
    /// Starts the project's moto (with AWS's managed policies loaded) and
    /// waits until it answers.
    pub fn start() -> Result<Emulator, Error> {
        let exe = find().ok_or_else(|| {
            Error::Emulator(format!(
                "the moto emulator (moto_server) was not found: {INSTALL_HINT}"
            ))
        })?;
        // AdministratorAccess and the other AWS managed policies exist.
        Emulator::launch(&exe, &[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")])
    }

    /// Starts `exe` on a loopback port it picks itself and reads that port
    /// from the server's own start-up line. A port picked here and handed
    /// over could be taken by another server in between, which would then
    /// answer in this emulator's place.
    pub fn launch(exe: &Path, env: &[(&str, &str)]) -> Result<Emulator, Error> {
        let mut cmd = Command::new(exe);
        // The emulator never sees the responder's AWS credentials or settings.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&k);
            }
        }
        let mut child = cmd
            // moto then sets MOTO_PORT to "0" for the callbacks to itself
            // that Lambda, Batch and CloudFormation custom resources make;
            // no tabletop uses those services.
            .args(["-H", "127.0.0.1", "-p", "0"])
            // moto's default AMI catalogue brings thousands of public
            // snapshots that answer to `OwnerIds=self`; a real account has
            // only its own.
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Emulator(format!(
                    "cannot start {}: {e}; {INSTALL_HINT}",
                    exe.display()
                ))
            })?;
        let announced = child.stderr.take().map(Announced::read);
        let mut emulator = Emulator {
            child: Some(child),
            port: 0,
        };
        let Some(announced) = announced else {
            return Err(Error::Emulator(
                "moto_server's stderr was not captured".into(),
            ));
        };
        emulator.port = emulator.wait_announced(&announced)?;
        emulator.wait_ready(&announced)?;
        Ok(emulator)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Leaves the emulator running after breakglass exits.
    pub fn keep(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or_default()
    }

    /// The port the server says it listens on, or why it never said so.
    fn wait_announced(&mut self, announced: &Announced) -> Result<u16, Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match announced.port.recv_timeout(Duration::from_millis(100)) {
                Ok(port) => return Ok(port),
                Err(mpsc::RecvTimeoutError::Timeout) => self.exited(announced)?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed without the line: wait for the exit.
                    std::thread::sleep(Duration::from_millis(100));
                    self.exited(announced)?;
                }
            }
        }
        Err(Error::Emulator(format!(
            "moto_server did not say which port it listens on within 60 s{}; {INSTALL_HINT}",
            announced.said()
        )))
    }

    fn exited(&mut self, announced: &Announced) -> Result<(), Error> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            // Let the reader store the last lines (a traceback's last one
            // says what went wrong); once it is done, this returns at once.
            let _ = announced.port.recv_timeout(Duration::from_millis(500));
            return Err(Error::Emulator(format!(
                "moto_server exited at start ({status}){}; {INSTALL_HINT}",
                announced.said()
            )));
        }
        Ok(())
    }

    fn wait_ready(&mut self, announced: &Announced) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            self.exited(announced)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                // A listener that never answers must not outlast the deadline.
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
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

/// What the server wrote to stderr at start: the port it announced, and
/// the last lines before it (what a failed start is explained by).
struct Announced {
    port: mpsc::Receiver<u16>,
    before: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of a failed start shown in its error (a traceback ends with
/// what went wrong).
const SAID_LINES: usize = 8;

impl Announced {
    /// Reads stderr until werkzeug's ` * Running on http://127.0.0.1:PORT`
    /// line, sends PORT, then keeps draining: the server logs every request
    /// there and would block on a full pipe. Once breakglass exits (a kept
    /// emulator), the server's writes fail and werkzeug's logging swallows
    /// the error.
    fn read(stderr: ChildStderr) -> Announced {
        let (tx, port) = mpsc::channel();
        let before = Arc::new(Mutex::new(VecDeque::new()));
        let said = Arc::clone(&before);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut bytes = Vec::new();
            while matches!(reader.read_until(b'\n', &mut bytes), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&bytes);
                if let Some(p) = port_in(&line) {
                    // What came before is werkzeug's banner, not a reason
                    // for a later exit.
                    if let Ok(mut said) = said.lock() {
                        said.clear();
                    }
                    let _ = tx.send(p);
                    break;
                }
                if let Ok(mut said) = said.lock() {
                    if said.len() == SAID_LINES {
                        said.pop_front();
                    }
                    // No colour codes or other control characters in an error.
                    said.push_back(
                        line.trim_end()
                            .chars()
                            .filter(|c| !c.is_control())
                            .collect(),
                    );
                }
                bytes.clear();
            }
            drop(tx);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        Announced { port, before }
    }

    /// `; it said: …` with the lines before the port, if any, on one line
    /// (errors stay one line each).
    fn said(&self) -> String {
        let lines = match self.before.lock() {
            Ok(l) => l.iter().cloned().collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        if lines.is_empty() {
            return String::new();
        }
        format!("; it said: {}", lines.join(" | "))
    }
}

/// The port of werkzeug's start-up line, if `line` is it.
fn port_in(line: &str) -> Option<u16> {
    let rest = line.split_once("Running on http://127.0.0.1:")?.1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&p| p != 0)
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

#[cfg(test)]
mod tests {
    use super::port_in;

    #[test]
    fn the_port_is_read_from_werkzeugs_start_up_line() {
        assert_eq!(
            port_in(" * Running on http://127.0.0.1:43881\n"),
            Some(43881)
        );
        assert_eq!(port_in("\u{1b}[33mPress CTRL+C to quit\u{1b}[0m\n"), None);
        assert_eq!(port_in(" * Running on http://127.0.0.1:0\n"), None);
        assert_eq!(port_in(" * Running on http://127.0.0.1:99999\n"), None);
    }
}
