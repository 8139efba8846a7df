//! Stamps the binary with the commit it was built from and its build
//! profile, so two builds of one version can be told apart
//! (`breakglass --version`). Outside its own git checkout (a tarball, a
//! crate vendored into another repository) the commit reads `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git <args>` in the crate's directory, trimmed; `None` if git fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    // Only this crate's own checkout names its commit: git searches parent
    // folders, and a parent repository's commit would be a lie.
    let own = git(&dir, &["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .zip(std::fs::canonicalize(&dir).ok())
        .is_some_and(|(top, here)| top == here);
    let commit = own
        .then(|| git(&dir, &["rev-parse", "--short=12", "HEAD"]))
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=BREAKGLASS_COMMIT={commit}");
    println!("cargo:rustc-env=BREAKGLASS_PROFILE={profile}");
    if !own {
        return;
    }
    // A commit moves HEAD's branch, a checkout moves HEAD. The paths come
    // from git (`.git` is a file in a worktree), and only those that exist
    // are watched: a missing one would make cargo rerun this on every build.
    let watched = [
        git(&dir, &["rev-parse", "--git-path", "HEAD"]),
        git(&dir, &["rev-parse", "--git-path", "refs/heads"]),
        git(&dir, &["rev-parse", "--git-path", "packed-refs"]),
    ];
    for path in watched.into_iter().flatten() {
        let path = dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
