//! The disk buffer's reader: blocks read back in order and checked, events
//! handed to the sink, the sink's acknowledgements turned into the ledger's
//! position and into deleted segments.

use super::ledger::{Ledger, Position};
use super::segment::{self, BlockRead};
use super::Shared;
use crate::ack::{self, Ack, AckReceiver, AckSender, Acked, Status};
use crate::buffer::BufferMetrics;
use crate::Envelope;
use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records of one block handed to the sink.
struct BlockRef {
    segment: u64,
    offset: u64,
    first_seq: u64,
    count: u64,
}

enum Fill {
    /// Events are ready to send.
    Ready,
    /// Nothing more on disk yet.
    Wait,
    /// The writer is done (shutdown): stop handing out events.
    End,
}

pub(super) struct Reader {
    shared: Arc<Shared>,
    out: Option<mpsc::Sender<Envelope>>,
    acks_tx: Option<AckSender>,
    acks_rx: AckReceiver,
    ledger: Ledger,
    saved: Option<Position>,
    /// Next block to read.
    segment: u64,
    offset: u64,
    /// Records of the next block already acknowledged in an earlier run.
    skip: u32,
    file: Option<(u64, File)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    ready: VecDeque<Envelope>,
    blocks: VecDeque<BlockRef>,
    /// Acknowledged flags of records `base_seq..`.
    acked: VecDeque<bool>,
    base_seq: u64,
    next_seq: u64,
}

impl Reader {
    pub(super) fn new(
        shared: Arc<Shared>,
        out: mpsc::Sender<Envelope>,
        ledger: Ledger,
        start: Position,
    ) -> Self {
        let (acks_tx, acks_rx) = ack::channel();
        Reader {
            shared,
            out: Some(out),
            acks_tx: Some(acks_tx),
            acks_rx,
            ledger,
            saved: None,
            segment: start.segment,
            offset: start.offset,
            skip: start.skip,
            file: None,
            decompressor: None,
            ready: VecDeque::new(),
            blocks: VecDeque::new(),
            acked: VecDeque::new(),
            base_seq: 0,
            next_seq: 0,
        }
    }

    pub(super) async fn run(mut self) {
        self.decompressor = match zstd::bulk::Decompressor::new() {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(component = %self.shared.sink, error = %e, "disk buffer: cannot set up zstd; buffer stopped");
                return;
            }
        };
        loop {
            if self.ready.is_empty() {
                match self.fill() {
                    Ok(Fill::Ready) => continue,
                    Ok(Fill::End) => break,
                    Ok(Fill::Wait) => {}
                    Err((path, e)) => {
                        BufferMetrics::add(&self.shared.metrics.write_errors, 1);
                        tracing::error!(component = %self.shared.sink, path = %path.display(), error = %e, "disk buffer: read failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
                tokio::select! {
                    biased;
                    Some(a) = self.acks_rx.recv() => self.on_acks(a),
                    () = self.shared.data.notified() => {}
                }
                continue;
            }
            if self.shared.state().writer_done {
                break;
            }
            let Some(out) = self.out.clone() else { break };
            tokio::select! {
                biased;
                Some(a) = self.acks_rx.recv() => self.on_acks(a),
                // Woken to look at `writer_done` again.
                () = self.shared.data.notified() => {}
                permit = out.reserve() => match (permit, self.ready.pop_front()) {
                    (Ok(p), Some(env)) => p.send(env),
                    (Err(_), _) => break,
                    (Ok(_), None) => {}
                },
            }
        }
        // Shutdown: what the sink has not taken stays on disk for the next
        // start; what it has is acknowledged as it finishes.
        self.ready.clear();
        self.out = None;
        self.acks_tx = None;
        while let Some(a) = self.acks_rx.recv().await {
            self.on_acks(a);
        }
        if let Err(e) = self.ledger.sync() {
            tracing::error!(component = %self.shared.sink, error = %e, "disk buffer: cannot sync the ledger");
        }
        self.shared.metrics.report(&self.shared.sink);
    }

    /// Reads the next block into `ready`.
    fn fill(&mut self) -> Result<Fill, (std::path::PathBuf, std::io::Error)> {
        loop {
            let (end, sealed, next_segment) = {
                let state = self.shared.state();
                if state.writer_done {
                    return Ok(Fill::End);
                }
                match state.segments.get(&self.segment) {
                    Some(s) => (s.len, s.sealed, None),
                    None => {
                        let next = state.segments.range(self.segment + 1..).next();
                        match next {
                            Some((id, _)) => (0, true, Some(*id)),
                            None => return Ok(Fill::Wait),
                        }
                    }
                }
            };
            if let Some(id) = next_segment {
                self.move_to(id);
                continue;
            }
            if self.offset >= end {
                if sealed {
                    // Done with it. The writer's next segment has a higher
                    // id; moving on lets this one be deleted once acknowledged.
                    self.move_to(self.segment + 1);
                    self.advance();
                    continue;
                }
                return Ok(Fill::Wait);
            }
            let path = self.shared.segment_path(self.segment);
            if self.file.as_ref().map(|(id, _)| *id) != Some(self.segment) {
                let f = File::open(&path).map_err(|e| (path.clone(), e))?;
                self.file = Some((self.segment, f));
            }
            let (Some((_, file)), Some(d)) = (&self.file, &mut self.decompressor) else {
                return Ok(Fill::Wait);
            };
            match segment::read_block(file, self.offset, end, d).map_err(|e| (path.clone(), e))? {
                BlockRead::Good { raw, next, .. } => {
                    let offset = self.offset;
                    self.offset = next;
                    self.take_block(&raw, offset);
                    if !self.ready.is_empty() {
                        return Ok(Fill::Ready);
                    }
                }
                BlockRead::Torn if !sealed => return Ok(Fill::Wait),
                BlockRead::Torn => {
                    self.corrupted(&path, end, "block cut short at the end of the segment");
                    self.offset = end;
                }
                BlockRead::Corrupt(why) => {
                    let resume = segment::resync(file, self.offset, end, d)
                        .map_err(|e| (path.clone(), e))?
                        .unwrap_or(end);
                    self.corrupted(&path, resume, &why);
                    self.offset = resume;
                }
            }
        }
    }

    fn move_to(&mut self, segment: u64) {
        self.segment = segment;
        self.offset = segment::SEGMENT_HEADER_LEN;
        self.skip = 0;
        self.file = None;
    }

    /// Reports the bytes from the current offset to `resume` as lost.
    fn corrupted(&self, path: &std::path::Path, resume: u64, why: &str) {
        let bytes = resume.saturating_sub(self.offset);
        BufferMetrics::add(&self.shared.metrics.corrupted_bytes, bytes);
        tracing::error!(component = %self.shared.sink, path = %path.display(), offset = self.offset, skipped_bytes = bytes, reason = %why, "disk buffer: corrupted data skipped; the events in it are lost, the ones after it are delivered");
    }

    /// Decodes a block's records; each becomes an event for the sink, except
    /// the ones an earlier run already had acknowledged.
    fn take_block(&mut self, raw: &[u8], offset: u64) {
        let Some(acks_tx) = &self.acks_tx else { return };
        let first_seq = self.next_seq;
        let mut bad = 0u64;
        for record in segment::records(raw) {
            let event = record
                .and_then(|bytes| lumen_schemas::codec::decode(bytes).map_err(|e| e.to_string()));
            let event = match event {
                Ok(e) => e,
                Err(why) => {
                    if bad == 0 {
                        tracing::error!(component = %self.shared.sink, path = %self.shared.segment_path(self.segment).display(), offset, reason = %why, "disk buffer: record cannot be read back; skipped");
                    }
                    bad += 1;
                    continue;
                }
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            if self.skip > 0 {
                self.skip -= 1;
                self.acked.push_back(true);
                continue;
            }
            self.acked.push_back(false);
            self.ready
                .push_back(Envelope::new(event, Ack::new(acks_tx.node(seq))));
        }
        BufferMetrics::add(&self.shared.metrics.corrupted_records, bad);
        self.skip = 0;
        self.blocks.push_back(BlockRef {
            segment: self.segment,
            offset,
            first_seq,
            count: self.next_seq - first_seq,
        });
        self.advance();
    }

    fn on_acks(&mut self, first: Acked) {
        let mut next = Some(first);
        let mut released = 0u64;
        while let Some(a) = next {
            if a.status == Status::Dropped {
                // The sink stopped before handling it: it stays on disk.
                tracing::debug!(component = %self.shared.sink, "disk buffer: event not handled by the sink; kept for the next start");
            } else if let Some(slot) = a
                .cookie
                .checked_sub(self.base_seq)
                .and_then(|i| self.acked.get_mut(i as usize))
            {
                *slot = true;
                released += 1;
            }
            next = self.acks_rx.try_recv().ok();
        }
        BufferMetrics::add(&self.shared.metrics.events_out, released);
        self.advance();
    }

    /// Moves the acknowledged frontier, saves it, deletes what is behind it.
    fn advance(&mut self) {
        while self.acked.front() == Some(&true) {
            self.acked.pop_front();
            self.base_seq += 1;
        }
        while self
            .blocks
            .front()
            .is_some_and(|b| b.first_seq + b.count <= self.base_seq)
        {
            self.blocks.pop_front();
        }
        let position = match self.blocks.front() {
            Some(b) => Position {
                segment: b.segment,
                offset: b.offset,
                skip: (self.base_seq - b.first_seq) as u32,
            },
            None => Position {
                segment: self.segment,
                offset: self.offset,
                skip: self.skip,
            },
        };
        if self.saved == Some(position) {
            return;
        }
        if let Err(e) = self.ledger.save(position) {
            BufferMetrics::add(&self.shared.metrics.write_errors, 1);
            tracing::error!(component = %self.shared.sink, error = %e, "disk buffer: cannot save the acknowledgement ledger; events may be sent again after a restart");
            return;
        }
        self.saved = Some(position);
        self.delete_before(position.segment);
    }

    /// Deletes sealed segments wholly behind the acknowledged frontier.
    fn delete_before(&mut self, segment: u64) {
        let mut freed = false;
        let mut state = self.shared.state();
        let done: Vec<u64> = state
            .segments
            .range(..segment)
            .filter(|(_, s)| s.sealed)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let path = self.shared.segment_path(id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::error!(component = %self.shared.sink, path = %path.display(), error = %e, "disk buffer: cannot delete an acknowledged segment");
                    continue;
                }
            }
            if let Some(s) = state.segments.remove(&id) {
                state.bytes = state.bytes.saturating_sub(s.len);
                freed = true;
            }
        }
        self.shared.set_bytes(&state);
        drop(state);
        if freed {
            self.shared.space.notify_one();
        }
    }
}
