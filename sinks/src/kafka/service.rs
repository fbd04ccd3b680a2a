//! Produces a batch's records through librdkafka (idempotent, acks=all)
//! and classifies each delivery report: retriable errors (broker down,
//! leader change, local queue full, a message that timed out) are retried
//! by the sink without loss — a timed-out message may have been written, so
//! it counts as ambiguous; fatal ones (authorization, unknown topic with
//! auto-create off, a message too large) are dead-lettered with the reason.

use super::encoder::Record;
use crate::batch::Batch;
use crate::deliver::{Outcome, Service};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub struct KafkaService {
    pub producer: FutureProducer,
    /// `<headers_key>.schema`, `.schema_version`, `.kind`; None: no headers.
    pub header_names: Option<[String; 3]>,
    pub schema: &'static str,
    pub schema_version: String,
}

impl std::fmt::Debug for KafkaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaService")
            .field("header_names", &self.header_names)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// The outcome of a failed delivery.
pub fn classify(e: &KafkaError) -> Outcome {
    let code = match e {
        KafkaError::MessageProduction(code) => Some(*code),
        _ => e.rdkafka_error_code(),
    };
    let reason = e.to_string();
    match code {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord,
        ) => Outcome::Reject {
            reason: format!("fatal: {reason}"),
        },
        Some(RDKafkaErrorCode::MessageTimedOut) => Outcome::Retry {
            reason,
            after: None,
            ambiguous: true,
        },
        _ => Outcome::retry(reason),
    }
}

impl KafkaService {
    fn headers(&self, kind: &str) -> Option<OwnedHeaders> {
        let [schema, version, kind_name] = self.header_names.as_ref()?;
        Some(
            OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: schema,
                    value: Some(self.schema),
                })
                .insert(Header {
                    key: version,
                    value: Some(self.schema_version.as_str()),
                })
                .insert(Header {
                    key: kind_name,
                    value: Some(kind),
                }),
        )
    }
}

impl Service for KafkaService {
    async fn send(&self, batch: &Batch, pending: &[usize]) -> Vec<Outcome> {
        // Everything is queued first (librdkafka batches and compresses
        // per partition), then the delivery reports are awaited.
        let mut reports = Vec::with_capacity(pending.len());
        for &i in pending {
            let Some(r) = Record::parse(batch.item_bytes(i)) else {
                reports.push(Err(Outcome::Reject {
                    reason: "internal: unreadable record".into(),
                }));
                continue;
            };
            let mut record = FutureRecord::to(r.topic).payload(r.value);
            // An empty key is no key: librdkafka spreads such records over
            // the partitions.
            if !r.key.is_empty() {
                record = record.key(r.key);
            }
            if let Some(h) = self.headers(r.kind) {
                record = record.headers(h);
            }
            reports.push(
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| classify(&e)),
            );
        }
        let mut outcomes = Vec::with_capacity(reports.len());
        for report in reports {
            outcomes.push(match report {
                Err(outcome) => outcome,
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Outcome::Delivered,
                    Ok(Err((e, _))) => classify(&e),
                    Err(_canceled) => Outcome::Retry {
                        reason: "the producer dropped the delivery report".into(),
                        after: None,
                        ambiguous: true,
                    },
                },
            });
        }
        outcomes
    }
}
