//! What every benchmark program shares: the machine line, and writing its section into
//! BENCHMARKS.md (between `<!-- name:start -->` and `<!-- name:end -->`, replaced in place).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// "N cores, M GiB RAM".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0))
        })
        .unwrap_or(0);
    format!("{cores} cores, {} GiB RAM", mem / 1024 / 1024)
}

fn output_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Replaces (or appends) section `name` of BENCHMARKS.md with `title` and `body`.
pub fn write_section(name: &str, title: &str, command: &str, body: &str) {
    let commit = output_of("git", &["rev-parse", "--short", "HEAD"]);
    let date = output_of("date", &["-u", "+%Y-%m-%d"]);
    let (start, end) = (format!("<!-- {name}:start -->"), format!("<!-- {name}:end -->"));
    let section = format!(
        "{start}\n## {title}\n\nCommand: `{command}`. Date: {date}. Commit: {commit}. Machine: {}.\n\n{body}{end}",
        machine()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) => format!("{}{}{}", &old[..a], section, &old[b + end.len()..]),
        _ => format!("{}\n\n{}\n", old.trim_end(), section),
    };
    std::fs::write(&path, new).unwrap();
}

/// The q-quantile (0..=1) of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}
