//! The system packages a build that links MLX still needs (everything else comes from PyPI,
//! crates.io and the repository), checked before cargo starts, so that a missing one is one line
//! here instead of a build script's failure inside cargo's output. On Debian and Ubuntu they are
//! installed, saying what runs; elsewhere the line names the command.

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

/// A system package: what it provides, how to tell it is there, what installs it.
struct Package {
    provides: &'static str,
    present: fn() -> bool,
    debian: &'static str,
    elsewhere: &'static str,
}

const PACKAGES: [Package; 2] = [
    Package {
        provides: "a C++ compiler (mlx-c, MLX's C API, is C++20)",
        present: || {
            succeeds(
                &std::env::var("CXX").unwrap_or_else(|_| "c++".into()),
                &["--version"],
            )
        },
        debian: "g++",
        elsewhere: "macOS: xcode-select --install; other Linux: your distribution's g++",
    },
    Package {
        provides: "pip (it downloads the MLX and OpenBLAS wheels from PyPI)",
        present: || {
            std::env::var_os("MLX_DIR").is_some()
                || succeeds(&python(), &["-m", "pip", "--version"])
        },
        debian: "python3-pip",
        elsewhere: "python3 -m ensurepip --user, or set PYTHON to a Python with pip",
    },
];

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Makes sure the packages a build linking MLX needs are there: installs the missing ones with
/// apt-get on Debian/Ubuntu (with sudo when not root), or fails naming them and the command.
pub fn ensure_build_prerequisites() -> Result<()> {
    let missing: Vec<&Package> = PACKAGES
        .iter()
        .filter(|package| !(package.present)())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|package| package.debian).collect();
    if !succeeds("apt-get", &["--version"]) {
        let first = missing[0];
        bail!(
            "missing {}: install it ({})",
            first.provides,
            first.elsewhere
        );
    }
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
    let sudo = if as_root { "" } else { "sudo " };
    let install = format!(
        "{sudo}apt-get install -y --no-install-recommends {}",
        names.join(" ")
    );
    for package in &missing {
        eprintln!("missing {}", package.provides);
    }
    eprintln!("installing it: {sudo}apt-get update && {install}");
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("could not run apt-get")?;
        if !status.success() {
            bail!("`{install}` failed ({status}); run it yourself, then try again");
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut arguments = vec!["install", "-y", "-qq", "--no-install-recommends"];
    arguments.extend(&names);
    apt(&arguments)?;
    if let Some(still) = PACKAGES.iter().find(|package| !(package.present)()) {
        bail!(
            "{} is still missing after `{install}`; install it ({})",
            still.provides,
            still.elsewhere
        );
    }
    Ok(())
}
