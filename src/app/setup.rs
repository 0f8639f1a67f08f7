//! Builds the attributor the attribution flags ask for (the inventory,
//! reverse DNS and the attachment sources) and the state file of
//! `--storage.path`. Bad files and settings are configuration errors.

use crate::attribution::inventory::Inventory;
use crate::attribution::rdns::ReverseDns;
use crate::attribution::{Attributor, NameResolver};
use crate::cli::{AttributionArgs, StorageArgs};
use crate::error::Error;
use crate::first_seen::file::StateFile;
use crate::sources::file::FileSource;
use crate::sources::kubernetes::KubernetesSource;
use crate::sources::openstack::OpenStackSource;
use crate::sources::{AttachmentSource, SourceError};
use std::sync::Arc;
use std::time::Duration;

/// Most time reverse DNS may add to one sample; lookups still running then
/// finish in the background for the next sample.
const REVERSE_DNS_BUDGET: Duration = Duration::from_secs(2);

/// The attributor; `None` when the flags ask for no inventory, no reverse
/// DNS and no source.
pub fn attributor(args: &AttributionArgs) -> Result<Option<Arc<Attributor>>, Error> {
    let sources = sources(args)?;
    if args.watchers_inventory.is_none() && !args.watchers_reverse_dns && sources.is_empty() {
        return Ok(None);
    }
    let inventory = match &args.watchers_inventory {
        Some(path) => Inventory::load(path)
            .map_err(|e| Error::Config(format!("--watchers.inventory: {e}")))?,
        None => Inventory::default(),
    };
    let rdns = args.watchers_reverse_dns.then(reverse_dns);
    let attributor = Attributor::new(inventory, sources, rdns, REVERSE_DNS_BUDGET)
        .with_host_retention(args.watchers_host_retention);
    Ok(Some(Arc::new(attributor)))
}

/// The first-seen state file `--storage.path` asks for; a path that cannot
/// be a directory is a configuration error.
pub fn state_file(args: &StorageArgs) -> Result<Option<StateFile>, Error> {
    let Some(dir) = &args.storage_path else {
        return Ok(None);
    };
    StateFile::open(dir)
        .map(Some)
        .map_err(|e| Error::Config(e.to_string()))
}

/// The attachment sources the flags ask for.
fn sources(args: &AttributionArgs) -> Result<Vec<Box<dyn AttachmentSource>>, Error> {
    let mut sources: Vec<Box<dyn AttachmentSource>> = Vec::new();
    if let Some(path) = &args.attachments_file {
        // Its content is checked on every fetch (it may be rewritten while
        // we run), but a file that is not there at all is a typo.
        std::fs::File::open(path)
            .map_err(|e| Error::Config(format!("--attachments.file {}: {e}", path.display())))?;
        sources.push(Box::new(FileSource::new(path)));
    }
    let config = |e: SourceError| Error::Config(e.to_string());
    let timeout = args.attachments_timeout;
    if let Some(cloud) = args.openstack_cloud(&|k| std::env::var_os(k))? {
        let clouds_file = args.openstack_clouds_file.as_deref();
        let source = OpenStackSource::from_clouds_yaml(&cloud.name, clouds_file, timeout)
            .map_err(|e| Error::Config(format!("{e} ({})", cloud.origin())))?;
        tracing::info!(cloud = %cloud.name, named_by = cloud.named_by, "OpenStack source on");
        sources.push(Box::new(source));
    }
    if let Some(path) = &args.kubernetes_kubeconfig {
        let source = KubernetesSource::from_kubeconfig(path, timeout);
        sources.push(Box::new(source.map_err(config)?));
    } else if args.kubernetes_in_cluster {
        sources.push(Box::new(
            KubernetesSource::in_cluster(timeout).map_err(config)?,
        ));
    }
    Ok(sources)
}

/// Reverse DNS for watcher addresses: 1 s per lookup, names kept 10 min,
/// failures 1 min.
fn reverse_dns() -> NameResolver {
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
