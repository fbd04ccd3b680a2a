//! What flows between components: a shared event and its acknowledgement.

use crate::ack::Ack;
use lumen_schemas::Event;
use std::sync::Arc;

/// One event on its way through the topology. Cloning it for fan-out shares
/// the event and adds a copy to its acknowledgement.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub event: Arc<Event>,
    pub ack: Ack,
}

impl Envelope {
    pub fn new(event: Event, ack: Ack) -> Self {
        Envelope {
            event: Arc::new(event),
            ack,
        }
    }
}
