//! `batch.*` of a network sink, and batches: events encoded once into one
//! buffer, each item a range of it, so a retry of some items rebuilds its
//! request from the same bytes.

use crate::ack::Ack;
use crate::Envelope;
use bytes::Bytes;
use lumen_schemas::time::Timestamp;
use lumen_schemas::Event;
use serde::Deserialize;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `[sinks.<id>.batch]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Events per request at most.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Encoded bytes per request at most (an event larger than this goes
    /// alone).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Seconds the first event of a batch waits for more.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout_secs: default_timeout(),
        }
    }
}

fn default_max_events() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_timeout() -> f64 {
    1.0
}

impl BatchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_events == 0 {
            return Err("batch.max_events must be at least 1".into());
        }
        if self.max_bytes == 0 {
            return Err("batch.max_bytes must be at least 1".into());
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs >= 0.0) {
            return Err("batch.timeout_secs must be a number of seconds".into());
        }
        Ok(())
    }
}

/// How a sink writes one event into a request body.
pub trait Encoder: Send + Sync + 'static {
    /// Appends what `event` sends as (for the bulk API: action line and
    /// document) to `buf`, and returns where in `buf` the event's own
    /// document is (what a dead letter keeps).
    fn encode(&self, event: &Event, buf: &mut Vec<u8>) -> Range<usize>;

    /// Whether requests are built from the events themselves, not only
    /// from their encoded bytes (OTLP): otherwise a batch lets go of each
    /// event once it is encoded, so a request waiting for its answer or its
    /// ack holds the bytes only.
    const KEEPS_EVENTS: bool = false;
}

/// One event of a batch.
#[derive(Debug)]
pub struct Item {
    /// Completed once the event is delivered or rejected.
    pub ack: Ack,
    /// The event, when the encoder keeps it ([`Encoder::KEEPS_EVENTS`]).
    pub event: Option<Arc<Event>>,
    /// When the event was observed (for the sink's lag).
    pub observed: Timestamp,
    /// What the event sends as, in [`Batch::buf`].
    pub bytes: Range<usize>,
    /// The event's document, in [`Batch::buf`].
    pub doc: Range<usize>,
    /// A request that carried it failed ambiguously (the receiver may have
    /// it): a later success may be a duplicate.
    pub maybe_delivered: bool,
}

impl Item {
    fn new<E: Encoder>(env: Envelope, bytes: Range<usize>, doc: Range<usize>) -> Self {
        Item {
            observed: env.event.observed,
            event: E::KEEPS_EVENTS.then_some(env.event),
            ack: env.ack,
            bytes,
            doc,
            maybe_delivered: false,
        }
    }
}

/// Events encoded for one request. The buffer is shared, not copied, by
/// the request that sends all of it.
#[derive(Debug, Default)]
pub struct Batch {
    pub buf: Bytes,
    pub items: Vec<Item>,
}

impl Batch {
    /// The bytes of item `i`.
    pub fn item_bytes(&self, i: usize) -> &[u8] {
        &self.buf[self.items[i].bytes.clone()]
    }

    /// The request body for the items `pending`, in order.
    pub fn body(&self, pending: &[usize]) -> Bytes {
        if pending.len() == self.items.len() {
            return self.buf.clone();
        }
        let size = pending.iter().map(|&i| self.items[i].bytes.len()).sum();
        let mut body = Vec::with_capacity(size);
        for &i in pending {
            body.extend_from_slice(self.item_bytes(i));
        }
        Bytes::from(body)
    }

    /// The document of item `i`.
    pub fn doc(&self, i: usize) -> &[u8] {
        &self.buf[self.items[i].doc.clone()]
    }
}

/// How long a batch that found the channel empty lets events gather
/// first, and at most.
const GATHER: Duration = Duration::from_millis(1);
const GATHER_MAX: Duration = Duration::from_millis(64);

/// Collects batches from a sink's input channel.
#[derive(Debug)]
pub struct Batcher<E> {
    config: BatchConfig,
    encoder: E,
    /// An event that did not fit the previous batch, already encoded.
    carry: Option<(Envelope, Vec<u8>, Range<usize>)>,
    /// The size of the last batch: the next buffer starts that large, so
    /// it is not regrown and copied step by step.
    last_len: usize,
}

impl<E: Encoder> Batcher<E> {
    pub fn new(config: BatchConfig, encoder: E) -> Self {
        Batcher {
            config,
            encoder,
            carry: None,
            last_len: 0,
        }
    }

    /// The next batch: waits for a first event, then for more until
    /// `max_events`, `max_bytes` or `timeout_secs`. `None` once the channel
    /// is closed and drained.
    pub async fn next(&mut self, rx: &mut mpsc::Receiver<Envelope>) -> Option<Batch> {
        let mut buf = Vec::with_capacity(self.last_len.min(self.config.max_bytes));
        let mut items = Vec::new();
        if let Some((env, bytes, doc)) = self.carry.take() {
            let len = bytes.len();
            buf.extend_from_slice(&bytes);
            items.push(Item::new::<E>(env, 0..len, doc));
        } else {
            let env = rx.recv().await?;
            self.push(&mut buf, &mut items, env);
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(self.config.timeout_secs);
        let mut gather = GATHER;
        while items.len() < self.config.max_events
            && buf.len() < self.config.max_bytes
            && self.carry.is_none()
        {
            let env = match rx.try_recv() {
                Ok(env) => {
                    gather = GATHER;
                    env
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Let events gather instead of parking on the channel:
                    // a parked receiver makes every send wake it (a
                    // cross-thread wakeup per event at full rate). The
                    // batch waits no longer than its timeout either way.
                    // The wait doubles while nothing comes (an idle source
                    // costs a few timer wakeups per batch timeout).
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    tokio::time::sleep_until((now + gather).min(deadline)).await;
                    gather = (gather * 2).min(GATHER_MAX);
                    continue;
                }
            };
            self.push(&mut buf, &mut items, env);
        }
        self.last_len = buf.len();
        Some(Batch {
            buf: Bytes::from(buf),
            items,
        })
    }

    /// Encodes `env` into `buf`, or into the carry when it would push a
    /// non-empty batch past `max_bytes`.
    fn push(&mut self, buf: &mut Vec<u8>, items: &mut Vec<Item>, env: Envelope) {
        let start = buf.len();
        let doc = self.encoder.encode(&env.event, buf);
        let end = buf.len();
        if end > self.config.max_bytes && !items.is_empty() {
            let bytes = buf.split_off(start);
            let doc = doc.start - start..doc.end - start;
            self.carry = Some((env, bytes, doc));
            return;
        }
        items.push(Item::new::<E>(env, start..end, doc));
    }
}
