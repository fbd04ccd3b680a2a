//! The shutdown signal sources watch. Triggered once, on SIGINT or SIGTERM:
//! sources stop reading and drop their outputs, and the rest of the topology
//! drains in order as its input channels close.

use tokio::sync::watch;

/// Triggers shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Waits for shutdown; cheap to clone, one per source.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownSignal(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl ShutdownSignal {
    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}
