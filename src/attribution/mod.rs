//! Who holds an image: watcher addresses attributed to hosts (inventory,
//! orchestrator node lists, reverse DNS), and orphan verdicts from
//! comparing that with where the attachment sources say images belong.

pub mod inventory;
pub mod rdns;
