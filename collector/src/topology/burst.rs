//! How the transforms (`filter`, `redact`, `rate_limit`) read their input: in bursts,
//! and without parking on an empty channel while events come at a high
//! rate. A receiver parked on the channel is woken by every send — a
//! cross-thread wakeup per event at full rate, which costs more than most
//! transforms' work on the event. Instead, a transform that finds its
//! channel empty lets events gather for [`GATHER`] (a timer, which sends do
//! not touch), then takes all that waits at once (one release of the
//! channel's permits for the senders).

use lumen_sinks::Envelope;
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
