//! The scheduler family (issue 18): how long each cgroup's tasks wait
//! runnable before they get a CPU, and who held the CPU meanwhile.
//!
//! A task starts waiting when it is woken (`sched_wakeup`,
//! `sched_wakeup_new`) or leaves the CPU still runnable (preempted, in
//! `sched_switch`); it stops when `sched_switch` gives it the CPU. Nothing
//! goes to the ring buffer: each wait is added to per-CPU counters of its
//! cgroup (count, sum, log2 histogram) and charged to the cgroup of the
//! task that ran just before it, for as long as that task held the CPU
//! (the pair map); each preemption is charged to the cgroup that took the
//! CPU. User space reads the maps every sampling
//! interval. The idle task is neither victim nor offender: a wait that ends
//! after the CPU idled (a CFS quota's throttling) blames no neighbour.

use crate::maps::offsets;
use crate::task::{cgroup_kn_of, read_kernel};
use aya_ebpf::{
    helpers::gen,
    macros::{btf_tracepoint, map},
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use lumen_common::{KernelOffsets, PairStats, SchedPair, SchedStats, SCHED_BUCKETS};

/// When each CPU last switched tasks: how long the task leaving it held it.
#[map]
static SCHED_LAST_SWITCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// When each runnable task (by thread id) started waiting.
#[map]
static SCHED_WAITING: LruHashMap<u32, u64> = LruHashMap::with_max_entries(65536, 0);

/// Each cgroup's waits and preemptions, per CPU.
#[map]
static SCHED_CGROUPS: LruPerCpuHashMap<u64, SchedStats> =
    LruPerCpuHashMap::with_max_entries(4096, 0);

/// What each (victim, offender) pair of cgroups cost, per CPU.
#[map]
static SCHED_PAIRS: LruPerCpuHashMap<SchedPair, PairStats> =
    LruPerCpuHashMap::with_max_entries(8192, 0);

#[btf_tracepoint(function = "sched_wakeup")]
pub fn lumen_sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    woken(&ctx)
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn lumen_sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    woken(&ctx)
}

#[inline(always)]
fn woken(ctx: &BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    // TP_PROTO(struct task_struct *p)
    // SAFETY: the tracepoint's first argument is the woken task.
    let tid: u32 = unsafe { read_kernel(ctx.arg::<*const u8>(0), o.task_pid) };
    if tid != 0 {
        // SAFETY: a helper without arguments.
        let now = unsafe { gen::bpf_ktime_get_ns() };
        let _ = SCHED_WAITING.insert(&tid, &now, 0);
    }
    0
}

/// Linux's `TASK_RUNNING`.
const TASK_RUNNING: u32 = 0;

#[btf_tracepoint(function = "sched_switch")]
pub fn lumen_sched_switch(ctx: BtfTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    // TP_PROTO(bool preempt, struct task_struct *prev,
    //          struct task_struct *next, unsigned int prev_state)
    // (Linux 5.18+; user space loads this only where the BTF says so).
    // SAFETY: the arguments as the prototype has them.
    let (preempt, prev, next, prev_state) = unsafe {
        (
            ctx.arg::<u64>(0) & 0xff != 0,
            ctx.arg::<*const u8>(1),
            ctx.arg::<*const u8>(2),
            ctx.arg::<u64>(3) as u32,
        )
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { gen::bpf_ktime_get_ns() };
    // SAFETY: probe reads of the two tasks.
    let (prev_tid, next_tid): (u32, u32) =
        unsafe { (read_kernel(prev, o.task_pid), read_kernel(next, o.task_pid)) };
    // How long `prev` held this CPU: what it can have cost a waiting task.
    let held = match SCHED_LAST_SWITCH.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; programs on one CPU do not nest here.
        Some(last) => unsafe {
            let since = *last;
            *last = now;
            if since == 0 {
                0
            } else {
                now.saturating_sub(since)
            }
        },
        None => 0,
    };
    // The tracepoint runs before the switch: the current task is `prev`.
    // SAFETY: a helper without arguments.
    let prev_cgroup = unsafe { gen::bpf_get_current_cgroup_id() };
    let runnable = prev_tid != 0 && (preempt || prev_state == TASK_RUNNING);
    if runnable {
        let _ = SCHED_WAITING.insert(&prev_tid, &now, 0);
    }
    if next_tid == 0 {
        return 0;
    }
    let waited = match SCHED_WAITING.get_ptr(&next_tid) {
        // SAFETY: a value of the map, read once.
        Some(since) => now.saturating_sub(unsafe { *since }),
        None if runnable => 0,
        None => return 0,
    };
    // SAFETY: probe reads of the next task's cgroup.
    let next_cgroup = unsafe { cgroup_id_of(next, o) };
    if waited > 0 {
        let _ = SCHED_WAITING.remove(&next_tid);
        if let Some(stats) = stats_of(next_cgroup) {
            // SAFETY: this CPU's slot; programs on one CPU do not nest here.
            unsafe {
                (*stats).waits += 1;
                (*stats).wait_ns += waited;
                if let Some(slot) = (*stats).hist.get_mut(bucket(waited)) {
                    *slot += 1;
                }
            }
        }
        if prev_tid != 0 && prev_cgroup != next_cgroup {
            if let Some(pair) = pair_of(next_cgroup, prev_cgroup) {
                // SAFETY: as above.
                unsafe {
                    (*pair).waits += 1;
                    (*pair).wait_ns += if held < waited { held } else { waited };
                }
            }
        }
    }
    if runnable && prev_cgroup != next_cgroup {
        if let Some(stats) = stats_of(prev_cgroup) {
            // SAFETY: as above.
            unsafe { (*stats).preempted += 1 };
        }
        if let Some(pair) = pair_of(prev_cgroup, next_cgroup) {
            // SAFETY: as above.
            unsafe { (*pair).preemptions += 1 };
        }
    }
    0
}

/// The log2 histogram bucket of a wait of `ns`: the first `i` with the
/// wait under 2^i µs. A loop of compares, not `leading_zeros`: the
/// verifier must see the index bounded.
#[inline(always)]
fn bucket(ns: u64) -> usize {
    let us = ns / 1000;
    let mut i = 0;
    while i < SCHED_BUCKETS - 1 && (us >> i) != 0 {
        i += 1;
    }
    i
}

/// `task`'s cgroup id on the default hierarchy; 0 when unreadable.
#[inline(always)]
unsafe fn cgroup_id_of(task: *const u8, o: &KernelOffsets) -> u64 {
    // SAFETY: probe reads only.
    unsafe {
        match cgroup_kn_of(task, o) {
            0 => 0,
            kn => read_kernel(kn as *const u8, o.kernfs_id),
        }
    }
}

#[inline(always)]
fn stats_of(cgroup: u64) -> Option<*mut SchedStats> {
    if let Some(p) = SCHED_CGROUPS.get_ptr_mut(&cgroup) {
        return Some(p);
    }
    let _ = SCHED_CGROUPS.insert(&cgroup, &SchedStats::default(), 0);
    SCHED_CGROUPS.get_ptr_mut(&cgroup)
}

#[inline(always)]
fn pair_of(victim: u64, offender: u64) -> Option<*mut PairStats> {
    let key = SchedPair { victim, offender };
    if let Some(p) = SCHED_PAIRS.get_ptr_mut(&key) {
        return Some(p);
    }
    let _ = SCHED_PAIRS.insert(&key, &PairStats::default(), 0);
    SCHED_PAIRS.get_ptr_mut(&key)
}
