//! The delivery loop every network sink shares (Vector's "sink" layer):
//! batch → send through the sink's service → classify each event's outcome
//! → acknowledge, retry, or dead-letter.
//!
//! - Up to `request.concurrency` requests are in flight; a full house holds
//!   the next batch back, which holds the input channel back (backpressure).
//!   A request whose receiver took the events and confirms them later
//!   ([`Outcome::Accepted`], HEC's indexer acknowledgement) frees its slot
//!   while it waits for the confirmation; its events are acknowledged
//!   upstream only when the confirmation says delivered.
//! - Retriable outcomes (429, 5xx, timeouts, resets) are retried with
//!   backoff, only the events that need it: what the receiver accepted is
//!   never sent again.
//! - Rejected events (the receiver will never take them) go to the
//!   dead-letter file and are acknowledged as `Rejected`.
//! - An event is acknowledged `Delivered` only when the receiver said so.
//! - After an ambiguous failure (the request may have arrived: a reset or a
//!   timeout after sending) a later success may be a duplicate; such events
//!   are counted.
//! - Fatal outcomes (bad credentials) are logged as such and retried at the
//!   longest backoff: events wait, they are not thrown away.

use crate::ack::{Ack, Status};
use crate::batch::{Batch, BatchConfig, Batcher, Encoder};
use crate::dead_letter::DeadLetters;
use crate::request::RequestConfig;
use crate::{ComponentMetrics, Envelope};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// What the receiver made of one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Accepted (indexed, or acknowledged by the indexer).
    Delivered,
    /// Not now: try again. `ambiguous`: the receiver may have it already.
    Retry {
        reason: String,
        after: Option<Duration>,
        ambiguous: bool,
    },
    /// Taken; the receiver says later whether it was delivered (HEC's
    /// `ackId`): the request's slot is free while waiting.
    Accepted(Confirmation),
    /// Never: dead-letter it.
    Reject { reason: String },
    /// The sink cannot deliver anything as configured (credentials).
    Fatal { reason: String },
}

impl Outcome {
    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            reason: reason.into(),
            after: None,
            ambiguous: false,
        }
    }
}

/// A receiver's later word on events it took: the outcome is sent once,
/// through [`Confirmation::pending`]'s sender. Every event of a request
/// shares one (clones compare equal).
#[derive(Clone, Debug)]
pub struct Confirmation(Arc<std::sync::Mutex<Option<oneshot::Receiver<Outcome>>>>);

impl PartialEq for Confirmation {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Confirmation {
    /// A confirmation and where its outcome is to be sent.
    pub fn pending() -> (oneshot::Sender<Outcome>, Confirmation) {
        let (tx, rx) = oneshot::channel();
        (tx, Confirmation(Arc::new(std::sync::Mutex::new(Some(rx)))))
    }

    /// Waits for the outcome (once: a second wait answers at once). A
    /// sender dropped unanswered is an ambiguous failure.
    async fn outcome(&self) -> Outcome {
        let rx = self.0.lock().map(|mut rx| rx.take()).unwrap_or(None);
        let lost = || Outcome::Retry {
            reason: "the receiver's confirmation was lost (its task ended)".into(),
            after: None,
            ambiguous: true,
        };
        match rx {
            Some(rx) => rx.await.unwrap_or_else(|_| lost()),
            None => lost(),
        }
    }
}

/// Replaces every [`Outcome::Accepted`] with what its confirmation says,
/// waiting for each distinct confirmation once.
async fn confirmed(outcomes: &mut [Outcome]) {
    let mut k = 0;
    while let Some(first) = outcomes[k..]
        .iter()
        .position(|o| matches!(o, Outcome::Accepted(_)))
    {
        k += first;
        let Outcome::Accepted(c) = outcomes[k].clone() else {
            break;
        };
        let outcome = match c.outcome().await {
            Outcome::Accepted(_) => Outcome::retry("internal: a confirmation confirmed nothing"),
            other => other,
        };
        for o in outcomes[k..].iter_mut() {
            if *o == Outcome::Accepted(c.clone()) {
                *o = outcome.clone();
            }
        }
    }
}

/// Sends batches to one kind of receiver and classifies its answers.
pub trait Service: Send + Sync + 'static {
    /// Sends the events `pending` (indexes into `batch.items`) in one
    /// request; returns one outcome per pending event, in order.
    fn send(&self, batch: &Batch, pending: &[usize]) -> impl Future<Output = Vec<Outcome>> + Send;
}

/// Counters of a network sink beyond the component's own.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    /// Requests sent (retries included).
    pub requests: AtomicU64,
    /// Event sends that were retried.
    pub retried: AtomicU64,
    /// Events written to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Events delivered after an ambiguous failure: possible duplicates.
    pub possible_duplicates: AtomicU64,
    /// Requests that failed fatally (credentials).
    pub fatal: AtomicU64,
    /// Requests the receiver took and has not yet confirmed (HEC's
    /// indexer acknowledgement): a gauge.
    pub pending_acks: AtomicU64,
    /// How long each request took, answered or not.
    pub latency: Latency,
}

/// Upper bounds (seconds) of the request-latency histogram's buckets.
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A request-latency histogram: a count per bucket (the last past every
/// bound), the sum in microseconds.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// (sum in seconds, count, per bucket its upper bound and count — not
    /// cumulative; the last bound is `f64::MAX`, i.e. +Inf).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let buckets = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(counts.iter().copied())
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, counts.iter().sum(), buckets)
    }
}

impl DeliveryMetrics {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The shared delivery loop of one sink.
#[derive(Debug)]
pub struct Delivery<S> {
    pub name: String,
    pub service: Arc<S>,
    pub request: RequestConfig,
    pub dead_letters: Arc<DeadLetters>,
    pub metrics: Arc<ComponentMetrics>,
    pub delivery: Arc<DeliveryMetrics>,
    /// Behind a disk buffer: once the input has closed (shutdown), events
    /// that need another attempt are left to the buffer, which sends them
    /// at the next start, instead of holding the shutdown up.
    pub keep_unsent_on_close: bool,
    closing: tokio::sync::watch::Sender<bool>,
    /// `request.concurrency` request slots.
    slots: Arc<Semaphore>,
}

impl<S: Service> Delivery<S> {
    /// The loop of sink `name`; rejected events go to `dead_letter_path`,
    /// by default `<data_dir>/dead-letter/<name>.ndjson`.
    pub fn new(
        name: &str,
        service: S,
        request: RequestConfig,
        dead_letter_path: Option<PathBuf>,
        data_dir: &Path,
        metrics: Arc<ComponentMetrics>,
    ) -> Self {
        let path = dead_letter_path
            .unwrap_or_else(|| data_dir.join("dead-letter").join(format!("{name}.ndjson")));
        Delivery {
            name: name.to_owned(),
            service: Arc::new(service),
            dead_letters: Arc::new(DeadLetters::new(path, name)),
            metrics,
            delivery: Arc::new(DeliveryMetrics::default()),
            keep_unsent_on_close: false,
            closing: tokio::sync::watch::Sender::new(false),
            slots: Arc::new(Semaphore::new(request.concurrency.max(1))),
            request,
        }
    }

    /// See [`Delivery::keep_unsent_on_close`]; on when the sink's buffer is
    /// on disk.
    pub fn behind(mut self, buffer: &crate::buffer::BufferConfig) -> Self {
        self.keep_unsent_on_close = matches!(buffer, crate::buffer::BufferConfig::Disk(_));
        self
    }

    /// Delivers everything received until the channel closes, then waits
    /// for the batches in flight.
    pub async fn run<E: Encoder>(
        self,
        batch: BatchConfig,
        encoder: E,
        mut rx: mpsc::Receiver<Envelope>,
    ) {
        let mut batcher = Batcher::new(batch, encoder);
        let mut in_flight = JoinSet::new();
        let this = Arc::new(self);
        let keep = this.keep_unsent_on_close;
        while let Some(batch) = batcher.next(&mut rx).await {
            if keep && rx.is_closed() {
                // Shutdown behind a disk buffer: what is still queued stays
                // in the buffer (dropping the batch drops its acks).
                this.closing.send_replace(true);
                break;
            }
            this.metrics.add_received(batch.items.len() as u64);
            if let Some(last) = batch.items.last() {
                this.metrics.took(last.observed);
            }
            while in_flight.try_join_next().is_some() {}
            let slot = loop {
                tokio::select! {
                    slot = this.slots.clone().acquire_owned() => break slot.ok(),
                    () = tokio::time::sleep(Duration::from_millis(100)), if keep => {
                        if rx.is_closed() {
                            this.closing.send_replace(true);
                        }
                    }
                }
            };
            let me = this.clone();
            in_flight.spawn(async move { me.deliver(batch, slot).await });
        }
        this.closing.send_replace(true);
        while in_flight.join_next().await.is_some() {}
        let d = &this.delivery;
        tracing::info!(
            component = %this.name,
            requests = DeliveryMetrics::get(&d.requests),
            retried = DeliveryMetrics::get(&d.retried),
            dead_lettered = DeliveryMetrics::get(&d.dead_lettered),
            possible_duplicates = DeliveryMetrics::get(&d.possible_duplicates),
            "sink delivery totals"
        );
    }

    /// Sends one batch until every event in it is delivered or rejected,
    /// holding a request slot while sending or waiting to resend.
    async fn deliver(&self, mut batch: Batch, mut slot: Option<OwnedSemaphorePermit>) {
        let mut pending: Vec<usize> = (0..batch.items.len()).collect();
        let mut attempt: u64 = 0;
        while !pending.is_empty() {
            attempt += 1;
            if slot.is_none() {
                slot = self.slots.clone().acquire_owned().await.ok();
            }
            DeliveryMetrics::add(&self.delivery.requests, 1);
            let started = std::time::Instant::now();
            let mut outcomes = self.service.send(&batch, &pending).await;
            self.delivery.latency.observe(started.elapsed());
            if outcomes.iter().any(|o| matches!(o, Outcome::Accepted(_))) {
                drop(slot.take());
                self.delivery.pending_acks.fetch_add(1, Ordering::Relaxed);
                confirmed(&mut outcomes).await;
                self.delivery.pending_acks.fetch_sub(1, Ordering::Relaxed);
            }
            let mut retry_after: Option<Duration> = None;
            let mut fatal = false;
            let mut last_reason = String::new();
            let mut still = Vec::new();
            for (k, &i) in pending.iter().enumerate() {
                let outcome = outcomes.get(k).cloned().unwrap_or_else(|| {
                    Outcome::retry("internal: the service returned too few outcomes")
                });
                match outcome {
                    Outcome::Delivered => self.delivered(&mut batch, i),
                    Outcome::Accepted(_) => still.push(i),
                    Outcome::Reject { reason } => self.reject(&mut batch, i, &reason),
                    Outcome::Retry {
                        reason,
                        after,
                        ambiguous,
                    } => {
                        if ambiguous {
                            batch.items[i].maybe_delivered = true;
                        }
                        retry_after = retry_after.max(after);
                        last_reason = reason;
                        still.push(i);
                    }
                    Outcome::Fatal { reason } => {
                        fatal = true;
                        last_reason = reason;
                        still.push(i);
                    }
                }
            }
            // The receiver answered for some event (delivered or refused
            // it), or for none: only the latter is a failing sink.
            let progressed = still.len() < pending.len();
            pending = still;
            self.metrics.set_failing(!pending.is_empty() && !progressed);
            if pending.is_empty() {
                break;
            }
            if attempt >= self.request.retry_attempts {
                let reason = format!("gave up after {attempt} attempts: {last_reason}");
                for &i in &pending {
                    self.reject(&mut batch, i, &reason);
                }
                break;
            }
            DeliveryMetrics::add(&self.delivery.retried, pending.len() as u64);
            self.metrics.add_errors(1);
            let wait = if fatal {
                DeliveryMetrics::add(&self.delivery.fatal, 1);
                let wait = Duration::from_secs_f64(self.request.retry_max_duration_secs);
                tracing::error!(
                    component = %self.name,
                    error = %last_reason,
                    events = pending.len(),
                    retry_in_secs = wait.as_secs_f64(),
                    "sink cannot deliver as configured; events are held and retried"
                );
                wait
            } else {
                let wait = self.request.backoff(attempt, retry_after);
                tracing::warn!(
                    component = %self.name,
                    error = %last_reason,
                    events = pending.len(),
                    attempt,
                    retry_in_ms = wait.as_millis() as u64,
                    "sink request failed; retrying"
                );
                wait
            };
            let mut closing = self.closing.subscribe();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = closing.wait_for(|c| *c), if self.keep_unsent_on_close => {
                    tracing::info!(
                        component = %self.name,
                        events = pending.len(),
                        "stopping: events not yet delivered stay in the disk buffer for the next start"
                    );
                    // Dropping the batch drops their acks: the buffer keeps them.
                    return;
                }
            }
        }
    }

    fn delivered(&self, batch: &mut Batch, i: usize) {
        if batch.items[i].maybe_delivered {
            DeliveryMetrics::add(&self.delivery.possible_duplicates, 1);
        }
        self.metrics.add_sent(1);
        self.metrics.add_sent_bytes(batch.doc(i).len());
        take_ack(batch, i).complete(Status::Delivered);
    }

    fn reject(&self, batch: &mut Batch, i: usize, reason: &str) {
        let status = match self.dead_letters.write(batch.doc(i), reason) {
            Ok(()) => {
                DeliveryMetrics::add(&self.delivery.dead_lettered, 1);
                tracing::warn!(
                    component = %self.name,
                    error = %reason,
                    dead_letter = %self.dead_letters.path().display(),
                    "receiver rejected an event; written to the dead-letter file"
                );
                Status::Rejected
            }
            Err(e) => {
                tracing::error!(
                    component = %self.name,
                    error = %reason,
                    write_error = %e,
                    dead_letter = %self.dead_letters.path().display(),
                    "receiver rejected an event and the dead-letter file cannot be written; event lost"
                );
                Status::Dropped
            }
        };
        self.metrics.add_dropped(1);
        take_ack(batch, i).complete(status);
    }
}

/// Item `i`'s acknowledgement, taken out to be completed exactly once.
fn take_ack(batch: &mut Batch, i: usize) -> Ack {
    std::mem::replace(&mut batch.items[i].ack, Ack::none())
}
