//! Sends HEC requests and classifies the answers by HEC's documented
//! status codes; with indexer acknowledgement, a request's events are
//! [`Outcome::Accepted`] with a confirmation from the ack task
//! ([`super::acks`]): delivered only when `/services/collector/ack` reports
//! the request's `ackId` indexed, resent (as possible duplicates) when it
//! never does.
//!
//! HEC codes: 0 success; 1 token disabled (403), 2 token required (401),
//! 3 invalid authorization (401), 4 invalid token (403) — fatal; 5 no data,
//! 6 invalid data format (with `invalid-event-number`), 7 incorrect index,
//! 10/11 data channel missing/invalid, 12/13 event field required/blank —
//! rejected (400); 8 internal error (500) and 9 server busy (503) — retried.

use super::acks::AckClient;
use super::config::EndpointTarget;
use super::request_builder::HecClient;
use crate::batch::Batch;
use crate::deliver::{Outcome, Service};
use crate::http::{read_response, transport_outcome, Compression};
use reqwest::StatusCode;
use serde::Deserialize;

/// The header naming the data channel (needed for acks and raw input).
pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

#[derive(Debug)]
pub struct HecService {
    pub hec: HecClient,
    pub target: EndpointTarget,
    /// Query string of raw requests (`sourcetype`, `source`, `index`).
    pub raw_query: Vec<(String, String)>,
    /// With indexer acknowledgement on.
    pub acks: Option<AckClient>,
    pub compression: Compression,
}

/// HEC's answer body: `{"text": "...", "code": N, "ackId": M}`.
#[derive(Debug, Deserialize)]
pub struct HecReply {
    pub text: Option<String>,
    pub code: Option<u32>,
    #[serde(rename = "ackId")]
    pub ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    pub invalid_event_number: Option<usize>,
}

impl HecReply {
    pub fn parse(body: &[u8]) -> HecReply {
        serde_json::from_slice(body).unwrap_or(HecReply {
            text: None,
            code: None,
            ack_id: None,
            invalid_event_number: None,
        })
    }

    /// "HEC code 4 (Invalid token)".
    pub fn describe(&self, status: StatusCode) -> String {
        match (&self.code, &self.text) {
            (Some(c), Some(t)) => format!("{status}, HEC code {c} ({t})"),
            _ => status.to_string(),
        }
    }
}

/// A channel id: a random GUID.
pub fn new_channel() -> String {
    let hex = |n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!("{}-{}-4{}-{}-{}", hex(8), hex(4), hex(3), hex(4), hex(12))
}

impl Service for HecService {
    async fn send(&self, batch: &Batch, pending: &[usize]) -> Vec<Outcome> {
        let n = pending.len();
        // Waits while `max_pending_acks` requests wait for their ack.
        let ack_slot = match &self.acks {
            Some(acks) => acks.slot().await,
            None => None,
        };
        let resp = match self.events_request(batch, pending).send().await {
            Ok(r) => r,
            Err(e) => return vec![transport_outcome(&e); n],
        };
        let (status, after, bytes) = match read_response(resp, &self.hec.endpoint).await {
            Ok(r) => r,
            Err(outcome) => return vec![outcome; n],
        };
        let reply = HecReply::parse(&bytes);
        if status.is_success() {
            return match (&self.acks, reply.ack_id, ack_slot) {
                (Some(acks), Some(ack_id), Some(slot)) => {
                    vec![Outcome::Accepted(acks.wait(ack_id, slot)); n]
                }
                // A token without indexer acknowledgement: 200 is indexed.
                _ => vec![Outcome::Delivered; n],
            };
        }
        let reason = reply.describe(status);
        match (status.as_u16(), reply.code) {
            (401 | 403, _) => vec![
                Outcome::Fatal {
                    reason: format!("invalid or disabled token: {reason}")
                };
                n
            ],
            (400, Some(6)) => invalid_format(n, reply.invalid_event_number, &reason),
            (429 | 503, _) => vec![
                Outcome::Retry {
                    reason,
                    after,
                    ambiguous: false,
                };
                n
            ],
            (500..=599, _) => vec![
                Outcome::Retry {
                    reason,
                    after,
                    ambiguous: status.as_u16() != 502,
                };
                n
            ],
            (413, _) => vec![
                Outcome::Reject {
                    reason: format!("{reason} (request too large: lower batch.max_bytes)")
                };
                n
            ],
            _ => vec![Outcome::Reject { reason }; n],
        }
    }
}

/// HEC code 6 with `invalid-event-number` k: event k is malformed and
/// rejected. HEC reads a request in order, so the events before it may
/// have been indexed (resent as possible duplicates) and the ones after it
/// were not (resent). Without the number, all are rejected.
fn invalid_format(n: usize, invalid: Option<usize>, reason: &str) -> Vec<Outcome> {
    let Some(k) = invalid.filter(|k| *k < n) else {
        return vec![
            Outcome::Reject {
                reason: reason.to_owned()
            };
            n
        ];
    };
    (0..n)
        .map(|i| match i.cmp(&k) {
            std::cmp::Ordering::Less => Outcome::Retry {
                reason: format!("an event after it was malformed: {reason}"),
                after: None,
                ambiguous: true,
            },
            std::cmp::Ordering::Equal => Outcome::Reject {
                reason: reason.to_owned(),
            },
            std::cmp::Ordering::Greater => {
                Outcome::retry(format!("an event before it was malformed: {reason}"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_data_format_rejects_only_the_named_event() {
        let o = invalid_format(4, Some(2), "400, HEC code 6 (Invalid data format)");
        assert!(matches!(
            o[0],
            Outcome::Retry {
                ambiguous: true,
                ..
            }
        ));
        assert!(matches!(o[2], Outcome::Reject { .. }));
        assert!(matches!(
            o[3],
            Outcome::Retry {
                ambiguous: false,
                ..
            }
        ));
        assert!(invalid_format(2, None, "x")
            .iter()
            .all(|o| matches!(o, Outcome::Reject { .. })));
    }

    #[test]
    fn channels_are_guids() {
        let c = new_channel();
        assert_eq!(c.len(), 36);
        assert_eq!(c.matches('-').count(), 4);
        assert_ne!(c, new_channel());
    }
}
