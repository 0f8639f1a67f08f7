//! The default command: cycle every `--sample.interval` and serve the
//! result until SIGTERM or ctrl-c.

use super::connect;
use crate::ceph::ConnectOptions;
use crate::cli::{AttributionArgs, WebArgs};
use crate::cycle::Cycle;
use crate::error::Error;
use crate::server;
use crate::webconfig::WebConfig;
use anyhow::Context;
use std::sync::Arc;

/// Serves until a shutdown signal. Bad web settings and credentials the
/// cluster rejects are fatal; a cluster that is down is not.
pub async fn serve(
    cycle: Cycle,
    opts: ConnectOptions,
    web: &WebArgs,
    attribution: &AttributionArgs,
) -> anyhow::Result<()> {
    let web_config = match &web.web_config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    };
    let tls = web_config.tls.is_some();
    let listener = tokio::net::TcpListener::bind(web.web_listen_address)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot listen on --web.listen-address {}: {e}",
                web.web_listen_address
            ))
        })?;
    let local = listener.local_addr().context("listener address")?;
    let initial = match connect(opts.clone()).await {
        Ok(c) => Some(c),
        Err(e) if e.is_fatal_at_start() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "cluster not reachable at start; serving ceph_rbd_exporter_up 0 and retrying");
            None
        }
    };
    // The Ceph release of the client library loaded: which build is this.
    let release =
        crate::ceph::loaded_ceph_version().map_or_else(|| "unknown".to_string(), |v| v.to_string());
    tracing::info!(address = %local, path = %web.web_telemetry_path, tls, ceph_release = %release, "serving metrics");

    let (publish, published) = tokio::sync::watch::channel(Arc::new(cycle.initial()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(a) = cycle.attributor() {
        tokio::spawn(
            a.clone()
                .refresh_loop(attribution.attachments_refresh_interval, stopped.clone()),
        );
    }
    let cycling = tokio::spawn(cycle.run(initial, move || connect(opts.clone()), publish, stopped));
    let config = server::ServerConfig {
        telemetry_path: web.web_telemetry_path.clone(),
        web: web_config,
        link_prefix: crate::pages::link_prefix(web.web_external_url.as_deref()),
        ..Default::default()
    };
    server::run(listener, published, config, shutdown_signal()).await;
    let _ = stop.send(true);
    let _ = cycling.await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or ctrl-c.
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
