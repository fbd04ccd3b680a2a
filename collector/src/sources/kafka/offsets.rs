//! Which offsets a consumer may commit: per partition, the messages read
//! in order, each done when its event was acknowledged by every sink (or
//! when it made no event: a poison message, dead-lettered). The committable
//! position is one past the last message of the done prefix — Kafka's
//! committed offset is the next one to read — so a later message's
//! acknowledgement never commits past an earlier one still in flight. An
//! event dropped on the way (a component stopped) keeps its partition's
//! position where it is: it is read again after a restart or rebalance.

use std::collections::VecDeque;

/// A topic partition.
pub type Partition = (String, i32);

#[derive(Debug, Default)]
struct Progress {
    /// Messages read and not yet behind the position: (offset, done).
    pending: VecDeque<(i64, bool)>,
    /// One past the last message of the done prefix (`None`: nothing
    /// done yet since assignment).
    position: Option<i64>,
    /// The position last committed.
    committed: Option<i64>,
    /// The last offset read.
    last_read: Option<i64>,
}

/// The consumer's partitions and their messages in flight. Partitions live
/// in slots (a revoked one's is reused), so tracking a message allocates
/// nothing.
#[derive(Debug, Default)]
pub struct Offsets {
    slots: Vec<Option<(Partition, Progress)>>,
    /// Each tracked event's slot and offset, by cookie.
    cookies: Cookies,
}

/// Tracked events by cookie. Cookies are handed out in increasing order and
/// acknowledged mostly in that order: a ring from the oldest cookie still
/// tracked, with holes where later ones are done, instead of a hash map.
#[derive(Debug, Default)]
struct Cookies {
    /// The cookie of the ring's first entry.
    base: u64,
    ring: VecDeque<Option<(usize, i64)>>,
}

impl Cookies {
    fn insert(&mut self, cookie: u64, at: (usize, i64)) {
        if self.ring.is_empty() {
            self.base = cookie;
        }
        let Some(index) = cookie.checked_sub(self.base) else {
            return; // older than every cookie tracked: not handed out here
        };
        // Cookies come one after another: the ring grows by one.
        let Ok(index) = usize::try_from(index) else {
            return;
        };
        if index >= self.ring.len() {
            self.ring.resize(index + 1, None);
        }
        self.ring[index] = Some(at);
    }

    fn remove(&mut self, cookie: u64) -> Option<(usize, i64)> {
        let index = usize::try_from(cookie.checked_sub(self.base)?).ok()?;
        let taken = self.ring.get_mut(index)?.take();
        self.trim();
        taken
    }

    /// Forgets the events of `slot`.
    fn forget_slot(&mut self, slot: usize) {
        for entry in &mut self.ring {
            if entry.is_some_and(|(s, _)| s == slot) {
                *entry = None;
            }
        }
        self.trim();
    }

    fn trim(&mut self) {
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base += 1;
        }
    }
}

impl Offsets {
    fn slot_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|((t, p), _)| *p == partition && t == topic)
        })
    }

    fn progress(&mut self, slot: usize) -> Option<&mut Progress> {
        self.slots.get_mut(slot)?.as_mut().map(|(_, p)| p)
    }

    /// Message `offset` of `partition` of `topic` was read; `cookie` names
    /// its event (`None`: no event, done at once).
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64, cookie: Option<u64>) {
        let slot = match self.slot_of(topic, partition) {
            Some(slot) => slot,
            None => {
                let entry = Some(((topic.to_owned(), partition), Progress::default()));
                match self.slots.iter().position(Option::is_none) {
                    Some(free) => {
                        self.slots[free] = entry;
                        free
                    }
                    None => {
                        self.slots.push(entry);
                        self.slots.len() - 1
                    }
                }
            }
        };
        let Some(p) = self.progress(slot) else {
            return;
        };
        let rewound = p.last_read.is_some_and(|last| offset <= last);
        if rewound {
            // The consumer went back (a reset, a re-fetch): what is in
            // flight of this partition comes again; forget it, so the
            // position never passes a message read again.
            p.pending.clear();
        }
        p.last_read = Some(offset);
        p.pending.push_back((offset, cookie.is_none()));
        if cookie.is_none() {
            Self::advance(p);
        }
        if rewound {
            self.cookies.forget_slot(slot);
        }
        if let Some(c) = cookie {
            self.cookies.insert(c, (slot, offset));
        }
    }

    /// The event `cookie` was acknowledged: `done` unless it was dropped on
    /// the way. Acknowledgements of partitions no longer assigned are
    /// forgotten.
    pub fn acknowledged(&mut self, cookie: u64, done: bool) {
        let Some((slot, offset)) = self.cookies.remove(cookie) else {
            return;
        };
        if !done {
            return;
        }
        let Some(p) = self.progress(slot) else {
            return;
        };
        // Messages are read in offset order: a binary search finds it.
        if let Ok(i) = p.pending.binary_search_by_key(&offset, |(o, _)| *o) {
            p.pending[i].1 = true;
        }
        Self::advance(p);
    }

    fn advance(p: &mut Progress) {
        while let Some(&(offset, true)) = p.pending.front() {
            p.pending.pop_front();
            // Never backwards (after a rewind, messages behind it come
            // again).
            p.position = Some(p.position.map_or(offset + 1, |at| at.max(offset + 1)));
        }
    }

    /// Positions that moved since they were last committed.
    pub fn to_commit(&self) -> Vec<(Partition, i64)> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|(tp, p)| {
                let at = p.position?;
                (p.committed != Some(at)).then(|| (tp.clone(), at))
            })
            .collect()
    }

    /// Records that these positions were committed.
    pub fn committed(&mut self, positions: &[(Partition, i64)]) {
        for ((topic, partition), at) in positions {
            if let Some(slot) = self.slot_of(topic, *partition) {
                if let Some(p) = self.progress(slot) {
                    p.committed = Some(*at);
                }
            }
        }
    }

    /// The position of `partition` (what a commit of it would say).
    pub fn position(&self, partition: &Partition) -> Option<i64> {
        let slot = self.slot_of(&partition.0, partition.1)?;
        self.slots[slot].as_ref()?.1.position
    }

    /// Messages of all partitions read and not yet behind their position.
    pub fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|(_, p)| p.pending.len())
            .sum()
    }

    /// Forgets `partition` (revoked): its events still in flight will be
    /// read again by its next owner.
    pub fn revoke(&mut self, partition: &Partition) {
        if let Some(slot) = self.slot_of(&partition.0, partition.1) {
            self.slots[slot] = None;
            self.cookies.forget_slot(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(n: i32) -> Partition {
        ("lumen".to_owned(), n)
    }

    #[test]
    fn a_later_acknowledgement_never_commits_past_an_earlier_one_in_flight() {
        let mut o = Offsets::default();
        for (offset, cookie) in [(10, 1), (11, 2), (12, 3)] {
            o.read("lumen", 0, offset, Some(cookie));
        }
        o.acknowledged(3, true);
        o.acknowledged(2, true);
        assert_eq!(o.position(&tp(0)), None, "10 is still in flight");
        assert!(o.to_commit().is_empty());
        o.acknowledged(1, true);
        assert_eq!(o.position(&tp(0)), Some(13));
        assert_eq!(o.to_commit(), [(tp(0), 13)]);
        o.committed(&[(tp(0), 13)]);
        assert!(o.to_commit().is_empty(), "nothing new");
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn a_partition_read_again_from_an_earlier_offset_never_commits_past_what_is_read_again() {
        let mut o = Offsets::default();
        o.read("lumen", 0, 100, Some(1));
        o.read("lumen", 0, 101, Some(2));
        // The consumer goes back to 90 with 100 and 101 in flight.
        o.read("lumen", 0, 90, Some(3));
        o.acknowledged(1, true);
        o.acknowledged(2, true);
        assert_eq!(o.position(&tp(0)), None, "90 is in flight: nothing past it");
        o.acknowledged(3, true);
        assert_eq!(o.position(&tp(0)), Some(91));
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_a_poison_message_passes() {
        let mut o = Offsets::default();
        o.read("lumen", 0, 0, Some(1));
        o.read("lumen", 1, 0, None); // poison: no event
        o.read("lumen", 1, 1, Some(2));
        assert_eq!(o.position(&tp(1)), Some(1), "the poison message is behind");
        o.acknowledged(2, true);
        assert_eq!(o.position(&tp(1)), Some(2));
        assert_eq!(o.position(&tp(0)), None, "partition 0 waits for its own");
    }

    #[test]
    fn a_dropped_event_holds_its_partition_and_a_revoked_partition_is_forgotten() {
        let mut o = Offsets::default();
        o.read("lumen", 0, 5, Some(1));
        o.read("lumen", 0, 6, Some(2));
        o.acknowledged(1, false);
        o.acknowledged(2, true);
        assert_eq!(o.position(&tp(0)), None, "5 was dropped: read again later");
        o.read("lumen", 1, 0, Some(3));
        o.revoke(&tp(1));
        o.acknowledged(3, true);
        assert_eq!(o.position(&tp(1)), None);
        assert!(o.to_commit().is_empty());
        assert_eq!(o.in_flight(), 2);
    }

    #[test]
    fn acknowledgements_in_any_order_leave_nothing_tracked() {
        let mut o = Offsets::default();
        for i in 0..1000u64 {
            o.read("lumen", (i % 3) as i32, (i / 3) as i64, Some(100 + i));
        }
        // Every other one first, then the rest backwards.
        for i in (0..1000u64).step_by(2) {
            o.acknowledged(100 + i, true);
        }
        for i in (0..500u64).rev() {
            o.acknowledged(101 + 2 * i, true);
        }
        assert_eq!(o.in_flight(), 0);
        assert!(o.cookies.ring.is_empty(), "{:?}", o.cookies);
        // Unknown and repeated cookies are ignored.
        o.acknowledged(5, true);
        o.acknowledged(100, true);
        o.read("lumen", 0, 334, Some(2000));
        o.acknowledged(2000, true);
        assert_eq!(o.position(&tp(0)), Some(335));
        assert!(o.cookies.ring.is_empty());
    }
}
