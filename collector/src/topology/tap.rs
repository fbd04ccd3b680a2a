//! Taps: copies of the events passing a component, for `lumen tap` (served
//! by the API as `GET /tap/<component>`).
//!
//! A source's or transform's tap sees what it sends on; a sink's sees what
//! it receives. A tap never slows the pipeline: copies go into a bounded
//! channel per reader with `try_send`, and what does not fit is counted and
//! reported to the reader as not shown. Without readers a tap costs one
//! atomic load per event.

use lumen_schemas::Event;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Events a reader may fall behind by before copies are not shown.
pub const TAP_CAPACITY: usize = 1024;

/// The tap points of every component, by id; they outlive reloads (a
/// rebuilt component keeps its readers).
#[derive(Debug, Default)]
pub struct Taps {
    points: Mutex<HashMap<String, Arc<TapPoint>>>,
    /// The ids of the running components, for the API's answers.
    running: Mutex<Vec<String>>,
}

impl Taps {
    /// The tap point of `id` (made on first use).
    pub fn point(&self, id: &str) -> Arc<TapPoint> {
        let mut p = self.points.lock().unwrap_or_else(|e| e.into_inner());
        p.entry(id.to_owned()).or_default().clone()
    }

    /// Which components run now.
    pub fn set_running(&self, mut ids: Vec<String>) {
        ids.sort();
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = ids;
    }

    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reader of `id`'s events; `None` when no such component runs.
    pub fn subscribe(&self, id: &str) -> Option<TapReader> {
        if !self.running().iter().any(|r| r == id) {
            return None;
        }
        Some(self.point(id).subscribe())
    }
}

/// One component's tap.
#[derive(Debug, Default)]
pub struct TapPoint {
    readers: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// A reader's channel and its count of events not shown.
type Subscriber = (mpsc::Sender<Arc<Event>>, Arc<AtomicU64>);

/// What a reader gets: the events, and how many it was not shown.
#[derive(Debug)]
pub struct TapReader {
    pub events: mpsc::Receiver<Arc<Event>>,
    pub not_shown: Arc<AtomicU64>,
}

impl TapPoint {
    /// Offers a copy of `event` to the readers, if any.
    #[inline]
    pub fn offer(&self, event: &Arc<Event>) {
        if self.readers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|(tx, not_shown)| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                not_shown.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.readers.store(subs.len(), Ordering::Relaxed);
    }

    fn subscribe(&self) -> TapReader {
        let (tx, events) = mpsc::channel(TAP_CAPACITY);
        let not_shown = Arc::new(AtomicU64::new(0));
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push((tx, not_shown.clone()));
        self.readers.store(subs.len(), Ordering::Relaxed);
        TapReader { events, not_shown }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Arc<Event> {
        Arc::new(crate::topology::testing::event())
    }

    #[test]
    fn readers_get_copies_a_slow_one_is_told_what_it_missed_and_a_gone_one_is_forgotten() {
        let taps = Taps::default();
        assert!(taps.subscribe("audit").is_none(), "not running");
        taps.set_running(vec!["audit".into()]);
        let point = taps.point("audit");
        point.offer(&event());
        let mut r = taps.subscribe("audit").unwrap();
        for _ in 0..TAP_CAPACITY + 5 {
            point.offer(&event());
        }
        let mut got = 0;
        while r.events.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(
            got, TAP_CAPACITY,
            "only what came after subscribing, up to the capacity"
        );
        assert_eq!(r.not_shown.load(Ordering::Relaxed), 5);
        drop(r);
        point.offer(&event());
        assert_eq!(point.readers.load(Ordering::Relaxed), 0);
    }
}
