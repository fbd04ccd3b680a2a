//! Optional Kubernetes API enrichment: pod name, namespace, labels, and
//! each container's name and image, from a node-scoped watch of pods
//! (kube-rs), cached by pod UID. Off by default; attribution from the
//! cgroup path (container id, pod UID) does not depend on it.
//!
//! The watch asks only for this node's pods (`spec.nodeName=<node>`), as a
//! DaemonSet's service account with `get/list/watch pods` allows. Deleted
//! pods stay cached for a while, so late events of a short-lived pod are
//! still enriched. Authentication: a bearer token read from a file (the
//! service account's by default) and the cluster CA; TLS is verified.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// `[sources.<id>.kubernetes]` of an ebpf source.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Turn the enrichment on.
    #[serde(default)]
    pub enabled: bool,
    /// API server URL; default: in-cluster (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// This node's name (`spec.nodeName`); typically `${NODE_NAME}` from the
    /// downward API.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Bearer token file.
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
    /// CA bundle that signed the API server's certificate.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// Seconds a deleted pod stays cached for late events.
    #[serde(default = "default_retain")]
    pub retain_deleted_secs: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: false,
            endpoint: None,
            node_name: None,
            token_file: default_token_file(),
            ca_file: default_ca_file(),
            retain_deleted_secs: default_retain(),
        }
    }
}

/// Fills a process's pod and container details from the cache.
pub fn enrich(p: &mut lumen_schemas::event::Process, pods: &PodCache) {
    enrich_attribution(&mut p.attribution, &mut p.text, pods);
}

/// As [`enrich`], for attribution whose strings live in `text` (a
/// resource sample's).
pub fn enrich_attribution(
    at: &mut lumen_schemas::event::Attribution,
    text: &mut String,
    pods: &PodCache,
) {
    use lumen_schemas::event::push;
    if at.pod_uid.is_empty() {
        return;
    }
    let Some(info) = pods.get(at.pod_uid.get(text)) else {
        return;
    };
    let container = info
        .containers
        .iter()
        .find(|(id, _, _)| id.as_str() == at.container_id.get(text));
    at.pod_name = push(text, &info.name);
    at.namespace = push(text, &info.namespace);
    at.labels = info
        .labels
        .iter()
        .map(|(k, v)| (push(text, k), push(text, v)))
        .collect();
    if let Some((_, name, image)) = container {
        at.container_name = push(text, name);
        at.image = push(text, image);
    }
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn default_token_file() -> PathBuf {
    PathBuf::from(SA_DIR).join("token")
}
fn default_ca_file() -> PathBuf {
    PathBuf::from(SA_DIR).join("ca.crt")
}
fn default_retain() -> u64 {
    300
}

/// What the API says about a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    /// (container id without the runtime scheme, container name, image).
    pub containers: Vec<(String, String, String)>,
}

/// A cached pod and, once deleted, when.
type Cached = (Arc<PodInfo>, Option<Instant>);

/// Pods by UID, shared between the watch task and the reader.
#[derive(Clone, Debug, Default)]
pub struct PodCache {
    inner: Arc<RwLock<HashMap<String, Cached>>>,
}

impl PodCache {
    pub fn get(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.inner.read().ok()?.get(uid).map(|(p, _)| p.clone())
    }

    fn apply(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.insert(uid, pod_info(pod));
    }

    /// Caches a live pod.
    pub(crate) fn insert(&self, uid: String, info: PodInfo) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(uid, (Arc::new(info), None));
        }
    }

    fn delete(&self, pod: &Pod, retain: Duration) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        if let Ok(mut map) = self.inner.write() {
            let now = Instant::now();
            if let Some(entry) = map.get_mut(uid) {
                entry.1 = Some(now);
            }
            map.retain(|_, (_, deleted)| deleted.is_none_or(|at| now.duration_since(at) < retain));
        }
    }
}

/// The container id in a status `containerID` (`containerd://<id>`).
fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

fn pod_info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let mut containers = Vec::new();
    if let Some(status) = &pod.status {
        let all = [
            status.container_statuses.as_deref(),
            status.init_container_statuses.as_deref(),
            status.ephemeral_container_statuses.as_deref(),
        ];
        for cs in all.into_iter().flatten().flatten() {
            if let Some(id) = cs.container_id.as_deref() {
                containers.push((
                    strip_scheme(id).to_owned(),
                    cs.name.clone(),
                    cs.image.clone(),
                ));
            }
        }
    }
    PodInfo {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        labels: meta
            .labels
            .as_ref()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        containers,
    }
}

/// Why the enrichment could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error(
        "kubernetes enrichment: `node_name` is required (set it from the downward API: NODE_NAME)"
    )]
    NoNodeName,
    #[error(
        "kubernetes enrichment: no `endpoint` and not in a cluster (KUBERNETES_SERVICE_HOST unset)"
    )]
    NoEndpoint,
    #[error("kubernetes enrichment: invalid endpoint {0:?}")]
    BadEndpoint(String),
    #[error("kubernetes enrichment: {0}")]
    Client(String),
}

/// Starts the watch; the returned cache fills as pods are listed and change.
pub fn start(config: &KubernetesConfig) -> Result<PodCache, KubernetesError> {
    let node = config
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or(KubernetesError::NoNodeName)?;
    let endpoint = match &config.endpoint {
        Some(e) => e.clone(),
        None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST")
                .map_err(|_| KubernetesError::NoEndpoint)?;
            let port =
                std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
            format!("https://{host}:{port}")
        }
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| KubernetesError::BadEndpoint(endpoint.clone()))?;
    let mut kc = kube::Config::new(uri);
    kc.auth_info.token_file = Some(config.token_file.display().to_string());
    if config.ca_file.exists() {
        kc.root_cert_file = Some(config.ca_file.clone());
    }
    kc.connect_timeout = Some(Duration::from_secs(10));
    let client = kube::Client::try_from(kc).map_err(|e| KubernetesError::Client(e.to_string()))?;
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let cache = PodCache::default();
    let writer = cache.clone();
    let retain = Duration::from_secs(config.retain_deleted_secs);
    let selector = format!("spec.nodeName={node}");
    tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default().fields(&selector))
            .default_backoff()
            .boxed();
        let mut listed = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    writer.apply(&pod)
                }
                Ok(watcher::Event::Delete(pod)) => writer.delete(&pod, retain),
                Ok(watcher::Event::Init) => {}
                Ok(watcher::Event::InitDone) => {
                    if !listed {
                        tracing::info!(node = %node, "kubernetes enrichment: pods of this node listed; watching");
                        listed = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kubernetes enrichment: watch error; retrying with backoff")
                }
            }
        }
    });
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misconfiguration_is_refused_with_the_reason() {
        let base = KubernetesConfig {
            enabled: true,
            ..KubernetesConfig::default()
        };
        let e = start(&base).unwrap_err().to_string();
        assert!(e.contains("`node_name` is required"), "{e}");
        let bad = KubernetesConfig {
            node_name: Some("node-1".into()),
            endpoint: Some("not a url".into()),
            ..base
        };
        let e = start(&bad).unwrap_err().to_string();
        assert!(e.contains("invalid endpoint \"not a url\""), "{e}");
    }

    #[test]
    fn pod_info_takes_names_labels_and_container_ids_without_scheme() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
            "status": {"containerStatuses": [
                {"name": "nginx", "image": "nginx:1.27", "imageID": "", "containerID": "containerd://abc", "ready": true, "restartCount": 0}
            ]}
        }))
        .unwrap();
        let info = pod_info(&pod);
        assert_eq!(
            (info.name.as_str(), info.namespace.as_str()),
            ("web-1", "shop")
        );
        assert_eq!(info.labels, [("app".to_owned(), "web".to_owned())]);
        assert_eq!(
            info.containers,
            [(
                "abc".to_owned(),
                "nginx".to_owned(),
                "nginx:1.27".to_owned()
            )]
        );
        let cache = PodCache::default();
        cache.apply(&pod);
        assert_eq!(cache.get("u1").unwrap().name, "web-1");
        cache.delete(&pod, Duration::from_secs(60));
        assert!(cache.get("u1").is_some(), "kept for late events");
        // A resource sample's attribution gets the names too.
        let mut sample = lumen_schemas::event::ResourceSample::default();
        let (at, text) = (&mut sample.attribution, &mut sample.text);
        at.pod_uid = lumen_schemas::event::push(text, "u1");
        at.container_id = lumen_schemas::event::push(text, "abc");
        enrich_attribution(at, text, &cache);
        assert_eq!(sample.s(sample.attribution.pod_name), "web-1");
        assert_eq!(sample.s(sample.attribution.namespace), "shop");
        assert_eq!(sample.s(sample.attribution.container_name), "nginx");
        cache.delete(&pod, Duration::ZERO);
        assert!(cache.get("u1").is_none());
    }
}
