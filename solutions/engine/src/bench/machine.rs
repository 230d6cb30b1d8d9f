//! What a report was measured on: figures mean little without the machine and the MLX behind them.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub mlx_version: String,
    pub mlx_backend: String,
    pub mlx_device: String,
    pub blas: String,
    /// UTC, RFC 3339.
    pub date: String,
}

impl Machine {
    pub fn describe() -> Machine {
        Machine {
            cpu: cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_bytes().map_or(0.0, |bytes| bytes as f64 / (1u64 << 30) as f64),
            os: os_name(),
            mlx_version: mlx_doctor::mlx_version(),
            mlx_backend: mlx_doctor::backend().to_string(),
            mlx_device: mlx_doctor::default_device().unwrap_or_else(|error| error.to_string()),
            blas: mlx_doctor::blas_in_use(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

/// `model name` of /proc/cpuinfo (what lscpu shows) on Linux, sysctl's brand string on macOS.
fn cpu_model() -> Option<String> {
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        return info
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, name)| name.trim().to_string());
    }
    let output = std::process::Command::new("sysctl")
        .args(["-n", "machdep.cpu.brand_string"])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string()).filter(|name| !name.is_empty())
}

fn memory_bytes() -> Option<u64> {
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
        let kib = info
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        return Some(kib * 1024);
    }
    let output = std::process::Command::new("sysctl")
        .args(["-n", "hw.memsize"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// /etc/os-release's PRETTY_NAME on Linux, else the OS family.
fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|release| {
            release
                .lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|name| name.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}
