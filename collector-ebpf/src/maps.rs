//! The maps the programs share with user space and with each other, and
//! the small helpers over them: whether a task is in scope, how a record is
//! submitted, how a loss is counted, where the offsets are.

use crate::task::{comm_of, current_task, field, ns_inum};
use aya_ebpf::{
    helpers::gen,
    macros::map,
    maps::{ring_buf::RingBufEntry, Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use lumen_common::{
    drop_index, CgroupNames, CgroupNamesRecord, FileRecord, Handoff, KernelOffsets, Pending,
    PrefixKey, ProcFilter, RingConfig, EXCLUDED_COMMS, PREFIX_MAX, PREFIX_SLOTS,
};

/// Records for user space; user space sizes it (`ring_buffer_bytes`).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(32 * 1024 * 1024, 0);

/// Records lost because the ring buffer was full, per CPU, per kind.
#[map]
pub(crate) static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop_index::COUNT, 0);

/// Which tasks are reported at all, index 0, written by user space.
#[map]
pub(crate) static FILTER: Array<ProcFilter> = Array::with_max_entries(1, 0);

/// True when the current task is out of scope: on the host while only
/// containers are watched, or (when `by_comm`) named like an excluded comm.
#[inline(always)]
pub(crate) fn filtered_out(o: &KernelOffsets, by_comm: bool) -> bool {
    let Some(f) = FILTER.get(0) else { return false };
    if f.containers_only != 0 {
        // SAFETY: BTF-typed loads.
        let mnt_ns = unsafe {
            let nsproxy: *const u8 = field(current_task(), o.task_nsproxy);
            ns_inum(nsproxy, o.nsproxy_mnt_ns, o.mnt_ns_inum)
        };
        if mnt_ns == f.host_mnt_ns {
            return true;
        }
    }
    if by_comm && f.comm_count > 0 {
        // SAFETY: the current task, BTF-typed.
        let comm = unsafe { comm_of(current_task(), o) };
        for i in 0..EXCLUDED_COMMS {
            if i as u32 >= f.comm_count {
                break;
            }
            if f.comms[i] == comm {
                return true;
            }
        }
    }
    false
}

/// How records wake the reader, index 0, written by user space.
#[map]
pub(crate) static RING: Array<RingConfig> = Array::with_max_entries(1, 0);

pub(crate) const BPF_RB_NO_WAKEUP: u64 = 1;
pub(crate) const BPF_RB_FORCE_WAKEUP: u64 = 2;
pub(crate) const BPF_RB_AVAIL_DATA: u64 = 0;

/// Submits a record: see [`RingConfig`]. Waking the reader per record
/// costs user space far more than reading a batch, and a wakeup costs the
/// submitting task too (an irq_work self-IPI: a trap to the hypervisor in a
/// VM). So the reader is woken only when this record carries the waiting
/// bytes across a multiple of the threshold: once per `wakeup_bytes` even
/// while the reader lags, never per record. Two CPUs submitting at once may
/// both miss a crossing; the next one wakes, and the reader's timer drains
/// meanwhile.
#[inline(always)]
pub(crate) fn submit<T>(entry: RingBufEntry<T>) {
    entry.submit(submit_flags(core::mem::size_of::<T>() as u64));
}

/// The wakeup flags for a record of `size` bytes: see [`submit`].
#[inline(always)]
pub(crate) fn submit_flags(size: u64) -> u64 {
    let threshold = match RING.get(0) {
        Some(r) if r.wakeup_bytes != 0 => u64::from(r.wakeup_bytes),
        _ => return 0,
    };
    // Reserved space counts as waiting: this record is in `waiting`.
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    if waiting / threshold != waiting.saturating_sub(size + RINGBUF_HEADER) / threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// The ring buffer's per-record header (length and flags).
const RINGBUF_HEADER: u64 = 8;

#[inline(always)]
pub(crate) fn count_drop(index: u32) {
    if let Some(counter) = DROPS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}

/// Whether this restart's handoff ran out: see [`Handoff`]. Every
/// program asks first (through [`offsets`]): programs a stopped Lumen left
/// attached record for its successor until the deadline, nothing after.
#[map]
pub(crate) static HANDOFF: Array<Handoff> = Array::with_max_entries(1, 0);

#[inline(always)]
pub(crate) fn handed_off() -> bool {
    match HANDOFF.get(0) {
        // SAFETY: a helper without arguments.
        Some(h) if h.deadline_ns != 0 => unsafe { gen::bpf_ktime_get_ns() > h.deadline_ns },
        _ => false,
    }
}

/// The offsets user space set (`None` in an object loaded without them,
/// as for the map tests), and `None` when the handoff ran out.
#[inline(always)]
pub(crate) fn offsets() -> Option<&'static KernelOffsets> {
    if handed_off() {
        return None;
    }
    // The offsets' address goes through the stack so that LLVM cannot fold
    // the zeros of the object file into the code: the loads must stay
    // loads, for the verifier to read the values user space set.
    let at = &raw const OFFSETS;
    // SAFETY: a local's address; the static lives as long as the program.
    let o = unsafe { &*core::ptr::read_volatile(&at) };
    if o.ready != 0 {
        Some(o)
    } else {
        None
    }
}

/// Kernel structure offsets, set by user space before the programs load
/// (`.rodata`, frozen): the verifier knows every value, so a program can
/// load a BTF-typed pointer's field at one directly (see `task::field`).
#[no_mangle]
static OFFSETS: KernelOffsets = KernelOffsets::ZERO;

/// Syscalls between entry and exit: arguments and credentials at entry.
#[map]
pub(crate) static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(16384, 0);

/// Cgroup names by cgroup key (`RecordHeader::cgroup_key`), filled by the
/// programs on an event's first sight of its cgroup, when they send the
/// names to user space (ids are never reused, so an entry cannot go stale,
/// only be evicted and walked and sent again); user space reads an entry
/// here when it missed that record. 4096 cgroups, 1.5 MiB.
#[map]
pub(crate) static CGROUP_NAMES: LruHashMap<u64, CgroupNames> =
    LruHashMap::with_max_entries(4096, 0);

/// Per-CPU scratch where a cgroup's names record is built.
#[map]
pub(crate) static NAMES_SCRATCH: PerCpuArray<CgroupNamesRecord> =
    PerCpuArray::with_max_entries(1, 0);

/// Path prefixes, longest match first: the value says whether a path under
/// it is excluded (nothing reported) or sensitive (reads reported). One
/// lookup per call, however many prefixes: a loop over them made each file
/// entry program cost the verifier 60 – 260 ms at start.
#[map]
pub(crate) static PREFIXES: LpmTrie<[u8; PREFIX_MAX], u32> =
    LpmTrie::with_max_entries(PREFIX_SLOTS, 0);

/// Per-CPU scratch for the caller's path string at syscall entry, laid out
/// as a `PREFIXES` key.
#[map]
pub(crate) static SCRATCH: PerCpuArray<PrefixKey> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch where a file record is built: only its used bytes go to
/// the ring buffer (see `file::record_len`).
#[map]
pub(crate) static FILE_SCRATCH: PerCpuArray<FileRecord> = PerCpuArray::with_max_entries(1, 0);
