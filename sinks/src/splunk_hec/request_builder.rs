//! Builds HEC requests: the token and the channel on every one, and the
//! request for some events of a batch (event or raw endpoint, compressed as
//! configured).

use super::config::EndpointTarget;
use super::service::{HecService, CHANNEL_HEADER};
use crate::batch::Batch;
use crate::secret::Secret;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

/// Where and as whom one sink talks to HEC: shared by the service and the
/// ack task.
#[derive(Clone, Debug)]
pub struct HecClient {
    pub client: reqwest::Client,
    /// Base URL without trailing slash.
    pub endpoint: String,
    pub token: Secret,
    /// This sink's data channel (a GUID).
    pub channel: String,
}

impl HecClient {
    /// A request to `path` with `query`, the token and the channel.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut url = format!("{}{path}", self.endpoint);
        if !query.is_empty() {
            url.push('?');
            for (i, (k, v)) in query.iter().enumerate() {
                if i > 0 {
                    url.push('&');
                }
                url.push_str(&encode_query(k));
                url.push('=');
                url.push_str(&encode_query(v));
            }
        }
        self.client
            .request(method, url)
            .header(AUTHORIZATION, format!("Splunk {}", self.token.expose()))
            .header(CHANNEL_HEADER, &self.channel)
    }
}

impl HecService {
    /// The events `pending` of `batch`, to the configured endpoint.
    pub fn events_request(&self, batch: &Batch, pending: &[usize]) -> reqwest::RequestBuilder {
        let (body, encoding) = self.compression.apply(batch.body(pending));
        let req = match self.target {
            EndpointTarget::Event => self
                .hec
                .request(reqwest::Method::POST, "/services/collector/event", &[])
                .header(CONTENT_TYPE, "application/json"),
            EndpointTarget::Raw => {
                let mut query: Vec<(&str, &str)> = vec![("channel", &self.hec.channel)];
                query.extend(self.raw_query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                self.hec
                    .request(reqwest::Method::POST, "/services/collector/raw", &query)
                    .header(CONTENT_TYPE, "text/plain")
            }
        };
        let req = req.body(body);
        match encoding {
            Some(enc) => req.header(CONTENT_ENCODING, enc),
            None => req,
        }
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
