//! Indexer acknowledgement, as Vector does it: a request that HEC answered
//! `Success` with an `ackId` frees its request slot at once; one task per
//! sink asks `/services/collector/ack` about every pending `ackId` of the
//! sink's channel in one query each `query_interval`, and confirms each
//! request when HEC reports it indexed — or, after `retry_limit` queries
//! without that, sends it back to be resent (a possible duplicate).
//!
//! Pending acks are bounded on their own (`max_pending_acks`): a request
//! takes a pending slot before it is sent and holds it until its ack is
//! settled, so a slow indexer holds the sink back instead of piling up
//! batches in memory.

use super::config::AckConfig;
use super::request_builder::HecClient;
use super::service::HecReply;
use crate::deliver::{Confirmation, Outcome};
use crate::http::error_chain;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// The sending side, held by the sink's service.
#[derive(Debug)]
pub struct AckClient {
    tx: mpsc::UnboundedSender<Waiting>,
    slots: Arc<Semaphore>,
}

/// The ack task's side: run it beside the delivery loop.
#[derive(Debug)]
pub struct AckPoller {
    hec: HecClient,
    config: AckConfig,
    rx: mpsc::UnboundedReceiver<Waiting>,
}

/// One request waiting for its ack.
#[derive(Debug)]
struct Waiting {
    id: u64,
    reply: oneshot::Sender<Outcome>,
    queries: u32,
    _slot: OwnedSemaphorePermit,
}

/// The client and the task of one sink (one channel).
pub fn new(hec: HecClient, config: AckConfig) -> (AckClient, AckPoller) {
    let (tx, rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(config.max_pending_acks.max(1)));
    (AckClient { tx, slots }, AckPoller { hec, config, rx })
}

impl AckClient {
    /// A pending-ack slot; waits while `max_pending_acks` requests wait for
    /// theirs. Taken before a request is sent.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Hands `ack_id` to the ack task; the confirmation says when it is
    /// indexed. The slot is released when the ack is settled.
    pub fn wait(&self, ack_id: u64, slot: OwnedSemaphorePermit) -> Confirmation {
        let (reply, confirmation) = Confirmation::pending();
        // A send fails only when the task has ended: the dropped sender
        // then settles the confirmation as an ambiguous failure.
        let _ = self.tx.send(Waiting {
            id: ack_id,
            reply,
            queries: 0,
            _slot: slot,
        });
        confirmation
    }
}

/// `/services/collector/ack`'s answer: `{"acks": {"0": true, "1": false}}`.
#[derive(Deserialize)]
struct AckReply {
    acks: HashMap<u64, bool>,
}

impl AckPoller {
    /// Polls until the client is dropped and nothing waits any more.
    pub async fn run(mut self) {
        let every = Duration::from_secs_f64(self.config.query_interval);
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        loop {
            if waiting.is_empty() {
                match self.rx.recv().await {
                    Some(w) => waiting.push(w),
                    None => return,
                }
                // The first query comes one interval after the first ack.
                ticks.reset();
            }
            tokio::select! {
                _ = ticks.tick() => {}
                w = self.rx.recv(), if open => {
                    match w {
                        Some(w) => waiting.push(w),
                        None => open = false,
                    }
                    continue;
                }
            }
            while let Ok(w) = self.rx.try_recv() {
                waiting.push(w);
            }
            // Nobody waits for a request whose delivery loop was dropped.
            waiting.retain(|w| !w.reply.is_closed());
            if waiting.is_empty() {
                continue;
            }
            let answer = self.query(&waiting).await;
            waiting = self.settle(waiting, answer);
        }
    }

    /// One query for every waiting ackId: which are indexed, or why HEC
    /// could not say (`Err(retry)`: ask again; `Err(give up)`: resend all).
    async fn query(&self, waiting: &[Waiting]) -> Result<AckReply, QueryFailed> {
        let mut body = String::with_capacity(12 + 8 * waiting.len());
        body.push_str("{\"acks\":[");
        for (i, w) in waiting.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(itoa::Buffer::new().format(w.id));
        }
        body.push_str("]}");
        let resp = self
            .hec
            .request(
                reqwest::Method::POST,
                "/services/collector/ack",
                &[("channel", &self.hec.channel)],
            )
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| QueryFailed::AskAgain(error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| QueryFailed::AskAgain(error_chain(&e)))?;
        if !status.is_success() {
            let reason = format!("ack query: {}", HecReply::parse(&bytes).describe(status));
            return Err(match status.as_u16() {
                429 | 500..=599 => QueryFailed::AskAgain(reason),
                _ => QueryFailed::GiveUp(reason),
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| QueryFailed::GiveUp(format!("unreadable ack reply: {e}")))
    }

    /// Confirms what is indexed, sends back what never will be; returns
    /// what still waits.
    fn settle(&self, waiting: Vec<Waiting>, answer: Result<AckReply, QueryFailed>) -> Vec<Waiting> {
        let acks = match answer {
            Ok(reply) => reply.acks,
            Err(QueryFailed::GiveUp(reason)) => {
                tracing::warn!(error = %reason, requests = waiting.len(), "splunk_hec: acks cannot be queried; resending their requests");
                for w in waiting {
                    let _ = w.reply.send(not_indexed(reason.clone()));
                }
                return Vec::new();
            }
            Err(QueryFailed::AskAgain(reason)) => {
                tracing::warn!(error = %reason, requests = waiting.len(), "splunk_hec: ack query failed; asking again");
                HashMap::new()
            }
        };
        let limit = self.config.retry_limit;
        let mut still = Vec::with_capacity(waiting.len());
        for mut w in waiting {
            w.queries += 1;
            if acks.get(&w.id) == Some(&true) {
                let _ = w.reply.send(Outcome::Delivered);
            } else if w.queries >= limit {
                let _ = w.reply.send(not_indexed(format!(
                    "ackId {} not reported indexed after {limit} queries",
                    w.id
                )));
            } else {
                still.push(w);
            }
        }
        still
    }
}

enum QueryFailed {
    /// HEC could not answer now (busy, unreachable): the query counts.
    AskAgain(String),
    /// HEC will not answer (acks disabled, bad token, unreadable reply).
    GiveUp(String),
}

/// The request may have been indexed: resent as a possible duplicate.
fn not_indexed(reason: String) -> Outcome {
    Outcome::Retry {
        reason,
        after: None,
        ambiguous: true,
    }
}
