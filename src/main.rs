//! Entry point: parse the flags, set up logging and the runtime, run the
//! application (`ceph_rbd_exporter::app`), and turn its outcome into an
//! exit code.

use ceph_rbd_exporter::{app, cli::Cli};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "ceph_rbd_exporter={}",
            cli.log_level
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ceph-rbd-exporter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceph-rbd-exporter: {e:#}");
            ExitCode::from(app::exit_code(&e))
        }
    }
}

/// glibc gives threads that allocate concurrently their own malloc arenas
/// (up to 8 per core) and keeps freed memory in each: librados' messenger
/// threads, the tokio workers and the blocking pool each hold on to some.
/// One arena keeps the serving exporter at 10000 images about 20 MiB
/// smaller, at no measurable CPU cost (BENCHMARKS.md). Must run before any
/// thread starts; an operator's `MALLOC_ARENA_MAX` wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(
                param: std::os::raw::c_int,
                value: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        const M_ARENA_MAX: std::os::raw::c_int = -8;
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: plain glibc call, made while this is the only thread.
            unsafe { mallopt(M_ARENA_MAX, 1) };
        }
    }
}
