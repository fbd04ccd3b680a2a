//! How the transforms (`filter`, `redact`, `rate_limit`, `detect`) read
//! their input: in bursts, and without parking on an empty channel while
//! events come at a high rate. A receiver parked on the channel is woken by
//! every send — a cross-thread wakeup per event at full rate, which costs
//! more than most transforms' work on the event. Instead, a transform that
//! finds its channel empty lets events gather for [`GATHER`] (a timer,
//! which sends do not touch), then takes all that waits at once (one
//! release of the channel's permits for the senders). [`run_ticking`] is
//! the loop of the transforms that also work on a timer.

use crate::topology::fanout::{Closed, Fanout};
use lumen_sinks::{ComponentMetrics, Envelope};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long an empty channel is left to fill before the transform parks.
pub const GATHER: Duration = Duration::from_millis(1);

/// The most events taken at once.
pub const MAX_BURST: usize = 256;

/// The next events of `rx`, into `burst` (cleared first); 0 once the
/// channel is closed and drained.
pub async fn next(rx: &mut mpsc::Receiver<Envelope>, burst: &mut Vec<Envelope>) -> usize {
    burst.clear();
    if rx.is_empty() && !rx.is_closed() {
        tokio::time::sleep(GATHER).await;
    }
    rx.recv_many(burst, MAX_BURST).await
}

/// A transform with work of its own on a timer besides each event
/// (`rate_limit`'s summaries, `detect`'s suppressed findings).
pub(crate) trait Ticking {
    /// Handles one event (counted received already); counts what it sends.
    async fn event(
        &mut self,
        env: Envelope,
        out: &mut Fanout,
        metrics: &ComponentMetrics,
    ) -> Result<(), Closed>;

    /// The timer's work.
    async fn tick(&mut self, out: &mut Fanout, metrics: &ComponentMetrics) -> Result<(), Closed>;

    /// The last work once the input has ended: the timer's, unless said
    /// otherwise.
    async fn end(&mut self, out: &mut Fanout, metrics: &ComponentMetrics) -> Result<(), Closed> {
        self.tick(out, metrics).await
    }
}

/// Runs `t` over `rx` in bursts, with its timer every `period` (the first
/// after one period), until the input ends or every output is gone.
pub(crate) async fn run_ticking(
    mut t: impl Ticking,
    period: Duration,
    mut rx: mpsc::Receiver<Envelope>,
    mut out: Fanout,
    metrics: &ComponentMetrics,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut burst = Vec::with_capacity(MAX_BURST);
    loop {
        tokio::select! {
            n = next(&mut rx, &mut burst) => {
                if n == 0 {
                    break;
                }
                metrics.add_received(n as u64);
                for env in burst.drain(..) {
                    if t.event(env, &mut out, metrics).await.is_err() {
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                if t.tick(&mut out, metrics).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = t.end(&mut out, metrics).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::testing::env;

    #[tokio::test]
    async fn takes_what_waits_at_once_then_what_comes_then_ends() {
        let (tx, mut rx) = mpsc::channel(1024);
        for _ in 0..300 {
            tx.send(env()).await.unwrap();
        }
        let mut burst = Vec::new();
        assert_eq!(next(&mut rx, &mut burst).await, MAX_BURST);
        assert_eq!(next(&mut rx, &mut burst).await, 44);
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.send(env()).await.unwrap();
        });
        assert_eq!(next(&mut rx, &mut burst).await, 1, "an idle channel: waits");
        drop(tx);
        assert_eq!(next(&mut rx, &mut burst).await, 0, "closed and drained");
    }
}
