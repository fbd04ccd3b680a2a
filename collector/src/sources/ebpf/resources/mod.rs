//! Resource sampling (issue 18): every container's, pod's and the host's
//! CPU, memory, I/O and PID use, read from the cgroup files.

pub mod counters;
