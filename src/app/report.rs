//! `dump` and `explain`: one cycle, with the attachment sources fetched
//! once first, printed instead of served.

use super::connect;
use crate::ceph::ConnectOptions;
use crate::cli::{ExplainArgs, OutputFormat};
use crate::clock::now_unix;
use crate::cycle::{Analysed, Cycle};
use crate::{explain, report};
use anyhow::Context;
use std::sync::Arc;

/// Takes one sample, with the sources fetched once first, and returns it
/// analysed.
async fn analysed_once(cycle: &mut Cycle, opts: &ConnectOptions) -> anyhow::Result<Arc<Analysed>> {
    let conn = connect(opts.clone()).await?;
    if let Some(a) = cycle.attributor() {
        a.refresh(now_unix()).await;
        for (name, health) in a.health() {
            if let Some(e) = &health.last_error {
                eprintln!(
                    "ceph-rbd-exporter: warning: source {name} failed, no verdicts from it: {e}"
                );
            }
        }
    }
    let published = cycle.step(&conn).await;
    if let Some(e) = &published.last_error {
        anyhow::bail!("sample failed: {e}");
    }
    published.analysed.clone().context("no sample")
}

/// Prints every image with what was learned, as JSON, streamed.
pub async fn dump(mut cycle: Cycle, opts: &ConnectOptions) -> anyhow::Result<()> {
    let a = analysed_once(&mut cycle, opts).await?;
    // Streamed image by image: at 100,000 images neither the reports nor
    // the text are held whole.
    let stdout = std::io::stdout();
    report::write_images(
        std::io::BufWriter::new(stdout.lock()),
        &a.sample,
        &a.analysis,
    )?;
    Ok(())
}

/// Prints why an image cannot be deleted and how to fix it, or every
/// orphan, as text or JSON.
pub async fn explain(
    mut cycle: Cycle,
    opts: &ConnectOptions,
    args: &ExplainArgs,
) -> anyhow::Result<()> {
    let a = analysed_once(&mut cycle, opts).await?;
    let json = args.output == OutputFormat::Json;
    let key = match (&args.image, &args.image_id, &args.pool) {
        (Some(spec), _, _) => explain::find(&a, &spec.pool, &spec.namespace, &spec.image),
        (None, Some(id), Some(pool)) => explain::find_by_id(&a, pool, &args.namespace, id),
        _ => {
            let listing = explain::orphans(&a);
            if json {
                println!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                print!("{}", explain::render_orphans(&listing));
            }
            return Ok(());
        }
    };
    let key = key.map_err(|e| anyhow::Error::msg(e.to_string()))?;
    let e = explain::explain_image(&a, &key).context("image vanished from the analysis")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", explain::render_image(&e));
    }
    Ok(())
}
