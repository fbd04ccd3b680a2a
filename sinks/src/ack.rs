//! End-to-end acknowledgements.
//!
//! A source that needs to know when an event is safe everywhere (the file
//! source, to move its checkpoint; the webhook, to answer 200) creates one
//! [`AckNode`] per event with a [`AckSender`] and a cookie of its own. Each
//! copy of the event carries an [`Ack`]; cloning the envelope for fan-out
//! clones the `Ack`. A sink completes its copy with a [`Status`] once the
//! receiver has the event. When the last copy is completed (or dropped) the
//! node reports the worst status of all copies to the source.
//!
//! An `Ack` dropped without being completed counts as [`Status::Dropped`]:
//! an event lost on the way is never reported as delivered.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Outcome of delivering one event, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Status {
    /// Every sink has the event.
    Delivered = 0,
    /// A sink rejected it for good (it went to a dead-letter file, or was
    /// dropped by a buffer policy).
    Rejected = 1,
    /// It was lost on the way (a component stopped before handling it).
    Dropped = 2,
}

impl Status {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Status::Delivered,
            1 => Status::Rejected,
            _ => Status::Dropped,
        }
    }
}

/// What a source receives for each event it asked to track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub cookie: u64,
    pub status: Status,
}

/// Where a source receives its acknowledgements.
pub type AckReceiver = mpsc::UnboundedReceiver<Acked>;

/// Creates the channel a source tracks its events with.
pub fn channel() -> (AckSender, AckReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (AckSender(tx), rx)
}

/// The sending half, held by every node of one source.
#[derive(Clone, Debug)]
pub struct AckSender(mpsc::UnboundedSender<Acked>);

impl AckSender {
    /// A node for one event, identified to the source by `cookie`.
    pub fn node(&self, cookie: u64) -> Arc<AckNode> {
        Arc::new(AckNode {
            status: AtomicU8::new(Status::Delivered as u8),
            cookie,
            tx: self.0.clone(),
        })
    }
}

/// Shared state of one event's acknowledgement.
#[derive(Debug)]
pub struct AckNode {
    status: AtomicU8,
    cookie: u64,
    tx: mpsc::UnboundedSender<Acked>,
}

impl AckNode {
    fn update(&self, status: Status) {
        self.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

impl Drop for AckNode {
    fn drop(&mut self) {
        let status = Status::from_u8(self.status.load(Ordering::Acquire));
        // The source may have stopped listening (shutdown); nothing to do then.
        let _ = self.tx.send(Acked {
            cookie: self.cookie,
            status,
        });
    }
}

/// One copy's share of an acknowledgement. Complete it with [`Ack::complete`].
#[derive(Debug, Default)]
pub struct Ack {
    node: Option<Arc<AckNode>>,
}

impl Ack {
    /// An acknowledgement nobody waits for (sources that cannot replay).
    pub fn none() -> Self {
        Ack { node: None }
    }

    pub fn new(node: Arc<AckNode>) -> Self {
        Ack { node: Some(node) }
    }

    /// Records this copy's outcome.
    pub fn complete(mut self, status: Status) {
        if let Some(node) = self.node.take() {
            node.update(status);
        }
    }
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack {
            node: self.node.clone(),
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.update(Status::Dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_when_every_copy_is_complete() {
        let (tx, mut rx) = channel();
        let a = Ack::new(tx.node(7));
        let b = a.clone();
        a.complete(Status::Delivered);
        assert!(rx.try_recv().is_err(), "one copy still pending");
        b.complete(Status::Delivered);
        assert_eq!(
            rx.try_recv().unwrap(),
            Acked {
                cookie: 7,
                status: Status::Delivered
            }
        );
    }

    #[test]
    fn worst_status_wins_and_dropped_copies_are_not_delivered() {
        let (tx, mut rx) = channel();
        let a = Ack::new(tx.node(1));
        let b = a.clone();
        let c = a.clone();
        a.complete(Status::Delivered);
        b.complete(Status::Rejected);
        drop(c);
        assert_eq!(rx.try_recv().unwrap().status, Status::Dropped);

        let a = Ack::new(tx.node(2));
        let b = a.clone();
        b.complete(Status::Rejected);
        a.complete(Status::Delivered);
        assert_eq!(rx.try_recv().unwrap().status, Status::Rejected);
    }
}
