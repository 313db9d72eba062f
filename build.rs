//! Records the git revision and the compiler version for `imds_exporter_build_info`.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let revision = std::env::var("IMDS_EXPORTER_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=IMDS_EXPORTER_REVISION={revision}");
    println!("cargo:rustc-env=IMDS_EXPORTER_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=IMDS_EXPORTER_REVISION");
    println!("cargo:rerun-if-changed=build.rs");
    // HEAD and the current branch's ref, where git keeps them: `.git/HEAD` in a clone,
    // elsewhere in a worktree (whose `.git` is a file). A path that does not exist would make
    // cargo rerun this script, and rebuild the crate, on every build; all of `refs/heads`
    // would rebuild it whenever another worktree's branch moves.
    let branch = output("git", &["symbolic-ref", "-q", "HEAD"]);
    for path in std::iter::once("HEAD".to_string()).chain(branch) {
        if let Some(p) = output("git", &["rev-parse", "--git-path", &path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
