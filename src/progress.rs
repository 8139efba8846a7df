//! Progress on a terminal: one bar per phase under way (the checks of each
//! step, each step, each read-back, the hold's waits), since a `--yes` run
//! overlaps them. Nothing is drawn when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one run. Cheap to share: the executor hands out one bar per
/// phase and drops it when the phase ends.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: MultiProgress,
}

impl Progress {
    /// `None` when stderr is not a terminal: a log file or a CI job gets the
    /// report, never bar redraws.
    pub fn on_terminal() -> Option<Progress> {
        std::io::stderr().is_terminal().then(|| Progress {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)),
        })
    }

    /// A bar whose total grows as discovery decides targets, so it is
    /// known once discovery ends: `step 4 Deactivate keys [###   ] 812/1500`.
    pub fn targets(&self, label: String) -> Bar {
        let bar = self.bars.add(ProgressBar::new(0));
        bar.set_style(style(TARGETS));
        bar.set_message(label);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    /// A wait of known length (the hold's pause between checks).
    pub fn wait(&self, label: String, length: Duration) -> Bar {
        let bar = self.bars.add(ProgressBar::new(length.as_secs().max(1)));
        bar.set_style(style(WAIT));
        bar.set_message(label);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    /// Prints a line above the bars without tearing them.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bars.suspend(f)
    }
}

const TARGETS: &str = "  {spinner} {msg} [{bar:24}] {pos}/{len} targets, {elapsed}";
const WAIT: &str = "  {spinner} {msg} [{bar:24}] {pos}/{len} s";

/// The template is a constant: a malformed one is a bug caught by the unit
/// test below, and falls back to indicatif's plain bar rather than panicking.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-")
}

/// One phase's bar; cleared from the terminal when dropped.
#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// Discovery decided one more target.
    pub fn decided(&self) {
        self.0.inc_length(1);
    }

    /// One more target finished.
    pub fn finished(&self) {
        self.0.inc(1);
    }

    pub fn set_position(&self, at: u64) {
        self.0.set_position(at);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_parse() {
        for t in [super::TARGETS, super::WAIT] {
            assert!(indicatif::ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
