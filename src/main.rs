//! Entry point: parse flags, check the configuration, then sample and serve
//! until SIGTERM or ctrl-c.

use anyhow::Context;
use ceph_rbd_exporter::analysis::{self, Settings};
use ceph_rbd_exporter::ceph::{ConnectOptions, RadosConn};
use ceph_rbd_exporter::cli::{Cli, Command};
use ceph_rbd_exporter::error::Error;
use ceph_rbd_exporter::metrics::RenderOptions;
use ceph_rbd_exporter::sampler::{SampleConfig, Sampler};
use ceph_rbd_exporter::webconfig::WebConfig;
use ceph_rbd_exporter::{report, server};
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code for bad flags or configuration, like clap's.
const EXIT_CONFIG: u8 = 2;

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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceph-rbd-exporter: {e:#}");
            let config = e
                .downcast_ref::<Error>()
                .is_some_and(|e| matches!(e, Error::Config(_)));
            ExitCode::from(if config { EXIT_CONFIG } else { 1 })
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

async fn connect(opts: ConnectOptions) -> Result<Arc<RadosConn>, Error> {
    tokio::task::spawn_blocking(move || RadosConn::connect(&opts).map(Arc::new))
        .await
        .unwrap_or_else(|e| Err(Error::Config(format!("connect task failed: {e}"))))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = ConnectOptions {
        conf_path: cli.ceph_config.clone(),
        user: cli.ceph_user.clone(),
        op_timeout: cli.ceph_op_timeout,
        max_ops_per_second: cli.sample_max_ops_per_second,
    };
    RadosConn::preflight(&opts)?;
    let sampler = Sampler::new(
        SampleConfig {
            pools: cli.pools.clone(),
            max_inflight: cli.ceph_max_inflight as usize,
        },
        Settings {
            clone_depth_max: cli.clone_depth_max,
        },
        RenderOptions {
            all_images: cli.metrics_all_images,
            sample_interval_seconds: cli.sample_interval.as_secs_f64(),
        },
    );

    if let Some(Command::Dump) = cli.command {
        return dump(sampler, &opts).await;
    }

    let web = match &cli.web_config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    };
    let config_tls = web.tls.is_some();
    let listener = tokio::net::TcpListener::bind(cli.web_listen_address)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot listen on --web.listen-address {}: {e}",
                cli.web_listen_address
            ))
        })?;
    let local = listener.local_addr().context("listener address")?;

    // Credentials the cluster rejects are fatal; a cluster that is down is not.
    let initial = match connect(opts.clone()).await {
        Ok(c) => Some(c),
        Err(e @ Error::Config(_)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "cluster not reachable at start; serving ceph_rbd_exporter_up 0 and retrying");
            None
        }
    };
    tracing::info!(
        address = %local,
        path = %cli.web_telemetry_path,
        tls = config_tls,
        "serving metrics"
    );

    let (publish, published) = tokio::sync::watch::channel(Arc::new(sampler.initial()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sampling = tokio::spawn(sampler.run(
        cli.sample_interval,
        initial,
        move || connect(opts.clone()),
        publish,
        stopped,
    ));
    let config = server::ServerConfig {
        telemetry_path: cli.web_telemetry_path.clone(),
        web,
        ..Default::default()
    };
    server::run(listener, published, config, shutdown_signal()).await;
    let _ = stop.send(true);
    let _ = sampling.await;
    tracing::info!("stopped");
    Ok(())
}

async fn dump(mut sampler: Sampler, opts: &ConnectOptions) -> anyhow::Result<()> {
    let conn = connect(opts.clone()).await?;
    let published = sampler.step(&conn).await;
    if let Some(e) = &published.last_error {
        anyhow::bail!("sample failed: {e}");
    }
    let sample = published.sample.context("no sample")?;
    let analysis = published
        .analysis
        .clone()
        .unwrap_or_else(|| Arc::new(analysis::analyse(&sample, &sampler.settings)));
    let images = report::images(&sample, &analysis, &ceph_rbd_exporter::analysis::NoHosts);
    println!("{}", serde_json::to_string_pretty(&images)?);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
