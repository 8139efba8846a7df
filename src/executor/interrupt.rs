//! Ctrl-C, SIGTERM and SIGHUP during a live run.

use std::sync::atomic::Ordering;

/// Ctrl-C or SIGTERM during a live run. The first stops new calls: those
/// under way finish and are recorded, the rest of the step is reported as
/// not started and later steps do not run. The second abandons the calls
/// under way (their intent records stay without a result: `audit verify`
/// names them as uncertain).
#[derive(Debug, Default)]
pub struct Interrupt {
    stopping: std::sync::atomic::AtomicBool,
    abandoned: tokio::sync::Notify,
}

impl Interrupt {
    /// Starts listening for the signals (Ctrl-C, SIGTERM, and SIGHUP: a
    /// responder's dropped SSH session must end a hold the way Ctrl-C does,
    /// tightening the freeze and closing the log, not kill it midway); the
    /// listener lives as long as the process.
    pub fn listen() -> std::sync::Arc<Interrupt> {
        let me = std::sync::Arc::new(Interrupt::default());
        let it = me.clone();
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut term), Ok(mut hup)) = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::hangup()),
                    ) else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                        _ = hup.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                count += 1;
                if count == 1 {
                    it.stopping.store(true, Ordering::SeqCst);
                    errln!(
                        "\ninterrupted: no new call starts; calls under way finish and are recorded (interrupt again to abandon them)"
                    );
                } else {
                    errln!("abandoning the calls under way: the audit log marks them uncertain");
                    it.abandoned.notify_waiters();
                    return;
                }
            }
        });
        me
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Resolves when the responder interrupts a second time.
    pub async fn abandoned(&self) {
        self.abandoned.notified().await
    }

    /// Resolves when the responder interrupts (for waits, such as a hold's).
    pub async fn stopped(&self) {
        while !self.stopping() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
