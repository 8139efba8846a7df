//! Stamps the binary with the commit it was built from and its build
//! profile, so two builds of one version can be told apart
//! (`breakglass --version`). Outside a git checkout the commit reads
//! `unknown`.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=BREAKGLASS_COMMIT={commit}");
    println!("cargo:rustc-env=BREAKGLASS_PROFILE={profile}");
    // A new commit moves HEAD's branch; a checkout moves HEAD itself.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
