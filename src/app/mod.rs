//! The application: what `main` runs once flags and logging are set up.
//! Serving (the default), `dump` and `explain`, and the set-up they share
//! (connecting, building the attributor).

mod report;
mod serve;
mod setup;

use crate::ceph::{ConnectOptions, RadosConn};
use crate::cli::{Cli, Command};
use crate::error::Error;
use std::sync::Arc;

/// Exit code for bad flags or configuration, like clap's.
pub const EXIT_CONFIG: u8 = 2;

/// Runs what the command line asks for. Configuration errors come back as
/// [`Error::Config`] (exit code [`EXIT_CONFIG`]).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = cli.cluster.connect_options()?;
    RadosConn::preflight(&opts)?;
    let attributor = setup::attributor(&cli.attribution)?;
    let mut config = cli.sampling.cycle_config();
    config.render.external_url = cli.web.web_external_url.clone();
    let cycle = crate::cycle::Cycle::new(config, attributor);
    match &cli.command {
        Some(Command::Dump) => report::dump(cycle, &opts).await,
        Some(Command::Explain(args)) => report::explain(cycle, &opts, args).await,
        None => {
            // Only the server keeps state: a one-shot command run next to
            // it must not rewrite its file.
            let cycle = match setup::state_file(&cli.storage)? {
                Some(state) => cycle.with_state_file(state),
                None => cycle,
            };
            serve::serve(cycle, opts, &cli.web, &cli.attribution).await
        }
    }
}

/// The exit code for an error `run` returned.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let config = e
        .downcast_ref::<Error>()
        .is_some_and(Error::is_fatal_at_start);
    if config { EXIT_CONFIG } else { 1 }
}

/// Connects on the blocking pool (librados' connect blocks).
async fn connect(opts: ConnectOptions) -> Result<Arc<RadosConn>, Error> {
    tokio::task::spawn_blocking(move || RadosConn::connect(&opts).map(Arc::new))
        .await
        .unwrap_or_else(|e| Err(Error::Config(format!("connect task failed: {e}"))))
}
