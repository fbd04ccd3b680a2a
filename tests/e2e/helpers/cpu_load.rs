//! CPU load for the scheduler tests: `cpu_load spin SECS` keeps a CPU busy
//! for SECS seconds; `cpu_load tick SECS` wakes every 10 ms for SECS
//! seconds and works about 100 µs each time (a latency-sensitive service).
//!
//! Built by the e2e tests with `rustc` (std only, static): test input, not
//! part of Lumen.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut sink = 0u64;
    match mode {
        "spin" => {
            while Instant::now() < end {
                for i in 0..10_000u64 {
                    sink = sink.wrapping_mul(31).wrapping_add(i);
                }
            }
        }
        "tick" => {
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
                let work = Instant::now();
                while work.elapsed() < Duration::from_micros(100) {
                    sink = sink.wrapping_mul(31).wrapping_add(1);
                }
            }
        }
        _ => {
            eprintln!("usage: cpu_load spin|tick SECS");
            std::process::exit(2);
        }
    }
    std::hint::black_box(sink);
}
