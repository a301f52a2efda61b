//! A root filesystem assembled from Debian packages without installing anything, standing in for a
//! container image's runtime stage where no Docker engine runs: the packages and their dependencies
//! (`Depends` and `Pre-Depends`, the first choice of each alternative, as apt would pick) are fetched
//! with `apt-get download` into a cache and unpacked with `dpkg-deb -x` into one folder. No maintainer
//! script runs, so the folder holds exactly the packages' files: enough to run a binary in it with
//! `chroot` and see whether its libraries are there.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The folders the dynamic loader searches by default on x86-64 and arm64 Debian.
pub const LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// `packages` and everything they depend on, sorted.
pub fn closure(packages: &[String]) -> Result<Vec<String>, String> {
    let mut seen = BTreeSet::new();
    let mut todo: VecDeque<String> = packages.iter().cloned().collect();
    while let Some(package) = todo.pop_front() {
        if !seen.insert(package.clone()) {
            continue;
        }
        let out = Command::new("apt-cache")
            .args(["depends", "--no-recommends", "--no-suggests"])
            .args([
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
            ])
            .arg(&package)
            .output()
            .map_err(|e| format!("apt-cache (Debian's apt) cannot run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "apt-cache depends {package} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        todo.extend(first_choices(&String::from_utf8_lossy(&out.stdout)));
    }
    Ok(seen.into_iter().collect())
}

/// The dependencies in `apt-cache depends` output, the first of each `|` group, real packages only.
fn first_choices(output: &str) -> Vec<String> {
    let mut picked = Vec::new();
    let mut in_group = false;
    for line in output.lines().skip(1) {
        let line = line.trim();
        let (alternative, rest) = match line.strip_prefix('|') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some(name) = rest
            .strip_prefix("Depends: ")
            .or_else(|| rest.strip_prefix("PreDepends: "))
        else {
            continue;
        };
        // `|Depends: a` then `Depends: b` means a or b: only a counts.
        if !in_group && !name.starts_with('<') {
            picked.push(name.trim().to_string());
        }
        in_group = alternative;
    }
    picked
}

/// Unpacks `packages` (downloaded into `cache` when missing there) into `root`.
pub fn assemble(root: &Path, packages: &[String], cache: &Path) -> Result<(), String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let mut updated = false;
    for package in packages {
        let deb = match cached_deb(cache, package) {
            Some(deb) => deb,
            None => {
                let download = || {
                    Command::new("apt-get")
                        .args(["download", "-q"])
                        .arg(package)
                        .current_dir(cache)
                        .output()
                        .map_err(|e| format!("apt-get cannot run: {e}"))
                };
                let mut out = download()?;
                if !out.status.success() && !updated {
                    // The package lists may be missing or stale on a fresh machine.
                    updated = true;
                    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                    out = download()?;
                }
                if !out.status.success() {
                    return Err(format!(
                        "apt-get download {package} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                cached_deb(cache, package)
                    .ok_or_else(|| format!("apt-get download {package} wrote no .deb"))?
            }
        };
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root)
            .output()
            .map_err(|e| format!("dpkg-deb cannot run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "dpkg-deb -x {} failed: {}",
                deb.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

fn cached_deb(cache: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{}_", package.replace(':', "%3a"));
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// Whether `root` holds a library file (or link) named `soname` where the loader looks, or in one of
/// `extra` (folders of `LD_LIBRARY_PATH`, relative to `root`).
pub fn provides(root: &Path, soname: &str, extra: &[&str]) -> bool {
    LIBRARY_DIRS
        .iter()
        .chain(extra)
        .any(|dir| root.join(dir).join(soname).exists())
}

/// The `NEEDED` entries of an ELF file (`readelf -d`).
pub fn needed(file: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(file)
        .output()
        .map_err(|e| format!("readelf (binutils) cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "readelf -d {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_choice_of_an_alternative_counts() {
        let output = "ca-certificates\n  Depends: openssl\n  |Depends: debconf\n  Depends: <debconf-2.0>\n    cdebconf\n  PreDepends: libc6\n";
        assert_eq!(first_choices(output), ["openssl", "debconf", "libc6"]);
    }
}
