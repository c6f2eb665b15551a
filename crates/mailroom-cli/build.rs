//! Stamps the binary with the git commit it was built from (`mailroom --version` prints
//! it beside the workspace version); a build outside a git checkout has none.

use std::path::Path;
use std::process::Command;

fn main() {
    let git_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    // Rebuild when HEAD moves: a checkout (HEAD), a commit on the branch (its ref file,
    // or packed-refs once git packs it).
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            watched.push(git_dir.join(reference));
        }
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=MAILROOM_GIT_COMMIT");
    let commit = std::env::var("MAILROOM_GIT_COMMIT").ok().or_else(|| {
        let output = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .filter(|commit| !commit.is_empty())
    });
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let text = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=MAILROOM_VERSION={text}");
}
