//! Fan-out of one component's output to every component that reads it.
//! Each downstream has a bounded channel; a full channel makes `send` wait,
//! which is how backpressure reaches the sources.

use lumen_sinks::Envelope;
use tokio::sync::mpsc;

/// Every downstream channel of one component.
#[derive(Debug, Default)]
pub struct Fanout {
    outputs: Vec<(String, mpsc::Sender<Envelope>)>,
}

/// Every downstream has stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl Fanout {
    pub fn add(&mut self, id: String, tx: mpsc::Sender<Envelope>) {
        self.outputs.push((id, tx));
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Sends a copy to each output (the last one gets the original). An
    /// output whose component stopped is removed; its copy's ack is dropped,
    /// so the source learns the event did not get everywhere.
    pub async fn send(&mut self, env: Envelope) -> Result<(), Closed> {
        let last = self.outputs.len().checked_sub(1).ok_or(Closed)?;
        let mut env = Some(env);
        let mut gone = Vec::new();
        for (i, (id, tx)) in self.outputs.iter().enumerate() {
            let copy = if i == last { env.take() } else { env.clone() };
            let Some(copy) = copy else { break };
            if tx.send(copy).await.is_err() {
                tracing::error!(output = %id, "downstream component stopped; no longer sending to it");
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            self.outputs.remove(i);
        }
        if self.outputs.is_empty() {
            return Err(Closed);
        }
        Ok(())
    }
}
