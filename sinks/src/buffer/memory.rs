//! `type = "memory"`: the channel in front of the sink. With `block` the
//! sink reads its input channel directly (sized `max_events`); with
//! `drop_newest` a task moves events on and discards what does not fit.

use super::{Buffer, BufferMetrics, MemoryBufferConfig, WhenFull};
use crate::ack::Status;
use crate::Envelope;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) fn start(
    config: &MemoryBufferConfig,
    mut input: mpsc::Receiver<Envelope>,
    metrics: Arc<BufferMetrics>,
) -> Buffer {
    if config.when_full == WhenFull::Block {
        return Buffer {
            output: input,
            tasks: Vec::new(),
            metrics,
        };
    }
    let (tx, output) = mpsc::channel(config.max_events.max(1));
    let _ = metrics.queue.set(tx.downgrade());
    let m = metrics.clone();
    let task = async move {
        while let Some(env) = input.recv().await {
            BufferMetrics::add(&m.events_in, 1);
            match tx.try_send(env) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(env)) => {
                    BufferMetrics::add(&m.dropped_full, 1);
                    env.ack.complete(Status::Rejected);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    };
    Buffer {
        output,
        tasks: vec![Box::pin(task)],
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{self, Ack};
    use lumen_schemas::event::LossReport;
    use lumen_schemas::{Event, EventKind};

    fn event() -> Event {
        Event {
            time: Default::default(),
            observed: Default::default(),
            host: Default::default(),
            kind: EventKind::Loss(LossReport::default()),
            redaction: Default::default(),
        }
    }

    #[tokio::test]
    async fn drop_newest_discards_what_does_not_fit_and_says_so() {
        let (tx, rx) = mpsc::channel(16);
        let config = MemoryBufferConfig {
            max_events: 2,
            when_full: WhenFull::DropNewest,
        };
        let mut buffer = start(&config, rx, Arc::default());
        let (acks, mut acked) = ack::channel();
        for i in 0..5 {
            tx.send(Envelope::new(event(), Ack::new(acks.node(i))))
                .await
                .unwrap();
        }
        let tasks: Vec<_> = buffer.tasks.drain(..).map(tokio::spawn).collect();
        while BufferMetrics::get(&buffer.metrics.events_in) < 5 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            buffer.metrics.queued(),
            2,
            "the fill is what waits for the sink, not every event that came in"
        );
        drop(tx);
        for t in tasks {
            t.await.unwrap();
        }
        let mut kept = Vec::new();
        while let Some(env) = buffer.output.recv().await {
            kept.push(env);
        }
        assert_eq!(kept.len(), 2, "the buffer holds max_events");
        assert_eq!(buffer.metrics.queued(), 0, "taken out: empty again");
        assert_eq!(BufferMetrics::get(&buffer.metrics.dropped_full), 3);
        let mut rejected = Vec::new();
        while let Ok(a) = acked.try_recv() {
            assert_eq!(a.status, Status::Rejected);
            rejected.push(a.cookie);
        }
        assert_eq!(rejected, vec![2, 3, 4], "the newest were dropped");
    }
}
