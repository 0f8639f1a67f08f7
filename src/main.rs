//! Entry point: parse flags, check the configuration, then sample and serve
//! until SIGTERM or ctrl-c.

use anyhow::Context;
use ceph_rbd_exporter::analysis::{self, Settings};
use ceph_rbd_exporter::attribution::inventory::Inventory;
use ceph_rbd_exporter::attribution::rdns::ReverseDns;
use ceph_rbd_exporter::attribution::{Attribution, Attributor, NameResolver};
use ceph_rbd_exporter::ceph::{ConnectOptions, RadosConn};
use ceph_rbd_exporter::cli::{Cli, Command, ExplainArgs, OutputFormat};
use ceph_rbd_exporter::error::Error;
use ceph_rbd_exporter::explain;
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

    let attributor = build_attributor(&cli)?;
    let sampler = match &attributor {
        Some(a) => sampler.with_attributor(a.clone()),
        None => sampler,
    };
    match &cli.command {
        Some(Command::Dump) => return dump(sampler, &opts, attributor).await,
        Some(Command::Explain(args)) => {
            return explain(sampler, &opts, attributor, args).await;
        }
        None => {}
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
    if let Some(a) = &attributor {
        tokio::spawn(
            a.clone()
                .refresh_loop(cli.attachments_refresh_interval, stopped.clone()),
        );
    }
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

/// The inventory, reverse DNS and attachment sources the flags ask for;
/// `None` when they ask for none. Bad files are configuration errors.
fn build_attributor(cli: &Cli) -> Result<Option<Arc<Attributor>>, Error> {
    let sources = sources::from_cli(cli)?;
    if cli.watchers_inventory.is_none() && !cli.watchers_reverse_dns && sources.is_empty() {
        return Ok(None);
    }
    let inventory = match &cli.watchers_inventory {
        Some(path) => Inventory::load(path)
            .map_err(|e| Error::Config(format!("--watchers.inventory: {e}")))?,
        None => Inventory::default(),
    };
    let rdns = cli.watchers_reverse_dns.then(reverse_dns);
    Ok(Some(Arc::new(Attributor::new(
        inventory,
        sources,
        rdns,
        REVERSE_DNS_BUDGET,
    ))))
}

/// Most time reverse DNS may add to one sample; lookups still running then
/// finish in the background for the next sample.
const REVERSE_DNS_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes one sample, with the sources fetched once first, and returns it
/// with its analysis and the attribution behind it.
async fn sample_for_report(
    sampler: &mut Sampler,
    opts: &ConnectOptions,
    attributor: Option<&Arc<Attributor>>,
) -> anyhow::Result<(
    Arc<ceph_rbd_exporter::model::Sample>,
    Arc<analysis::Analysis>,
    Arc<Attribution>,
)> {
    let conn = connect(opts.clone()).await?;
    if let Some(a) = attributor {
        a.refresh(ceph_rbd_exporter::sampler::now_unix()).await;
        for (name, health) in a.health() {
            if let Some(e) = &health.last_error {
                eprintln!(
                    "ceph-rbd-exporter: warning: source {name} failed, no verdicts from it: {e}"
                );
            }
        }
    }
    let published = sampler.step(&conn).await;
    if let Some(e) = &published.last_error {
        anyhow::bail!("sample failed: {e}");
    }
    let sample = published.sample.context("no sample")?;
    let analysis = published
        .analysis
        .clone()
        .unwrap_or_else(|| Arc::new(analysis::analyse(&sample, &sampler.settings)));
    Ok((sample, analysis, sampler.attribution()))
}

async fn dump(
    mut sampler: Sampler,
    opts: &ConnectOptions,
    attributor: Option<Arc<Attributor>>,
) -> anyhow::Result<()> {
    let (sample, analysis, attribution) =
        sample_for_report(&mut sampler, opts, attributor.as_ref()).await?;
    let images = report::images(&sample, &analysis, attribution.as_ref());
    println!("{}", serde_json::to_string_pretty(&images)?);
    Ok(())
}

async fn explain(
    mut sampler: Sampler,
    opts: &ConnectOptions,
    attributor: Option<Arc<Attributor>>,
    args: &ExplainArgs,
) -> anyhow::Result<()> {
    let (sample, analysis, attribution) =
        sample_for_report(&mut sampler, opts, attributor.as_ref()).await?;
    let json = args.output == OutputFormat::Json;
    let Some(spec) = &args.image else {
        let listing = explain::orphans(&sample, &analysis, &attribution);
        if json {
            println!("{}", serde_json::to_string_pretty(&listing)?);
        } else {
            print!("{}", explain::render_orphans(&listing));
        }
        return Ok(());
    };
    if !sample.pools.values().any(|p| p.name == spec.pool) {
        anyhow::bail!(
            "pool {:?} was not sampled: it does not exist, has no rbd application, or is not in --pools",
            spec.pool
        );
    }
    let Some((key, _)) = explain::find_image(&sample, &spec.pool, &spec.namespace, &spec.image)
    else {
        anyhow::bail!(
            "no image {:?} in pool {:?}{} (nor in its trash)",
            spec.image,
            spec.pool,
            if spec.namespace.is_empty() {
                String::new()
            } else {
                format!(" namespace {:?}", spec.namespace)
            }
        );
    };
    let e = explain::explain_image(&sample, &analysis, &attribution, &key)
        .context("image vanished from the analysis")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", explain::render_image(&e));
    }
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

/// Which attachment sources the flags ask for.
mod sources {
    use ceph_rbd_exporter::cli::Cli;
    use ceph_rbd_exporter::error::Error;
    use ceph_rbd_exporter::sources::AttachmentSource;
    use ceph_rbd_exporter::sources::SourceError;
    use ceph_rbd_exporter::sources::file::FileSource;
    use ceph_rbd_exporter::sources::kubernetes::KubernetesSource;
    use ceph_rbd_exporter::sources::openstack::OpenStackSource;

    /// Builds them; a bad setting is a configuration error.
    pub fn from_cli(cli: &Cli) -> Result<Vec<Box<dyn AttachmentSource>>, Error> {
        let mut sources: Vec<Box<dyn AttachmentSource>> = Vec::new();
        if let Some(path) = &cli.attachments_file {
            // Its content is checked on every fetch (it may be rewritten
            // while we run), but a file that is not there at all is a typo.
            std::fs::File::open(path).map_err(|e| {
                Error::Config(format!("--attachments.file {}: {e}", path.display()))
            })?;
            sources.push(Box::new(FileSource::new(path)));
        }
        let config = |e: SourceError| Error::Config(e.to_string());
        if let Some(cloud) = &cli.openstack_cloud {
            sources.push(Box::new(
                OpenStackSource::from_clouds_yaml(
                    cloud,
                    cli.openstack_clouds_file.as_deref(),
                    cli.attachments_timeout,
                )
                .map_err(config)?,
            ));
        }
        if let Some(path) = &cli.kubernetes_kubeconfig {
            sources.push(Box::new(
                KubernetesSource::from_kubeconfig(path, cli.attachments_timeout).map_err(config)?,
            ));
        } else if cli.kubernetes_in_cluster {
            sources.push(Box::new(
                KubernetesSource::in_cluster(cli.attachments_timeout).map_err(config)?,
            ));
        }
        Ok(sources)
    }
}

/// Reverse DNS for watcher addresses: 1 s per lookup, names kept 10 min,
/// failures 1 min.
fn reverse_dns() -> NameResolver {
    use std::time::Duration;
    let rdns = ReverseDns::new(
        Duration::from_secs(1),
        Duration::from_secs(600),
        Duration::from_secs(60),
    );
    Box::new(move |ips, budget| {
        let rdns = rdns.clone();
        Box::pin(async move { rdns.resolve(&ips, budget).await })
    })
}
