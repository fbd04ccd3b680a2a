//! Kernel overhead of the ebpf source: the storms of the shared
//! benchmark's `storm.c` (exec, open = creat+write, wopen, connect) plus a
//! read-only open storm (filtered in the kernel) and a syscall nothing
//! watches, each run in a process of its own (this binary, `--storm`)
//! without Lumen and with Lumen attached, alternately, in one run; the
//! slowdown is the ratio of the median times. Also per storm: its CPU time
//! with Lumen against without (what the programs cost it) and how long it
//! waited for a CPU (what Lumen's user space took from it), the events
//! Lumen delivered, how many of the storm's own events it did not deliver
//! (lost), and Lumen's user-space CPU; how long Lumen takes
//! from start to its first event; a context-switch storm that prices
//! the scheduler programs per switch; and how long a restart leaves the
//! kernel unwatched, without and with `pin_path`. Needs root. Run: `cargo bench -p
//! lumen --bench kernel_overhead [-- word…]` (words pick storms by name);
//! `LUMEN_BENCH_BIN=<path>` measures another lumen binary;
//! `LUMEN_BENCH_SOURCE='key = value'` adds ebpf source settings;
//! `LUMEN_BENCH_ROUNDS=<n>` (default 5) sets the rounds per storm;
//! `LUMEN_BENCH_OUT_DIR=<dir>` puts Lumen's output there.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

/// The lumen under test: this build's, or `LUMEN_BENCH_BIN` (to compare
/// two builds on the same storms).
fn lumen_binary() -> std::path::PathBuf {
    std::env::var_os("LUMEN_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_lumen").into())
}

struct Storm {
    name: &'static str,
    ops: usize,
    /// Runs the storm; returns what every line of one of its events holds.
    run: fn(usize, &StormFiles) -> Vec<String>,
    /// Events Lumen reports per op (0: none expected).
    events_per_op: usize,
}

/// Where the storms' files are: the bench's temporary directory, and the
/// file `wopen` opens, directly in /tmp as storm.c's (`/tmp/storm-w-<pid>`
/// there): the kernel walks a path a component at a time, so a deeper file
/// costs more per open.
struct StormFiles {
    dir: std::path::PathBuf,
    wopen: std::path::PathBuf,
}

/// One run of a storm, as its own process measured it.
struct Timed {
    /// Seconds the storm's loop took.
    wall: f64,
    /// CPU seconds of the storm's process and of the children it waited for.
    cpu: f64,
    /// Seconds the storm's main thread was runnable but waiting for a CPU.
    wait: f64,
    /// What every line of one of its events holds.
    markers: Vec<String>,
}

/// Runs a storm in a process of its own, as storm.c runs: a small process
/// started for the storm, not this one (Lumen's parent, which has been
/// spawning processes to see Lumen's first event). Run in this process, the
/// same loop spent as much CPU but waited longer for one: 2.3 – 2.5× against
/// 1.9 – 2.0× for `wopen` (see docs/PERFORMANCE.md).
fn run_storm(index: usize, storm: &Storm, files: &StormFiles) -> Timed {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let output = Command::new(exe)
        .arg("--storm")
        .arg(index.to_string())
        .arg(storm.ops.to_string())
        .arg(&files.dir)
        .arg(&files.wopen)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("storm process: {e}"));
    assert!(output.status.success(), "storm {} failed", storm.name);
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let figures: Vec<f64> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| n.parse::<f64>().unwrap_or_else(|e| panic!("{n}: {e}")) / 1e9)
        .collect();
    assert_eq!(figures.len(), 3, "storm output: {text}");
    Timed {
        wall: figures[0],
        cpu: figures[1],
        wait: figures[2],
        markers: lines.map(str::to_owned).collect(),
    }
}

/// The storm process: `--storm <index> <ops> <dir> <wopen file>`; prints
/// the loop's wall time, CPU time and run-queue wait (ns), then the markers,
/// one per line.
fn storm_process(args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .unwrap_or_else(|| panic!("--storm: argument {i} missing"))
    };
    let index: usize = arg(0).parse().unwrap_or_else(|e| panic!("index: {e}"));
    let ops: usize = arg(1).parse().unwrap_or_else(|e| panic!("ops: {e}"));
    let files = StormFiles {
        dir: arg(2).into(),
        wopen: arg(3).into(),
    };
    let storm = &storms()[index];
    let (cpu, wait) = (cpu_ns(), run_delay_ns());
    let t = Instant::now();
    let markers = (storm.run)(ops, &files);
    let wall = t.elapsed().as_nanos();
    println!("{wall} {} {}", cpu_ns() - cpu, run_delay_ns() - wait);
    for marker in markers {
        println!("{marker}");
    }
}

/// CPU time of this process and of the children it waited for, ns.
fn cpu_ns() -> u64 {
    let usage = |who| {
        // SAFETY: a zeroed rusage for getrusage to fill.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid `who` and out pointer.
        unsafe { libc::getrusage(who, &mut u) };
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        ns(u.ru_utime) + ns(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

/// How long this thread has been runnable without a CPU, ns (schedstat).
fn run_delay_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("/proc/thread-self/schedstat: no run delay"))
}

/// storm.c `exec`: fork, exec /bin/true, wait — with the same calls
/// (`Command` adds a pipe, descriptor and signal set-up per spawn).
fn exec_storm(n: usize, _files: &StormFiles) -> Vec<String> {
    for _ in 0..n {
        // SAFETY: the child only calls execl and _exit (async-signal-safe);
        // the storm's process has this one thread.
        unsafe {
            let child = libc::fork();
            if child == 0 {
                libc::execl(
                    c"/bin/true".as_ptr(),
                    c"true".as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                );
                libc::_exit(127);
            }
            assert!(child > 0, "fork failed");
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            assert_eq!(status, 0, "/bin/true exited with {status}");
        }
    }
    vec!["\"Launch\"".into(), "\"/bin/true\"".into()]
}

fn getppid_storm(n: usize, _files: &StormFiles) -> Vec<String> {
    for _ in 0..n {
        std::hint::black_box(std::os::unix::process::parent_id());
    }
    vec![]
}

fn open_read_storm(n: usize, files: &StormFiles) -> Vec<String> {
    let path = files.dir.join("read.txt");
    for _ in 0..n {
        drop(std::fs::File::open(&path).map(drop));
    }
    vec![]
}

/// storm.c `open`: create (truncating) for writing, write 64 bytes, close.
fn creat_write_storm(n: usize, files: &StormFiles) -> Vec<String> {
    use std::io::Write;
    let path = files.dir.join("creat.txt");
    for _ in 0..n {
        if let Ok(mut f) = std::fs::File::create(&path) {
            let _ = f.write_all(&[b'x'; 64]);
        }
    }
    let _ = std::fs::remove_file(&path);
    vec![format!("\"{}\"", path.display())]
}

/// storm.c `wopen`: open an existing file for writing, close: the cheapest
/// event Lumen reports. The file is where storm.c's is, directly in /tmp
/// (`/tmp/storm-w-<pid>` there): the kernel walks its path a component at
/// a time, so a deeper file costs more per open.
fn wopen_storm(n: usize, files: &StormFiles) -> Vec<String> {
    let path = &files.wopen;
    for _ in 0..n {
        drop(std::fs::OpenOptions::new().write(true).open(path).map(drop));
    }
    vec![format!("\"{}\"", path.display())]
}

/// storm.c `connect`: loopback connections that a thread of the storm
/// accepts and closes (backlog 4096 as storm.c's: a full accept queue drops
/// SYNs, and a 1 s SYN retransmit swings the time). The client closes with
/// RST (SO_LINGER 0) so that rounds do not run out of ports in TIME_WAIT.
fn connect_storm(n: usize, _files: &StormFiles) -> Vec<String> {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    // SAFETY: re-listening a bound socket only raises its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let acceptor = std::thread::spawn(move || {
        for _ in 0..n {
            if let Ok((s, _)) = listener.accept() {
                drop(s);
            }
        }
    });
    for _ in 0..n {
        if let Ok(client) = TcpStream::connect(addr) {
            reset_on_close(&client);
        }
    }
    let _ = acceptor.join();
    // The connects and the accepts: this process's network events (the
    // accepted socket's local port reads 0 once the client's RST is in).
    vec![
        "\"Network Activity\"".into(),
        format!("\"pid\":{},", std::process::id()),
    ]
}

/// Two threads pinned to CPU 0 pass a byte back and forth through two
/// pipes: every round trip is two wakeups and two context switches on one
/// CPU, what the scheduler programs trace.
fn switch_storm(n: usize, _dir: &std::path::Path) {
    let pipe = || {
        let mut fds = [0; 2];
        // SAFETY: a two-int out array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        (fds[0], fds[1])
    };
    let (ping_r, ping_w) = pipe();
    let (pong_r, pong_w) = pipe();
    let pin = || {
        // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    };
    let pass = |from: i32, to: i32| {
        let mut byte = [0u8; 1];
        // SAFETY: one byte into and out of a valid buffer.
        unsafe {
            libc::read(from, byte.as_mut_ptr().cast(), 1);
            libc::write(to, byte.as_ptr().cast(), 1);
        }
    };
    let echo = std::thread::spawn(move || {
        pin();
        for _ in 0..n {
            pass(ping_r, pong_w);
        }
    });
    let main = std::thread::spawn(move || {
        pin();
        for _ in 0..n {
            // SAFETY: one byte from a valid buffer.
            unsafe { libc::write(ping_w, [1u8].as_ptr().cast(), 1) };
            let mut byte = [0u8; 1];
            // SAFETY: one byte into a valid buffer.
            unsafe { libc::read(pong_r, byte.as_mut_ptr().cast(), 1) };
        }
    });
    let _ = main.join();
    let _ = echo.join();
    for fd in [ping_r, ping_w, pong_r, pong_w] {
        // SAFETY: fds this function opened.
        unsafe { libc::close(fd) };
    }
}

/// The scheduler programs' cost per context switch: the switch storm bare,
/// with Lumen's scheduler tracing off and on (rounds interleaved).
fn switch_cost(dir: &std::path::Path, out: &std::path::Path) {
    const TRIPS: usize = 400_000;
    const SWITCH_ROUNDS: usize = 7;
    let configs = [("scheduler off", false), ("scheduler on", true)];
    let (mut bare, mut timed) = (vec![], vec![vec![], vec![]]);
    let time = || {
        let t = Instant::now();
        switch_storm(TRIPS, dir);
        t.elapsed().as_secs_f64()
    };
    for _ in 0..SWITCH_ROUNDS {
        bare.push(time());
        for (i, (_, scheduler)) in configs.iter().enumerate() {
            let config = dir.join(format!("switch-{i}.toml"));
            std::fs::write(&config, lumen_config(out, *scheduler))
                .unwrap_or_else(|e| panic!("{e}"));
            let lumen = Lumen::start(&config, out);
            timed[i].push(time());
            lumen.stop();
        }
    }
    let switches = (2 * TRIPS) as f64;
    let bare = median(bare);
    println!();
    println!("context-switch storm: {TRIPS} pipe round trips between two threads pinned to one CPU ({switches} switches), {SWITCH_ROUNDS} rounds, medians");
    println!();
    println!("| | time | per switch | added per switch |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| without Lumen | {bare:.3} s | {:.0} ns | – |",
        bare / switches * 1e9
    );
    for (i, (name, _)) in configs.iter().enumerate() {
        let t = median(timed[i].clone());
        println!(
            "| Lumen, {name} | {t:.3} s | {:.0} ns | {:+.0} ns |",
            t / switches * 1e9,
            (t - bare) / switches * 1e9
        );
    }
    // The kernel's own account of the programs' run time (bpf_stats, on
    // for one more storm only: counting adds its own clock reads).
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .unwrap_or_else(|e| panic!("enabling BPF run-time stats: {e}"));
    let config = dir.join("switch-1.toml");
    let lumen = Lumen::start(&config, out);
    let before = program_costs();
    switch_storm(TRIPS, dir);
    let after = program_costs();
    lumen.stop();
    drop(stats);
    println!();
    println!("| program, during one storm (bpf_stats) | runs | ns per run |");
    println!("| --- | --- | --- |");
    for (name, runs, ns) in &after {
        let (runs0, ns0) = before
            .iter()
            .find(|b| &b.0 == name)
            .map_or((0, 0), |b| (b.1, b.2));
        let runs = runs - runs0;
        if runs > 0 {
            println!(
                "| {name} | {runs} | {:.0} |",
                (ns - ns0) as f64 / runs as f64
            );
        }
    }
}

/// Each loaded scheduler program's runs and run time so far, ns (the
/// kernel counts them while BPF run-time stats are on).
fn program_costs() -> Vec<(String, u64, u128)> {
    aya::programs::loaded_programs()
        .flatten()
        .filter_map(|p| {
            let name = p.name_as_str()?.to_owned();
            ["lumen_switch", "lumen_wakeup"]
                .contains(&name.as_str())
                .then(|| (name, p.run_count(), p.run_time().as_nanos()))
        })
        .collect()
}

fn lumen_config(out: &std::path::Path, scheduler: bool) -> String {
    // `LUMEN_BENCH_SOURCE="key = value"`: more ebpf source settings, to
    // price one (`cgroup_hierarchy = "unified"` against the default).
    let extra = std::env::var("LUMEN_BENCH_SOURCE").unwrap_or_default();
    format!(
        "[sources.kernel]\ntype = \"ebpf\"\nresources.scheduler = {scheduler}\n{extra}\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"kernel\"]\nschema = \"ocsf\"\npath = \"{}\"\nmax_bytes = 0\n",
        out.display()
    )
}

/// SO_LINGER 0: close sends RST and leaves no TIME_WAIT socket behind, so
/// rounds do not slow down on a port space full of them.
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The lines of `path` that hold every one of `markers`.
fn matching(path: &std::path::Path, markers: &[String]) -> usize {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter(|l| markers.iter().all(|m| l.contains(m.as_str())))
                .count()
        })
        .unwrap_or(0)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Lumen {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Lumen {
    /// Starts lumen and waits until events flow (the programs are attached).
    fn start(config: &std::path::Path, out: &std::path::Path) -> Lumen {
        Lumen::start_timed(config, out).0
    }

    /// Starts lumen; returns it once its first event is written, and how
    /// long that took (a short-lived process every few milliseconds gives
    /// it something to see).
    fn start_timed(config: &std::path::Path, out: &std::path::Path) -> (Lumen, f64) {
        let _ = std::fs::remove_file(out);
        let started = Instant::now();
        let child = Command::new(lumen_binary())
            .args(["run", "--config"])
            .arg(config)
            .env("LUMEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("lumen: {e}"));
        let nonempty = || std::fs::metadata(out).is_ok_and(|m| m.len() > 0);
        while !nonempty() && started.elapsed() < Duration::from_secs(60) {
            let _ = Command::new("/bin/true").status();
            std::thread::sleep(Duration::from_millis(5));
        }
        let attach = started.elapsed().as_secs_f64();
        (
            Lumen {
                child,
                out: out.to_owned(),
            },
            attach,
        )
    }

    fn stop(mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn storms() -> [Storm; 6] {
    [
        Storm {
            name: "exec (fork+exec+wait /bin/true)",
            ops: 2_000,
            run: exec_storm,
            events_per_op: 1,
        },
        Storm {
            name: "open (creat+write+close)",
            ops: 10_000,
            run: creat_write_storm,
            events_per_op: 1,
        },
        Storm {
            name: "wopen (open for write+close, reported)",
            ops: 50_000,
            run: wopen_storm,
            events_per_op: 1,
        },
        Storm {
            name: "connect (TCP connect+accept on loopback)",
            ops: 10_000,
            run: connect_storm,
            events_per_op: 2,
        },
        Storm {
            name: "open read-only (filtered in the kernel)",
            ops: 200_000,
            run: open_read_storm,
            events_per_op: 0,
        },
        Storm {
            name: "getppid (a syscall nothing watches)",
            ops: 2_000_000,
            run: getppid_storm,
            events_per_op: 0,
        },
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--storm") {
        storm_process(&args[2..]);
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("kernel_overhead needs root (it loads eBPF programs)");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::write(dir.path().join("read.txt"), b"r").unwrap_or_else(|e| panic!("{e}"));
    let wopen = tempfile::Builder::new()
        .prefix("lumen-bench-wopen-")
        .tempfile_in("/tmp")
        .unwrap_or_else(|e| panic!("wopen file: {e}"));
    let files = StormFiles {
        dir: dir.path().to_owned(),
        wopen: wopen.path().to_owned(),
    };
    // `LUMEN_BENCH_OUT_DIR=/dev/shm`: Lumen's output on another file
    // system than the storms' files (by default both are on /tmp's).
    let out_dir = std::env::var_os("LUMEN_BENCH_OUT_DIR")
        .map(|d| tempfile::tempdir_in(d).unwrap_or_else(|e| panic!("LUMEN_BENCH_OUT_DIR: {e}")));
    let out = out_dir
        .as_ref()
        .map_or(dir.path(), |d| d.path())
        .join("events.ndjson");
    let config = dir.path().join("lumen.toml");
    std::fs::write(&config, lumen_config(&out, true)).unwrap_or_else(|e| panic!("{e}"));
    let rounds: usize = std::env::var("LUMEN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    println!("method: each round runs the storm, in a process of its own, once without Lumen and once with Lumen attached (order alternating), {rounds} rounds, medians; storm CPU = the storm's CPU time with Lumen against without; waiting = the storm's time runnable without a CPU, with Lumen; lost = the storm's events Lumen did not deliver");
    println!();
    println!("| storm | ops | without Lumen | with Lumen | slowdown | storm CPU | waiting | events delivered/s | lost | Lumen CPU at 100k events/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // `cargo bench --bench kernel_overhead -- connect`: only storms whose
    // name contains one of the words given (cargo adds `--bench` itself).
    let only: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    let mut attach_times = vec![];
    for (index, storm) in storms()
        .iter()
        .enumerate()
        .filter(|(_, s)| only.is_empty() || only.iter().any(|w| s.name.contains(w.as_str())))
    {
        let (mut without, mut with, mut rates, mut cpu_per_100k, mut lost) =
            (vec![], vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            if round % 2 == 0 {
                without.push(run_storm(index, storm, &files));
            }
            let (lumen, attach) = Lumen::start_timed(&config, &out);
            attach_times.push(attach);
            // Steady state: past its start-up work (the /proc seed of the
            // process cache, the first resource sample).
            std::thread::sleep(Duration::from_secs(1));
            let pid = lumen.child.id();
            let before_lines = lines(&lumen.out);
            let before_cpu = cpu_seconds(pid);
            let timed = run_storm(index, storm, &files);
            // Let Lumen deliver what the storm produced.
            let mut last = 0;
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let now = lines(&lumen.out);
                if now == last {
                    break;
                }
                last = now;
            }
            let delivered = last.saturating_sub(before_lines) as f64;
            let cpu = cpu_seconds(pid) - before_cpu;
            lumen.stop();
            rates.push(delivered / timed.wall);
            if storm.events_per_op > 0 {
                let expected = storm.ops * storm.events_per_op;
                lost.push(expected.saturating_sub(matching(&out, &timed.markers)));
            }
            // CPU per event only where the storm's events are the bulk of
            // what was delivered (not for the filtered read storm).
            if delivered >= storm.ops as f64 / 2.0 {
                // CPU-seconds per second, scaled to 100k events/s.
                cpu_per_100k.push(cpu / timed.wall * 100_000.0 / (delivered / timed.wall));
            }
            with.push(timed);
            if round % 2 == 1 {
                without.push(run_storm(index, storm, &files));
            }
        }
        let of =
            |runs: &[Timed], figure: fn(&Timed) -> f64| median(runs.iter().map(figure).collect());
        let (w, l) = (of(&without, |t| t.wall), of(&with, |t| t.wall));
        println!(
            "| {} | {} | {:.3} s | {:.3} s | {:.2}× | {:.2}× | {:.1} ms | {:.0} | {} | {} |",
            storm.name,
            storm.ops,
            w,
            l,
            l / w,
            of(&with, |t| t.cpu) / of(&without, |t| t.cpu),
            of(&with, |t| t.wait) * 1e3,
            median(rates),
            if lost.is_empty() {
                "–".to_owned()
            } else {
                format!("{lost:?}")
            },
            if cpu_per_100k.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.2} cores", median(cpu_per_100k))
            }
        );
        let _ = std::io::stdout().flush();
    }
    if !attach_times.is_empty() {
        let most = attach_times.iter().copied().fold(0.0, f64::max);
        println!();
        println!(
            "start to first event: median {:.3} s, at most {most:.3} s ({} starts)",
            median(attach_times.clone()),
            attach_times.len()
        );
    }
    if only.is_empty() || only.iter().any(|w| "switch".contains(w.as_str())) {
        switch_cost(dir.path(), &out);
    }
    if only.is_empty() || only.iter().any(|w| "restart".contains(w.as_str())) {
        restart_blindness(dir.path());
    }
}

/// Marked execs across a restart.
const RESTART_EXECS: usize = 800;

/// A restart's blindness: `/bin/true lumen-restart-<i>` every ~5 ms while
/// Lumen is stopped (SIGTERM) and started again at once, without and with
/// `pin_path`; the execs neither Lumen delivered, and the time between the
/// delivered ones around the longest gap.
fn restart_blindness(dir: &std::path::Path) {
    println!();
    println!("restart: {RESTART_EXECS} marked execs ~5 ms apart, Lumen stopped 0.5 s in and started again at once; 3 rounds each");
    println!();
    println!("| restart | execs missed | blind | the stop took |");
    println!("| --- | --- | --- | --- |");
    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/lumen-bench-{}", std::process::id()));
    for pinned in [false, true] {
        let (mut missed, mut blind, mut stops) = (vec![], vec![], vec![]);
        for round in 0..3 {
            let _ = std::fs::remove_dir_all(&pins);
            let config = |name: &str| {
                let out = dir.join(format!("restart-{round}-{name}.ndjson"));
                let mut text = lumen_config(&out, true);
                if pinned {
                    text = text.replace(
                        "type = \"ebpf\"\n",
                        &format!("type = \"ebpf\"\npin_path = \"{}\"\n", pins.display()),
                    );
                }
                let path = dir.join(format!("restart-{name}.toml"));
                std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
                (path, out)
            };
            let ((config_a, out_a), (config_b, out_b)) = (config("a"), config("b"));
            let first = Lumen::start(&config_a, &out_a);
            std::thread::sleep(Duration::from_secs(1));
            let execs = std::thread::spawn(|| {
                for i in 0..RESTART_EXECS {
                    let _ = Command::new("/bin/true")
                        .arg(format!("lumen-restart-{i}"))
                        .status();
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            std::thread::sleep(Duration::from_millis(500));
            let t = Instant::now();
            first.stop();
            stops.push(t.elapsed().as_secs_f64());
            let second = Lumen::start(&config_b, &out_b);
            let _ = execs.join();
            std::thread::sleep(Duration::from_secs(1));
            second.stop();
            let _ = std::fs::remove_dir_all(&pins);
            // Launch time (ms) of each marked exec delivered.
            let mut seen: std::collections::BTreeMap<usize, i64> = Default::default();
            for out in [&out_a, &out_b] {
                let text = std::fs::read_to_string(out).unwrap_or_default();
                for line in text.lines().filter(|l| l.contains("lumen-restart-")) {
                    let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let (Some(cmd), Some(time)) =
                        (e["process"]["cmd_line"].as_str(), e["time"].as_i64())
                    else {
                        continue;
                    };
                    if e["activity_id"] != 1 {
                        continue;
                    }
                    if let Some(i) = cmd
                        .strip_prefix("/bin/true lumen-restart-")
                        .and_then(|n| n.parse().ok())
                    {
                        seen.insert(i, time);
                    }
                }
            }
            missed.push(RESTART_EXECS - seen.len());
            // The longest run of missing execs, timed by its neighbours.
            let mut longest = 0.0f64;
            let mut last: Option<(usize, i64)> = None;
            for (&i, &time) in &seen {
                if let Some((j, was)) = last {
                    if i > j + 1 {
                        longest = longest.max((time - was) as f64 / 1000.0);
                    }
                }
                last = Some((i, time));
            }
            blind.push(longest);
        }
        println!(
            "| {} | {:?} | {} s | {} s |",
            if pinned {
                "with `pin_path`"
            } else {
                "without `pin_path`"
            },
            missed,
            blind
                .iter()
                .map(|b| format!("{b:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            stops
                .iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
}
