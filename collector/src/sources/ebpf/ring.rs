//! The reader of the programs' BPF ring buffer (`EVENTS`).
//!
//! Not aya's `RingBuf`: it caches the producer position starting from 0,
//! which holds only for a map nobody has read. A ring a predecessor read
//! (a restart's handoff) has both positions far from 0, and that reader
//! runs past the producer into records not written yet. This one takes
//! both positions from the map's pages, as the kernel lays them out: a
//! consumer page (read-write), a producer page, then the data pages mapped
//! twice in a row, so a record that wraps reads as one slice.

use aya::maps::MapData;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A record's header: its length, and these two flags.
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: usize = 8;

/// Why the ring buffer cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("the map's info: {0}")]
    Info(#[from] aya::maps::MapError),
    #[error("its size ({0} bytes) is not a power of two")]
    Size(u32),
    #[error("mapping its {what} pages: {source}")]
    Mmap {
        what: &'static str,
        source: std::io::Error,
    },
}

/// A shared mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(
        fd: RawFd,
        len: usize,
        prot: i32,
        offset: usize,
        what: &'static str,
    ) -> Result<Mapping, RingError> {
        // SAFETY: a fresh mapping of a BPF map's fd; the kernel checks the
        // length, offset and protection against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::Mmap {
                what,
                source: std::io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast()).ok_or(RingError::Mmap {
            what,
            source: std::io::Error::other("mmap returned null"),
        })?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the pages are shared with the kernel and read through atomics
// (positions, headers) or after the header's acquire (data).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// The consumer side of a BPF ring buffer.
pub struct Ring {
    map: MapData,
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    mask: usize,
    /// The consumer position this reader has reached.
    pos: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("size", &(self.mask + 1))
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Ring {
    pub fn new(map: MapData) -> Result<Ring, RingError> {
        let size = map.info()?.max_entries();
        if !size.is_power_of_two() {
            return Err(RingError::Size(size));
        }
        let size = size as usize;
        // SAFETY: no arguments beyond the name.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0, "consumer")?;
        let producer = Mapping::new(
            fd,
            page + 2 * size,
            libc::PROT_READ,
            page,
            "producer and data",
        )?;
        let mut ring = Ring {
            map,
            consumer,
            producer,
            page,
            mask: size - 1,
            pos: 0,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page starts with the position, page-aligned.
        unsafe { self.consumer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: the producer page starts with the position, page-aligned.
        unsafe { self.producer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    /// The data pages (twice the ring's size: mapped twice in a row).
    fn data(&self) -> &[u8] {
        // SAFETY: within the mapping; the kernel writes a record before it
        // clears the header's busy bit, read with acquire before the data.
        unsafe {
            std::slice::from_raw_parts(
                self.producer.ptr.as_ptr().add(self.page),
                self.producer.len - self.page,
            )
        }
    }

    /// The next record, consumed when the returned guard drops; `None`
    /// when the reader has caught up or the next one is still being
    /// written.
    pub fn next(&mut self) -> Option<Record<'_>> {
        loop {
            if self.pos == self.producer_pos().load(Ordering::Acquire) {
                return None;
            }
            let offset = self.pos & self.mask;
            let data = self.data();
            // SAFETY: 8-aligned (records are padded to 8 bytes) and in the
            // first copy of the data pages.
            let header = unsafe { &*(data.as_ptr().add(offset) as *const AtomicU32) }
                .load(Ordering::Acquire);
            if header & BUSY != 0 {
                return None;
            }
            let len = (header & !(BUSY | DISCARD)) as usize;
            if len > self.mask {
                // Only a corrupted ring says this; the kernel never writes it.
                tracing::error!(
                    len,
                    "ebpf source: ring buffer record longer than the ring; reading stops"
                );
                return None;
            }
            let step = (len + HEADER + 7) & !7;
            if header & DISCARD != 0 {
                self.advance(step);
                continue;
            }
            return Some(Record {
                start: offset + HEADER,
                len,
                step,
                ring: self,
            });
        }
    }

    fn advance(&mut self, step: usize) {
        self.pos = self.pos.wrapping_add(step);
        self.consumer_pos().store(self.pos, Ordering::Release);
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}

/// A record's bytes; consumed (its space given back to the kernel) on drop.
pub struct Record<'a> {
    ring: &'a mut Ring,
    start: usize,
    len: usize,
    step: usize,
}

impl std::ops::Deref for Record<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.ring.data()[self.start..self.start + self.len]
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        self.ring.advance(self.step);
    }
}
