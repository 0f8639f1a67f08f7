//! Command-line plumbing shared by every command: messages, exits, numbers,
//! and the few facts about the machine the results record.

use std::process::Command;

/// Parses a count given on the command line, or exits.
pub fn num(s: &str) -> usize {
    s.parse()
        .unwrap_or_else(|_| die(&format!("{s:?} is not a number")))
}

/// Exits with status 2 and a message.
pub fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

/// A progress message on stderr.
pub fn say(msg: &str) {
    eprintln!("[bench] {msg}");
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The trimmed stdout of a command; empty when it cannot run.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The current UTC date and time, as the results and the report show it.
pub fn utc_now() -> String {
    sh("date", &["-u", "+%Y-%m-%d %H:%M"])
}
