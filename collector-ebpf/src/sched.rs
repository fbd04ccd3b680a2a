//! The scheduler family (issue 18): how long each cgroup's tasks wait
//! runnable before they get a CPU, and who held the CPU meanwhile.
//!
//! A task starts waiting when it is woken (`sched_wakeup`,
//! `sched_wakeup_new`) or leaves the CPU still runnable (preempted, in
//! `sched_switch`); it stops when `sched_switch` gives it the CPU. Nothing
//! goes to the ring buffer: each wait is added to per-CPU counters of its
//! cgroup (count, sum, log2 histogram; and count and sum of delays, the
//! waits at least as long as user space's threshold) and charged to the
//! cgroup of the task that ran just before it, for as long as that task
//! held the CPU (the pair map: waits and delays apart, so a neighbour that
//! ends many short waits is not blamed for the long ones); each preemption
//! is charged to the cgroup that took the CPU. User space reads the maps every sampling interval. The idle task
//! is neither victim nor offender: a wait that ends after the CPU idled (a
//! CFS quota's throttling) blames no neighbour.
//!
//! Cheap, because it runs at every context switch: cgroups are known only
//! through `bpf_get_current_cgroup_id` (the current task's), so what a
//! switch learns about the incoming task is kept per CPU and settled at
//! the next switch on that CPU, when that task is the current one; waits
//! are stamped in place in an LRU map keyed by the task's address, which
//! the tracepoints pass (no read of the task, no delete, an insert only
//! for a task not seen before).

use crate::maps::handed_off;
use aya_ebpf::{
    helpers::gen,
    macros::{btf_tracepoint, map},
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use lumen_common::{PairStats, SchedConfig, SchedPair, SchedStats, SCHED_BUCKETS};

/// How to count, index 0, written by user space.
#[map]
static SCHED_CONFIG: Array<SchedConfig> = Array::with_max_entries(1, 0);

/// What the last switch on each CPU left to settle at the next one.
#[map]
static SCHED_CPU: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// One CPU's scheduler state between two switches.
#[repr(C)]
pub struct CpuState {
    /// When this CPU last switched tasks.
    last_switch: u64,
    /// How long the task now running waited before it got the CPU (0: it
    /// did not wait, or it is the idle task).
    wait_ns: u64,
    /// The cgroup of the task that held the CPU just before it (0: idle),
    /// and for how long it held it.
    offender: u64,
    held_ns: u64,
    /// The cgroup of the task it preempted (0: none).
    preempted: u64,
}

/// When each runnable task started waiting, by its `task_struct`'s
/// address (the tracepoints' arguments: no read of the task needed).
#[map]
static SCHED_WAITING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65536, 0);

/// Each cgroup's waits and preemptions, per CPU.
#[map]
static SCHED_CGROUPS: LruPerCpuHashMap<u64, SchedStats> =
    LruPerCpuHashMap::with_max_entries(4096, 0);

/// What each (victim, offender) pair of cgroups cost, per CPU.
#[map]
static SCHED_PAIRS: LruPerCpuHashMap<SchedPair, PairStats> =
    LruPerCpuHashMap::with_max_entries(8192, 0);

#[btf_tracepoint(function = "sched_wakeup")]
pub fn lumen_wakeup(ctx: BtfTracePointContext) -> i32 {
    woken(&ctx)
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn lumen_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    woken(&ctx)
}

#[inline(always)]
fn woken(ctx: &BtfTracePointContext) -> i32 {
    if handed_off() {
        return 0;
    }
    // TP_PROTO(struct task_struct *p); the idle task is never woken.
    // SAFETY: the tracepoint's first argument is the woken task; a helper
    // without arguments.
    let (task, now) = unsafe { (ctx.arg::<u64>(0), gen::bpf_ktime_get_ns()) };
    start_wait(task, now);
    0
}

/// Linux's `TASK_RUNNING`.
const TASK_RUNNING: u32 = 0;

#[btf_tracepoint(function = "sched_switch")]
pub fn lumen_switch(ctx: BtfTracePointContext) -> i32 {
    if handed_off() {
        return 0;
    }
    let Some(cpu) = SCHED_CPU.get_ptr_mut(0) else {
        return 0;
    };
    // TP_PROTO(bool preempt, struct task_struct *prev,
    //          struct task_struct *next, unsigned int prev_state)
    // (Linux 5.18+; user space loads this only where the BTF says so).
    // SAFETY: the arguments as the prototype has them.
    let (preempt, next, prev_state) = unsafe {
        (
            ctx.arg::<u64>(0) & 0xff != 0,
            ctx.arg::<u64>(2),
            ctx.arg::<u64>(3) as u32,
        )
    };
    // SAFETY: helpers without arguments. The tracepoint runs before the
    // switch: the current task is `prev`.
    let (now, prev_tid, cgroup) = unsafe {
        (
            gen::bpf_ktime_get_ns(),
            gen::bpf_get_current_pid_tgid() as u32,
            gen::bpf_get_current_cgroup_id(),
        )
    };
    // SAFETY: this CPU's slot; switches on one CPU do not nest.
    let cpu = unsafe { &mut *cpu };
    let held = if cpu.last_switch == 0 {
        0
    } else {
        now.saturating_sub(cpu.last_switch)
    };
    cpu.last_switch = now;
    if prev_tid != 0 {
        settle(cpu, cgroup);
    }
    cpu.wait_ns = 0;
    cpu.offender = 0;
    cpu.preempted = 0;
    // Idle (tid 0) never waits. A task that leaves runnable for idle (its
    // quota throttled it) is preempted by nobody: the idle task's switch
    // out settles nothing.
    if prev_tid != 0 && (preempt || prev_state == TASK_RUNNING) {
        // SAFETY: a helper without arguments.
        start_wait(unsafe { gen::bpf_get_current_task() }, now);
        cpu.preempted = cgroup;
    }
    if let Some(since) = SCHED_WAITING.get_ptr_mut(&next) {
        // SAFETY: a value of the map, stamped 0 once its wait is taken.
        unsafe {
            if *since != 0 {
                cpu.wait_ns = now.saturating_sub(*since).max(1);
                *since = 0;
                if prev_tid != 0 {
                    cpu.offender = cgroup;
                    cpu.held_ns = held;
                }
            }
        }
    }
    0
}

/// Counts what the switch that brought the current task (of `cgroup`) in
/// left pending: its wait, charged to the task before it; the task it
/// preempted, charged to it.
#[inline(always)]
fn settle(cpu: &CpuState, cgroup: u64) {
    let waited = cpu.wait_ns;
    if waited != 0 {
        let delay = match SCHED_CONFIG.get(0) {
            Some(c) => c.delay_ns != 0 && waited >= c.delay_ns,
            None => false,
        };
        if let Some(stats) = stats_of(cgroup) {
            // SAFETY: this CPU's slot; switches on one CPU do not nest.
            let stats = unsafe { &mut *stats };
            stats.waits += 1;
            stats.wait_ns += waited;
            if delay {
                stats.delays += 1;
                stats.delay_ns += waited;
            }
            if let Some(slot) = stats.hist.get_mut(bucket(waited)) {
                *slot += 1;
            }
        }
        if cpu.offender != 0 && cpu.offender != cgroup {
            if let Some(pair) = pair_of(cgroup, cpu.offender) {
                let held = if cpu.held_ns < waited {
                    cpu.held_ns
                } else {
                    waited
                };
                // SAFETY: this CPU's slot; switches on one CPU do not nest.
                let pair = unsafe { &mut *pair };
                pair.waits += 1;
                pair.wait_ns += held;
                if delay {
                    pair.delays += 1;
                    pair.delay_ns += held;
                }
            }
        }
    }
    if cpu.preempted != 0 && cpu.preempted != cgroup {
        if let Some(stats) = stats_of(cpu.preempted) {
            // SAFETY: as above.
            unsafe { (*stats).preempted += 1 };
        }
        if let Some(pair) = pair_of(cpu.preempted, cgroup) {
            // SAFETY: as above.
            unsafe { (*pair).preemptions += 1 };
        }
    }
}

/// Stamps when `task` started waiting: in place when the map has it.
#[inline(always)]
fn start_wait(task: u64, now: u64) {
    match SCHED_WAITING.get_ptr_mut(&task) {
        // SAFETY: a value of the map.
        Some(since) => unsafe { *since = now },
        None => {
            let _ = SCHED_WAITING.insert(&task, &now, 0);
        }
    }
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
