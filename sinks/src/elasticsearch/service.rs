//! Sends bulk requests (built by [`super::request_builder`]) and classifies
//! the answers, per request and per item, as Elasticsearch documents them:
//! 200 with `items[].status` for each document; 429 and 5xx retry; 401/403
//! are fatal; other 4xx reject.

use super::config::AuthConfig;
use crate::batch::Batch;
use crate::deliver::{Outcome, Service};
use crate::http::{read_response, transport_outcome, Compression, Endpoints};
use reqwest::StatusCode;
use serde::Deserialize;

/// Talks to one cluster.
#[derive(Debug)]
pub struct BulkService {
    pub client: reqwest::Client,
    pub endpoints: Endpoints,
    pub auth: Option<AuthConfig>,
    pub compression: Compression,
}

/// The parts of a bulk response Lumen reads.
#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    #[serde(default)]
    items: Vec<BulkItem>,
}

/// `{"<action>": {...}}`: one key, whichever action was sent.
#[derive(Deserialize)]
struct BulkItem {
    #[serde(alias = "create", alias = "index", alias = "update", alias = "delete")]
    result: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    error: Option<EsError>,
}

#[derive(Deserialize)]
struct EsError {
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
}

/// `{"error": {...}, "status": N}`, the body of a failed request.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorValue {
    Object(EsError),
    Text(String),
}

impl EsError {
    fn describe(&self, status: u16) -> String {
        format!(
            "{status} {}: {}",
            self.kind.as_deref().unwrap_or("error"),
            self.reason.as_deref().unwrap_or("(no reason given)")
        )
    }
}

/// "401 security_exception: missing authentication credentials" from a
/// failed request's body, or the status and the start of the body.
pub fn describe_failure(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: Some(ErrorValue::Object(e)),
        }) => e.describe(status.as_u16()),
        Ok(ErrorBody {
            error: Some(ErrorValue::Text(t)),
        }) => format!("{status}: {t}"),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            format!("{status}: {}", text.trim())
        }
    }
}

/// Per-item outcomes of a 200 bulk response for `n` documents.
fn item_outcomes(body: &[u8], n: usize) -> Vec<Outcome> {
    let parsed: BulkResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return vec![
                Outcome::Retry {
                    reason: format!("unreadable bulk response: {e}"),
                    after: None,
                    ambiguous: true,
                };
                n
            ]
        }
    };
    if !parsed.errors && parsed.items.len() == n {
        return vec![Outcome::Delivered; n];
    }
    if parsed.items.len() != n {
        return vec![
            Outcome::Retry {
                reason: format!(
                    "bulk response has {} items for {n} documents",
                    parsed.items.len()
                ),
                after: None,
                ambiguous: true,
            };
            n
        ];
    }
    parsed
        .items
        .iter()
        .map(|item| {
            let r = &item.result;
            let reason = || match &r.error {
                Some(e) => e.describe(r.status),
                None => format!("status {}", r.status),
            };
            match r.status {
                200..=299 => Outcome::Delivered,
                429 | 500..=599 => Outcome::retry(reason()),
                _ => Outcome::Reject { reason: reason() },
            }
        })
        .collect()
}

impl Service for BulkService {
    async fn send(&self, batch: &Batch, pending: &[usize]) -> Vec<Outcome> {
        let n = pending.len();
        let (endpoint, base) = self.endpoints.pick();
        let resp = match self.bulk_request(base, batch, pending).send().await {
            Ok(r) => r,
            Err(e) => {
                self.endpoints.failed(endpoint);
                return vec![transport_outcome(&e); n];
            }
        };
        let (status, after, bytes) = match read_response(resp, base).await {
            Ok(r) => r,
            Err(outcome) => {
                self.endpoints.failed(endpoint);
                return vec![outcome; n];
            }
        };
        if status == StatusCode::OK {
            return item_outcomes(&bytes, n);
        }
        let reason = format!("{base}: {}", describe_failure(status, &bytes));
        let outcome = match status.as_u16() {
            429 => Outcome::Retry {
                reason,
                after,
                ambiguous: false,
            },
            500..=599 => {
                self.endpoints.failed(endpoint);
                // A gateway timeout or an internal error may come after
                // some documents were indexed.
                let ambiguous = matches!(status.as_u16(), 500 | 504);
                Outcome::Retry {
                    reason,
                    after,
                    ambiguous,
                }
            }
            401 | 403 => Outcome::Fatal {
                reason: format!("credentials refused: {reason}"),
            },
            413 => Outcome::Reject {
                reason: format!("{reason} (request too large: lower batch.max_bytes)"),
            },
            _ => Outcome::Reject { reason },
        };
        vec![outcome; n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_item_statuses_become_outcomes() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"logs-a-default","status":201}},
            {"create":{"_index":"logs-a-default","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"logs-a-default","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}}},
            {"index":{"_index":"lumen","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
        ]}"#;
        let o = item_outcomes(body, 4);
        assert_eq!(o[0], Outcome::Delivered);
        assert!(
            matches!(&o[1], Outcome::Retry { reason, .. } if reason.contains("429 es_rejected_execution_exception"))
        );
        assert!(
            matches!(&o[2], Outcome::Reject { reason } if reason == "400 mapper_parsing_exception: failed to parse field [x]")
        );
        assert!(matches!(&o[3], Outcome::Retry { .. }));
    }

    #[test]
    fn a_response_with_the_wrong_item_count_is_retried_as_ambiguous() {
        let o = item_outcomes(br#"{"errors":false,"items":[]}"#, 2);
        assert!(o.iter().all(|o| matches!(
            o,
            Outcome::Retry {
                ambiguous: true,
                ..
            }
        )));
    }

    #[test]
    fn failure_bodies_are_described() {
        let d = describe_failure(
            StatusCode::UNAUTHORIZED,
            br#"{"error":{"type":"security_exception","reason":"unable to authenticate user [elastic]"},"status":401}"#,
        );
        assert_eq!(
            d,
            "401 security_exception: unable to authenticate user [elastic]"
        );
        let d = describe_failure(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(d.starts_with("502 Bad Gateway: <html>"), "{d}");
    }
}
