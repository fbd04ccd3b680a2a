//! Builds the cluster's requests: credentials on every one, and the bulk
//! request for some events of a batch (NDJSON body, compressed as
//! configured).

use super::config::AuthStrategy;
use super::service::BulkService;
use crate::batch::Batch;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

impl BulkService {
    /// A request with the sink's credentials.
    pub fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.auth {
            None => req,
            Some(a) => match a.strategy {
                AuthStrategy::Basic => req.basic_auth(
                    a.user.as_deref().unwrap_or(""),
                    a.password.as_ref().map(|p| p.expose()),
                ),
                AuthStrategy::ApiKey => req.header(
                    AUTHORIZATION,
                    format!("ApiKey {}", a.api_key.as_ref().map_or("", |k| k.expose())),
                ),
                AuthStrategy::Bearer => {
                    req.bearer_auth(a.token.as_ref().map_or("", |t| t.expose()))
                }
            },
        }
    }

    /// `POST <base>/_bulk` carrying the events `pending` of `batch`.
    pub fn bulk_request(
        &self,
        base: &str,
        batch: &Batch,
        pending: &[usize],
    ) -> reqwest::RequestBuilder {
        let (body, encoding) = self.compression.apply(batch.body(pending));
        let req = self
            .request(reqwest::Method::POST, format!("{base}/_bulk"))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        match encoding {
            Some(enc) => req.header(CONTENT_ENCODING, enc),
            None => req,
        }
    }
}
