//! Fan-out of one component's output to every component that reads it.
//! Each downstream has a bounded channel; a full channel makes `send` wait,
//! which is how backpressure reaches the sources.
//!
//! The outputs are a [`Wiring`] the topology owns and can change while the
//! component runs (a reload adds, removes or replaces downstreams). A
//! fan-out holds only weak senders: a channel lives as long as the topology
//! holds its strong sender, so dropping that one lets a retired component
//! drain and stop even when its upstreams are idle.

use super::tap::TapPoint;
use lumen_sinks::Envelope;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The downstreams of one component, by id: shared between the topology
/// (which sets them) and every instance of the component (which reads them
/// when their version moves).
#[derive(Debug, Default)]
pub struct Wiring {
    /// The component's own tap: what it sends on.
    tap: Arc<TapPoint>,
    version: AtomicU64,
    outputs: Mutex<Vec<Output>>,
}

/// A downstream: its id, a weak sender into its input channel, and its tap
/// when it is a sink (a sink's tap shows what it receives).
pub type Output = (Arc<str>, mpsc::WeakSender<Envelope>, Option<Arc<TapPoint>>);

impl Wiring {
    pub fn new(tap: Arc<TapPoint>, outputs: Vec<Output>) -> Arc<Wiring> {
        Arc::new(Wiring {
            tap,
            version: AtomicU64::new(1),
            outputs: Mutex::new(outputs),
        })
    }

    /// Replaces the downstreams; each instance picks them up before its
    /// next send.
    pub fn set(&self, outputs: Vec<Output>) {
        let mut o = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        *o = outputs;
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// Every downstream channel of one component.
#[derive(Debug, Default)]
pub struct Fanout {
    wiring: Arc<Wiring>,
    seen: u64,
    outputs: Vec<Output>,
    /// The ids a send goes to (kept from send to send: no allocation).
    ids: Vec<Arc<str>>,
}

/// Every downstream has stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl Fanout {
    pub fn new(wiring: Arc<Wiring>) -> Fanout {
        let mut f = Fanout {
            wiring,
            seen: 0,
            outputs: Vec::new(),
            ids: Vec::new(),
        };
        f.refresh();
        f
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Takes the wiring's outputs if they changed since last looked at.
    fn refresh(&mut self) -> bool {
        let v = self.wiring.version.load(Ordering::Acquire);
        if v == self.seen {
            return false;
        }
        let o = self
            .wiring
            .outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.outputs.clone_from(&o);
        self.seen = v;
        true
    }

    /// Output `id`: the same `Arc` as the one held (the common case, no
    /// string comparison), or one with the same name after a refresh.
    fn output(&self, id: &Arc<str>) -> Option<&Output> {
        self.outputs
            .iter()
            .find(|(o, _, _)| Arc::ptr_eq(o, id) || o == id)
    }

    /// The live sender of output `id`, looking at the wiring again if the
    /// one held is gone (the topology replaced that downstream meanwhile).
    fn sender(&mut self, id: &Arc<str>) -> Option<mpsc::Sender<Envelope>> {
        if let Some(tx) = self.output(id).and_then(|(_, w, _)| w.upgrade()) {
            return Some(tx);
        }
        if self.refresh() {
            return self.output(id).and_then(|(_, w, _)| w.upgrade());
        }
        None
    }

    /// Sends a copy to each output (the last one gets the original). An
    /// output whose component stopped is removed; its copy's ack is dropped,
    /// so the source learns the event did not get everywhere.
    pub async fn send(&mut self, env: Envelope) -> Result<(), Closed> {
        self.refresh();
        self.wiring.tap.offer(&env.event);
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(self.outputs.iter().map(|(id, _, _)| id.clone()));
        let mut env = Some(env);
        for (i, id) in ids.iter().enumerate() {
            let copy = if i + 1 == ids.len() {
                env.take()
            } else {
                env.clone()
            };
            let Some(mut copy) = copy else { break };
            if let Some((_, _, Some(tap))) = self.output(id) {
                tap.offer(&copy.event);
            }
            loop {
                let sent = match self.sender(id) {
                    Some(tx) => match tx.send(copy).await {
                        Ok(()) => break,
                        Err(mpsc::error::SendError(back)) => Some(back),
                    },
                    None => None,
                };
                // Replaced while this send waited: the new channel is in
                // the wiring by now. Otherwise the downstream is gone.
                match sent {
                    Some(back) if self.refresh() => copy = back,
                    _ => {
                        tracing::error!(output = %id, "downstream component stopped; no longer sending to it");
                        self.outputs.retain(|(o, _, _)| o != id);
                        break;
                    }
                }
            }
        }
        self.ids = ids;
        if self.outputs.is_empty() {
            return Err(Closed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::testing::env;

    #[tokio::test]
    async fn a_replaced_downstream_gets_the_next_events_and_the_old_one_drains() {
        let (old_tx, mut old_rx) = mpsc::channel(4);
        let wiring = Wiring::new(Arc::default(), vec![("s".into(), old_tx.downgrade(), None)]);
        let mut out = Fanout::new(wiring.clone());
        out.send(env()).await.unwrap();
        // The topology replaces `s`: new channel in the wiring, old strong
        // sender dropped.
        let (new_tx, mut new_rx) = mpsc::channel(4);
        wiring.set(vec![("s".into(), new_tx.downgrade(), None)]);
        drop(old_tx);
        out.send(env()).await.unwrap();
        assert!(
            old_rx.recv().await.is_some(),
            "the old channel keeps what it got"
        );
        assert!(old_rx.recv().await.is_none(), "and then closes");
        assert!(
            new_rx.try_recv().is_ok(),
            "the next event went to the new one"
        );
    }

    #[tokio::test]
    async fn an_idle_fanout_does_not_keep_a_retired_channel_open() {
        let (tx, mut rx) = mpsc::channel(4);
        let _out = Fanout::new(Wiring::new(
            Arc::default(),
            vec![("s".into(), tx.downgrade(), None)],
        ));
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn every_output_gets_a_copy_and_a_stopped_one_is_dropped() {
        let (a_tx, mut a_rx) = mpsc::channel(4);
        let (b_tx, b_rx) = mpsc::channel(4);
        let wiring = Wiring::new(
            Arc::default(),
            vec![
                ("a".into(), a_tx.downgrade(), None),
                ("b".into(), b_tx.downgrade(), None),
            ],
        );
        let mut out = Fanout::new(wiring);
        out.send(env()).await.unwrap();
        assert!(a_rx.try_recv().is_ok());
        drop(b_rx);
        drop(b_tx);
        out.send(env()).await.unwrap();
        assert!(a_rx.try_recv().is_ok());
        assert_eq!(out.outputs.len(), 1);
        drop(a_tx);
        assert_eq!(out.send(env()).await, Err(Closed));
    }
}
