//! `[sources.<id>] type = "kafka"`: a consumer group member reading Lumen's
//! native events (from node Lumens' kafka sinks) or raw `audit.k8s.io`
//! events — the aggregator tier's input.
//!
//! At least once, end to end: offsets are stored by Lumen, never by
//! librdkafka (`enable.auto.commit` and `enable.auto.offset.store` off);
//! a partition's position moves only past messages whose events every sink
//! acknowledged ([`offsets`]), and is committed every
//! `commit_interval_ms`, when partitions are revoked (a rebalance: the new
//! owner starts where this one's acknowledgements end), and at shutdown
//! after the sinks drained. A message that is no event (malformed, of
//! another codec version) is logged with its topic, partition and offset,
//! counted, written to the dead-letter file, and passed: a poison message
//! never stalls its partition.
//!
//! Backpressure without leaving the group: when the outputs have taken
//! nothing for [`PAUSE_AFTER`] (a sink down, its buffer full), the assigned
//! partitions are paused and the consumer is still polled — librdkafka
//! drops a member that does not poll for `max.poll.interval.ms`, and its
//! partitions would be read again by another, everything in flight twice —
//! until the outputs take events again. Partitions assigned meanwhile are
//! paused as they come.

pub mod decode;
pub mod offsets;
pub mod topics;

use crate::topology::fanout::Fanout;
use crate::topology::shutdown::ShutdownSignal;
use decode::Decoded;
use futures::FutureExt;
use lumen_schemas::event::Host;
use lumen_sinks::ack::{self, Ack, AckReceiver, Acked, Status};
use lumen_sinks::dead_letter::DeadLetters;
use lumen_sinks::kafka::config::{KafkaTlsConfig, SaslConfig};
use lumen_sinks::{ComponentMetrics, Envelope};
use offsets::{Offsets, Partition};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::stream_consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

/// How long a send may wait on full outputs before the partitions are
/// paused: longer, and the sinks are stalled (down, retrying), not just
/// slower than Kafka for a moment.
pub const PAUSE_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port,host:port` of the brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// The consumer group: processes with the same id share the
    /// partitions.
    pub group_id: String,
    /// Topic names; one that starts with `^` is a POSIX extended regular
    /// expression ([`topics`]).
    pub topics: Vec<String>,
    /// What the messages hold: `auto` (default), `native`, `k8s_audit`.
    #[serde(default)]
    pub decoding: decode::Decoding,
    /// Milliseconds between commits of acknowledged positions.
    #[serde(default = "default_commit_interval")]
    pub commit_interval_ms: u64,
    /// librdkafka consumer settings for everything Lumen does not name
    /// (they win over Lumen's own; `auto.offset.reset` is `earliest`
    /// unless set here).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    #[serde(default)]
    pub sasl: SaslConfig,
    #[serde(default)]
    pub tls: KafkaTlsConfig,
    /// Where unreadable messages go; default
    /// `<data_dir>/dead-letter/<id>.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
}

fn default_commit_interval() -> u64 {
    1000
}

/// Settings that would break the acknowledgement guarantee.
const OWNED_OPTIONS: &[&str] = &["enable.auto.commit", "enable.auto.offset.store", "group.id"];

impl KafkaSourceConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("bootstrap_servers is empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id is empty".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics: name at least one topic (or a ^regex), none empty".into());
        }
        for t in self.topics.iter().filter(|t| t.starts_with('^')) {
            topics::validate_pattern(t)?;
        }
        if self.commit_interval_ms == 0 {
            return Err("commit_interval_ms must be at least 1".into());
        }
        if let Some(k) = self
            .librdkafka_options
            .keys()
            .find(|k| OWNED_OPTIONS.contains(&k.as_str()))
        {
            return Err(format!(
                "librdkafka_options.{k}: set by Lumen (offsets are committed only once every sink acknowledged)"
            ));
        }
        lumen_sinks::kafka::config::validate_security(&self.sasl, &self.tls)
    }

    /// The librdkafka consumer settings: Lumen's, then
    /// `librdkafka_options` over them.
    pub fn consumer_settings(&self) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.bootstrap_servers.clone()),
            ("group.id".into(), self.group_id.clone()),
            ("enable.auto.commit".into(), "false".into()),
            ("enable.auto.offset.store".into(), "false".into()),
            // For security events a duplicate beats a gap.
            ("auto.offset.reset".into(), "earliest".into()),
            // A member joining or leaving moves only the partitions that
            // change hands: the others are not revoked, so what is in
            // flight on them is not read again (eager rebalancing revokes
            // every partition of every member, each re-read from its last
            // commit).
            (
                "partition.assignment.strategy".into(),
                "cooperative-sticky".into(),
            ),
            // Consumer lag for /metrics.
            ("statistics.interval.ms".into(), "5000".into()),
        ];
        s.extend(lumen_sinks::kafka::config::security_settings(
            &self.sasl, &self.tls,
        ));
        for (k, v) in &self.librdkafka_options {
            s.retain(|(key, _)| key != k);
            s.push((k.clone(), v.clone()));
        }
        s
    }
}

/// Why the source did not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("invalid kafka source config: {0}")]
    Config(String),
    #[error("kafka consumer: {0}")]
    Consumer(String),
}

/// Each assigned partition's consumer lag (messages not read yet), from
/// librdkafka's statistics; for `/metrics`.
#[derive(Debug, Default)]
pub struct ConsumerLag {
    lags: Mutex<BTreeMap<(String, i32), u64>>,
}

impl ConsumerLag {
    pub fn snapshot(&self) -> BTreeMap<(String, i32), u64> {
        self.lags.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// librdkafka's callbacks: revoked partitions commit what is acknowledged
/// before they go; assigned ones are paused while the source is; statistics
/// give the lag; librdkafka's own logs go to Lumen's.
struct Context {
    offsets: Arc<Mutex<Offsets>>,
    lag: Arc<ConsumerLag>,
    paused: Arc<AtomicBool>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(facility, "kafka source: librdkafka: {message}")
            }
            Warning => tracing::warn!(facility, "kafka source: librdkafka: {message}"),
            Notice | Info => tracing::info!(facility, "kafka source: librdkafka: {message}"),
            Debug => tracing::debug!(facility, "kafka source: librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lags = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal one; only assigned
                // (desired) partitions count. librdkafka's own
                // `consumer_lag` counts from the committed offset (unknown
                // before the first commit, and behind by what is in
                // flight); what is not read yet is from the position
                // passed to Lumen (`app_offset`), or from the log start
                // before anything was.
                if *partition < 0 || !p.desired || p.hi_offset < 0 {
                    continue;
                }
                let from = if p.app_offset >= 0 {
                    p.app_offset
                } else if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset.max(0)
                };
                lags.insert(
                    (topic.clone(), *partition),
                    u64::try_from(p.hi_offset - from).unwrap_or(0),
                );
            }
        }
        *self.lag.lags.lock().unwrap_or_else(|e| e.into_inner()) = lags;
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        // librdkafka keeps a partition's pause across its revocation: one
        // paused before and assigned again now must be resumed.
        let paused = self.paused.load(Ordering::Acquire);
        let done = if paused {
            consumer.pause(assigned)
        } else {
            consumer.resume(assigned)
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, paused, "kafka source: assigned partitions could not be paused or resumed");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = TopicPartitionList::new();
        let mut gone = Vec::new();
        for e in revoked.elements() {
            let tp: Partition = (e.topic().to_owned(), e.partition());
            if let Some(at) = offsets.position(&tp) {
                let _ = list.add_partition_offset(&tp.0, tp.1, Offset::Offset(at));
            }
            gone.push(tp);
        }
        if list.count() > 0 {
            match consumer.commit(&list, CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    partitions = list.count(),
                    "kafka source: revoked partitions committed up to what was acknowledged"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka source: commit of revoked partitions failed; their next owner reads again from the last commit")
                }
            }
        }
        for tp in &gone {
            offsets.revoke(tp);
        }
    }
}

/// The running source.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    consumer: StreamConsumer<Context>,
    offsets: Arc<Mutex<Offsets>>,
    lag: Arc<ConsumerLag>,
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    dead_letters: DeadLetters,
    acks: ack::AckSender,
    acked: AckReceiver,
    next_cookie: std::sync::atomic::AtomicU64,
    /// Whether the assigned partitions are paused (shared with the
    /// rebalance callbacks).
    paused: Arc<AtomicBool>,
    /// Messages that came while pausing: sent on before any other.
    held: VecDeque<OwnedMessage>,
    /// The events after the first of a message that held several (a
    /// CloudWatch payload): sent on before the next message's.
    pending: Mutex<VecDeque<Envelope>>,
    has_pending: AtomicBool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("group_id", &self.config.group_id)
            .field("topics", &self.config.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Creates the consumer and subscribes; dead letters default to
    /// `<data_dir>/dead-letter/<source_id>.ndjson`.
    pub fn new(
        config: KafkaSourceConfig,
        host: Arc<Host>,
        metrics: Arc<ComponentMetrics>,
        data_dir: &Path,
        source_id: &str,
    ) -> Result<Self, KafkaSourceError> {
        config.validate().map_err(KafkaSourceError::Config)?;
        let mut client = ClientConfig::new();
        for (k, v) in config.consumer_settings() {
            client.set(k, v);
        }
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let lag = Arc::new(ConsumerLag::default());
        let paused = Arc::new(AtomicBool::new(false));
        let consumer: StreamConsumer<Context> = client
            .create_with_context(Context {
                offsets: offsets.clone(),
                lag: lag.clone(),
                paused: paused.clone(),
            })
            .map_err(|e| KafkaSourceError::Consumer(e.to_string()))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| KafkaSourceError::Consumer(format!("subscribing to {topics:?}: {e}")))?;
        let path = config.dead_letter_path.clone().unwrap_or_else(|| {
            data_dir
                .join("dead-letter")
                .join(format!("{source_id}.ndjson"))
        });
        let (acks, acked) = ack::channel();
        tracing::info!(group = %config.group_id, topics = ?config.topics, "kafka source: subscribed");
        Ok(KafkaSource {
            dead_letters: DeadLetters::new(path, source_id),
            config,
            consumer,
            offsets,
            lag,
            host,
            metrics,
            acks,
            acked,
            next_cookie: std::sync::atomic::AtomicU64::new(0),
            paused,
            held: VecDeque::new(),
            pending: Mutex::new(VecDeque::new()),
            has_pending: AtomicBool::new(false),
        })
    }

    /// Its partitions' consumer lag, for `/metrics`.
    pub fn lag(&self) -> Arc<ConsumerLag> {
        self.lag.clone()
    }

    pub async fn run(mut self, mut out: Fanout, mut shutdown: ShutdownSignal) {
        let mut commit =
            tokio::time::interval(Duration::from_millis(self.config.commit_interval_ms));
        commit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'read: loop {
            while let Some(m) = self.held.pop_front() {
                if let Some(envelope) = self.envelope(&m) {
                    if !self.deliver(envelope, &mut out, &mut commit).await {
                        break 'read;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(a) = self.acked.recv() => self.acknowledged(a),
                _ = commit.tick() => self.commit(CommitMode::Async),
                message = self.consumer.recv() => {
                    // Whatever else is ready goes in the same turn.
                    let mut envelope = self.received(message);
                    let mut taken = 1;
                    loop {
                        if let Some(envelope) = envelope.take() {
                            if !self.deliver(envelope, &mut out, &mut commit).await {
                                break 'read;
                            }
                        }
                        if taken == 1024 || !self.held.is_empty() {
                            break;
                        }
                        match self.consumer.recv().now_or_never() {
                            Some(message) => envelope = self.received(message),
                            None => break,
                        }
                        taken += 1;
                    }
                }
            }
        }
        drop(out);
        // Sinks drain what they hold; then what they acknowledged is
        // committed. Only events in flight hold senders now.
        drop(std::mem::replace(&mut self.acks, ack::channel().0));
        while let Some(a) = self.acked.recv().await {
            self.acknowledged(a);
        }
        self.commit(CommitMode::Sync);
        let in_flight = self.lock().in_flight();
        tracing::info!(
            events = self.next_cookie.load(std::sync::atomic::Ordering::Relaxed),
            not_committed = in_flight,
            "kafka source: stopped"
        );
    }

    /// The event of a message received, or `None` (an error, counted; a
    /// message dead-lettered).
    fn received(&self, message: KafkaResult<BorrowedMessage<'_>>) -> Option<Envelope> {
        match message {
            Ok(m) => self.envelope(&m),
            Err(e) => {
                self.consumer_error(&e);
                None
            }
        }
    }

    fn consumer_error(&self, e: &rdkafka::error::KafkaError) {
        self.metrics.add_errors(1);
        tracing::warn!(error = %e, "kafka source: consumer error (librdkafka retries)");
    }

    /// The event in `m`, tracked; or `None`, the message dead-lettered.
    fn envelope<M: Message>(&self, m: &M) -> Option<Envelope> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let payload = m.payload().unwrap_or_default();
        self.metrics.add_received(1);
        self.metrics.add_received_bytes(payload.len());
        match decode::decode(payload, self.config.decoding, &self.host) {
            Ok(Decoded::One(event)) => {
                let cookie = self
                    .next_cookie
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.lock().read(topic, partition, offset, Some(cookie));
                Some(Envelope::new(event, Ack::new(self.acks.node(cookie))))
            }
            Ok(Decoded::Several(events, errors)) => {
                for error in &errors {
                    self.metrics.add_errors(1);
                    tracing::warn!(topic, partition, offset, %error, "kafka source: an event of a CloudWatch payload skipped");
                }
                if events.is_empty() {
                    // A control message: nothing to deliver, nothing to hold.
                    self.lock().read(topic, partition, offset, None);
                    return None;
                }
                // The message's offset passes when all of its events are
                // acknowledged: they share one node.
                let cookie = self
                    .next_cookie
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.lock().read(topic, partition, offset, Some(cookie));
                let node = self.acks.node(cookie);
                let mut envelopes = events
                    .into_iter()
                    .map(|e| Envelope::new(e, Ack::new(node.clone())));
                let first = envelopes.next();
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.extend(envelopes);
                self.has_pending
                    .store(!pending.is_empty(), Ordering::Release);
                first
            }
            Err(reason) => {
                self.poison(&(topic.to_owned(), partition), offset, payload, &reason);
                self.lock().read(topic, partition, offset, None);
                None
            }
        }
    }

    /// Sends `envelope` on; false when the outputs are gone. A send that
    /// waits [`PAUSE_AFTER`] pauses the partitions, and the consumer is
    /// polled meanwhile (membership kept, rebalances served, messages
    /// fetched before the pause held), acknowledgements counted and
    /// commits made, until the outputs take it.
    async fn deliver(
        &mut self,
        envelope: Envelope,
        out: &mut Fanout,
        commit: &mut tokio::time::Interval,
    ) -> bool {
        if !self.deliver_one(envelope, out, commit).await {
            return false;
        }
        while self.has_pending.load(Ordering::Acquire) {
            let next = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let next = pending.pop_front();
                self.has_pending
                    .store(!pending.is_empty(), Ordering::Release);
                next
            };
            match next {
                Some(envelope) => {
                    if !self.deliver_one(envelope, out, commit).await {
                        return false;
                    }
                }
                None => break,
            }
        }
        true
    }

    async fn deliver_one(
        &mut self,
        envelope: Envelope,
        out: &mut Fanout,
        commit: &mut tokio::time::Interval,
    ) -> bool {
        let send = out.send(envelope);
        tokio::pin!(send);
        if let Poll::Ready(sent) = futures::poll!(&mut send) {
            return self.sent(sent.is_ok());
        }
        let pause = tokio::time::sleep(PAUSE_AFTER);
        tokio::pin!(pause);
        let sent = loop {
            let paused = self.paused.load(Ordering::Acquire);
            tokio::select! {
                sent = &mut send => break sent.is_ok(),
                () = &mut pause, if !paused => self.pause(),
                Some(a) = self.acked.recv() => self.acknowledged(a),
                _ = commit.tick() => self.commit(CommitMode::Async),
                message = self.consumer.recv(), if paused => match message {
                    Ok(m) => self.held.push_back(m.detach()),
                    Err(e) => self.consumer_error(&e),
                },
            }
        };
        if self.paused.load(Ordering::Acquire) {
            self.resume();
        }
        self.sent(sent)
    }

    fn sent(&self, sent: bool) -> bool {
        if sent {
            self.metrics.add_sent(1);
        }
        sent
    }

    /// Pauses every assigned partition (and, by the rebalance callback,
    /// those assigned later).
    fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        match self.consumer.assignment() {
            Ok(assigned) => match self.consumer.pause(&assigned) {
                Ok(()) => tracing::warn!(
                    partitions = assigned.count(),
                    waited_secs = PAUSE_AFTER.as_secs_f64(),
                    "kafka source: the outputs take no events; partitions paused (the group keeps this member) until they do"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka source: the outputs take no events and the partitions could not be paused")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "kafka source: the outputs take no events and the assignment is unknown")
            }
        }
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::Release);
        let resumed = self
            .consumer
            .assignment()
            .and_then(|assigned| self.consumer.resume(&assigned).map(|()| assigned.count()));
        match resumed {
            Ok(partitions) => tracing::info!(
                partitions,
                "kafka source: the outputs take events again; partitions resumed"
            ),
            Err(e) => {
                tracing::error!(error = %e, "kafka source: partitions could not be resumed")
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Offsets> {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts acknowledgement `first` and every other one already there,
    /// under one lock (one a turn would be a wakeup and a turn of the
    /// source's loop per event).
    fn acknowledged(&mut self, first: Acked) {
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Some(first);
        while let Some(a) = next {
            if a.status == Status::Dropped {
                self.metrics.add_dropped(1);
            }
            offsets.acknowledged(a.cookie, a.status != Status::Dropped);
            next = self.acked.try_recv().ok();
        }
    }

    /// Commits the positions that moved.
    fn commit(&self, mode: CommitMode) {
        let positions = self.lock().to_commit();
        if positions.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), at) in &positions {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*at));
        }
        match self.consumer.commit(&list, mode) {
            Ok(()) => self.lock().committed(&positions),
            Err(e) => {
                self.metrics.add_errors(1);
                tracing::warn!(error = %e, "kafka source: commit failed; retried at the next interval");
            }
        }
    }

    /// A message that is no event: logged, counted, dead-lettered.
    fn poison(&self, tp: &Partition, offset: i64, payload: &[u8], reason: &str) {
        self.metrics.add_errors(1);
        self.metrics.add_dropped(1);
        let (partition, offset_text) = (tp.1.to_string(), offset.to_string());
        let origin = [
            ("topic", tp.0.as_str()),
            ("partition", partition.as_str()),
            ("offset", offset_text.as_str()),
        ];
        match self.dead_letters.write_message(payload, &origin, reason) {
            Ok(()) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, offset, error = %reason, dead_letter = %self.dead_letters.path().display(), "kafka source: a message is no event; dead-lettered and passed")
            }
            Err(e) => {
                tracing::error!(topic = %tp.0, partition = tp.1, offset, error = %reason, write_error = %e, "kafka source: a message is no event and the dead-letter file cannot be written; passed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> KafkaSourceConfig {
        toml::from_str(&format!(
            "bootstrap_servers = \"k:9092\"\ngroup_id = \"g\"\ntopics = [\"lumen\"]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn settings_that_would_break_the_guarantee_or_cannot_work_are_refused_by_name() {
        assert!(config("").validate().is_ok());
        let s = config("").consumer_settings();
        let get = |k: &str| s.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.auto.commit"), Some("false"));
        assert_eq!(get("enable.auto.offset.store"), Some("false"));
        assert_eq!(get("auto.offset.reset"), Some("earliest"));
        assert_eq!(
            get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        let latest = config("librdkafka_options.\"auto.offset.reset\" = \"latest\"");
        assert!(latest.validate().is_ok());
        assert!(latest
            .consumer_settings()
            .contains(&("auto.offset.reset".into(), "latest".into())));
        for (extra, named) in [
            (
                "librdkafka_options.\"enable.auto.commit\" = \"true\"",
                "enable.auto.commit",
            ),
            ("topics = [\"^[\"]", "no POSIX extended regular expression"),
            ("commit_interval_ms = 0", "commit_interval_ms"),
            (
                "sasl.enabled = true\nsasl.mechanism = \"GSSAPI\"",
                "sasl.mechanism",
            ),
        ] {
            let text = format!(
                "bootstrap_servers = \"k:9092\"\ngroup_id = \"g\"\n{}{extra}",
                if extra.starts_with("topics") {
                    ""
                } else {
                    "topics = [\"lumen\"]\n"
                }
            );
            let c: KafkaSourceConfig = toml::from_str(&text).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.contains(named), "{extra}: {e}");
        }
        let empty: KafkaSourceConfig =
            toml::from_str("bootstrap_servers = \"k\"\ngroup_id = \" \"\ntopics = [\"t\"]")
                .unwrap();
        assert!(empty.validate().unwrap_err().contains("group_id"));
    }
}
