//! `lumen`: the command line.
//!
//! - `lumen run [--config FILE] [--require-healthy] [--log-format text|json]`:
//!   runs the pipeline until SIGINT/SIGTERM, then drains every in-flight
//!   event to the sinks and exits 0. Exit 1: a runtime error or a drain that
//!   timed out; 2: an invalid config, or a required healthcheck that failed;
//!   3: a component failed (panicked) — what the rest held was drained.
//! - `lumen validate [--config FILE]`: prints the topology the config builds;
//!   exits 2 with `file:line:column: what is wrong` when it is invalid.
//! - `lumen tap <component> [--address A] [--schema ecs|ocsf] [--limit N]`:
//!   prints the events passing a component of a running Lumen.
//!
//! Without `--config`, the embedded default (`config/lumen.toml`) is used.

/// mimalloc: the delivery path frees megabyte batch buffers at a high rate,
/// which glibc's allocator answers with heap consolidation (10 % of the
/// profile of the sink benchmark).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps Lumen's memory in 4 KiB pages. mimalloc asks for transparent huge
/// pages for its arenas (`MADV_HUGEPAGE`), and the first touch of each one
/// zeroes 2 MiB: at start, parsing the kernel's BTF touched ~90 MB that way,
/// which on a VM whose memory the host backs lazily took 0.5 – 0.9 s of the
/// time to the first event. Throughput measured the same either way, and
/// peak RSS a third lower (docs/PERFORMANCE.md). The flag applies to every
/// mapping at its next fault, including the arenas made before `main`; a
/// kernel without it (before 3.15) keeps huge pages.
fn small_pages_only() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lumen::config::{Config, ConfigError};
use lumen::topology::{self, Stopped};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "lumen",
    version,
    about = "Security telemetry for Linux hosts, containers and Kubernetes: eBPF and audit logs to ECS and OCSF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline.
    Run {
        /// Configuration file (TOML). Default: the embedded config/lumen.toml.
        #[arg(short, long, env = "LUMEN_CONFIG")]
        config: Option<PathBuf>,
        /// Exit (code 2) when a network sink's receiver fails its start-up
        /// check, instead of holding its events until it answers (as if
        /// every sink had `healthcheck.require = true`).
        #[arg(long, env = "LUMEN_REQUIRE_HEALTHY")]
        require_healthy: bool,
        /// `text` (coloured only on a terminal, never under NO_COLOR) or
        /// `json` (one object a line: timestamp, level, target, message,
        /// fields).
        #[arg(long, env = "LUMEN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// Check a configuration and print the topology it builds.
    Validate {
        #[arg(short, long, env = "LUMEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check what this node lets Lumen see — kernel BTF, BPF maps, each
    /// tracepoint family, the cgroup layout, the Kubernetes API — without
    /// starting a pipeline. Exit code 1 when the ebpf source could not
    /// start here.
    Doctor {
        /// The configuration whose (first) ebpf source is checked; default:
        /// the embedded one.
        #[arg(short, long, env = "LUMEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the events passing a component of a running Lumen (its `[api]`),
    /// one JSON document per line, until Ctrl-C, `--limit` or Lumen stops.
    Tap {
        /// The component's id (a source's or transform's output, a sink's input).
        component: String,
        /// The running Lumen's `[api] address`.
        #[arg(long, default_value = "127.0.0.1:9598", env = "LUMEN_API_ADDRESS")]
        address: std::net::SocketAddr,
        /// `ecs` or `ocsf`.
        #[arg(long, default_value = "ecs", value_parser = ["ecs", "ocsf"])]
        schema: String,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<std::num::NonZeroU64>,
    },
}

/// `lumen tap`: streams `/tap/<component>` to standard output; notices
/// (lines starting with `#`) go to standard error.
async fn tap(
    component: &str,
    address: std::net::SocketAddr,
    schema: &str,
    limit: Option<std::num::NonZeroU64>,
) -> anyhow::Result<ExitCode> {
    use http_body_util::BodyExt as _;
    use std::io::Write as _;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| {
            format!("cannot reach Lumen's API at {address} (is [api] on, at this address?)")
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP with {address}"))?;
    tokio::spawn(conn);
    let mut uri = format!("/tap/{component}?schema={schema}");
    if let Some(n) = limit {
        uri.push_str(&format!("&limit={n}"));
    }
    let req = hyper::Request::get(uri)
        .header(hyper::header::HOST, address.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("GET /tap/{component} at {address}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        eprintln!(
            "error: {status}: {}",
            String::from_utf8_lossy(&text).trim_end()
        );
        return Ok(ExitCode::from(2));
    }
    eprintln!("tapping `{component}` at {address} (Ctrl-C to stop)");
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.context("reading the tap")?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let to: &mut dyn std::io::Write = if line.starts_with(b"#") {
                &mut err
            } else {
                &mut out
            };
            if to.write_all(&line).is_err() {
                // The reader went away (`| head`): done.
                return Ok(ExitCode::SUCCESS);
            }
        }
        let _ = out.flush();
    }
    Ok(ExitCode::SUCCESS)
}

fn load(path: Option<&PathBuf>) -> Result<(Config, String), ConfigError> {
    match path {
        Some(p) => Ok((Config::load(p)?, p.display().to_string())),
        None => {
            let c = Config::from_str_with_env(
                lumen::DEFAULT_CONFIG,
                lumen::DEFAULT_CONFIG_ORIGIN,
                &|k| std::env::var(k).ok(),
            )?;
            Ok((c, lumen::DEFAULT_CONFIG_ORIGIN.to_owned()))
        }
    }
}

fn print_topology(config: &Config, origin: &str) {
    let graph = config.graph();
    println!("config {origin} is valid");
    println!("data_dir: {}", config.data_dir.display());
    println!("sources:");
    for (id, s) in &config.sources {
        println!(
            "  {id} ({}) -> {}",
            s.type_name(),
            graph.outputs_of(id).join(", ")
        );
    }
    if !config.transforms.is_empty() {
        println!("transforms:");
        for id in &graph.transform_order {
            if let Some(t) = config.transforms.get(*id) {
                println!(
                    "  {id} ({}) <- {} -> {}",
                    t.type_name(),
                    t.inputs().join(", "),
                    graph.outputs_of(id).join(", ")
                );
            }
        }
    }
    println!("sinks:");
    for (id, s) in &config.sinks {
        println!("  {id} ({}) <- {}", s.type_name(), s.inputs().join(", "));
    }
}

/// The async runtime `builder` makes (timers and I/O on), or the exit code
/// after saying why there is none.
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

/// Logs to standard error, filtered by `LUMEN_LOG` (default `info`):
/// text, with colour only when standard error is a terminal and `NO_COLOR`
/// is unset or empty (no-color.org); or JSON, one object a line.
fn init_logging(format: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUMEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init();
    } else {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        builder
            .with_ansi(std::io::stderr().is_terminal() && !no_color)
            .init();
    }
    // A panic is logged like everything else (a JSON line under
    // `--log-format json`); the topology names the component it ended.
    std::panic::set_hook(Box::new(|info| {
        let message = topology::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, location = %location, "panic");
    }));
}

/// SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled: a signal that arrives while the
/// topology starts (a fast supervisor, a test that saw output) is not lost.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// SIGHUP: the config is read again from where it came from (the file, or
/// the embedded default with the environment as it is).
struct SighupReloads {
    hangup: Option<tokio::signal::unix::Signal>,
    path: Option<PathBuf>,
}

impl SighupReloads {
    /// Installed before the topology starts: from here on a SIGHUP reloads
    /// instead of ending the process.
    fn install(path: Option<PathBuf>) -> SighupReloads {
        use tokio::signal::unix::{signal, SignalKind};
        let hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGHUP handler; reload by restarting");
                None
            }
        };
        SighupReloads { hangup, path }
    }
}

impl topology::Reloads for SighupReloads {
    async fn next(&mut self) -> Result<Config, ConfigError> {
        match self.hangup.as_mut() {
            Some(h) => {
                h.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
        tracing::info!("SIGHUP received: reloading the config");
        load(self.path.as_ref()).map(|(c, _)| c)
    }
}

async fn run(
    config: Config,
    origin: &str,
    path: Option<PathBuf>,
    options: topology::Options,
) -> anyhow::Result<ExitCode> {
    tracing::info!(config = %origin, version = env!("CARGO_PKG_VERSION"), "lumen starting");
    let stop = stop_signal();
    let reloads = SighupReloads::install(path);
    // The API answers /health from the start; /ready once the topology runs.
    let telemetry = Arc::new(lumen::api::Telemetry::default());
    let api = match &config.api {
        Some(c) => {
            let api = lumen::api::Api::bind(c, telemetry.clone())
                .await
                .with_context(|| format!("[api]: cannot listen on {}", c.address))?;
            tracing::info!(address = %api.local_addr().unwrap_or(c.address), "api: serving /health, /ready, /metrics");
            Some(tokio::spawn(api.run()))
        }
        None => None,
    };
    let running = topology::start(&config, options)
        .await
        .context("starting the topology")?;
    telemetry.started(&running);
    let stopped = running.run_until(stop, reloads, &telemetry).await;
    if let Some(api) = api {
        api.abort();
    }
    match stopped {
        Stopped::Drained => {
            tracing::info!("lumen stopped; every in-flight event was drained");
            Ok(ExitCode::SUCCESS)
        }
        Stopped::TimedOut(left) => {
            tracing::error!(left = ?left, timeout_secs = config.shutdown_timeout_secs, "drain timed out; some in-flight events were not delivered");
            Ok(ExitCode::from(1))
        }
        Stopped::Failed {
            components,
            drained,
        } => {
            tracing::error!(failed = ?components, drained, "lumen stopped because a component failed; exit 3 (a supervisor restarts it)");
            Ok(ExitCode::from(3))
        }
    }
}

/// `lumen doctor`: the node's capabilities, one line each.
fn doctor(config: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    use lumen::sources::ebpf::{capabilities, EbpfSourceConfig};
    let (config, origin) = load(config).context("loading the configuration")?;
    let (id, source) = match config.sources.iter().find_map(|(id, s)| match s {
        lumen::config::SourceConfig::Ebpf(c) => Some((id.clone(), c.clone())),
        _ => None,
    }) {
        Some(found) => found,
        None => (
            "(none: defaults)".to_owned(),
            toml::from_str::<EbpfSourceConfig>("").context("the ebpf source's defaults")?,
        ),
    };
    println!("lumen doctor: what this node lets Lumen see (ebpf source {id} of {origin})");
    let found = capabilities::probe(&source);
    let width = found.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &found {
        let state = match (c.available, c.required) {
            (true, _) => "yes",
            (false, true) => "NO (required)",
            (false, false) => "no",
        };
        println!("  {:width$}  {state}: {}", c.name, c.detail);
    }
    let cannot_start = found.iter().any(|c| c.required && !c.available);
    if cannot_start {
        println!("the ebpf source cannot start on this node");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    small_pages_only();
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor { config } => match doctor(config.as_ref()) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Validate { config } => match load(config.as_ref()) {
            Ok((c, origin)) => {
                print_topology(&c, &origin);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Tap {
            component,
            address,
            schema,
            limit,
        } => {
            let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let run = async {
                tokio::select! {
                    r = tap(&component, address, &schema, limit) => r,
                    _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
                }
            };
            match runtime.block_on(run) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run {
            config,
            require_healthy,
            log_format,
        } => {
            init_logging(&log_format);
            let path = config;
            let (config, origin) = match load(path.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let options = topology::Options { require_healthy };
            match runtime.block_on(run(config, &origin, path, options)) {
                Ok(code) => code,
                Err(e) => {
                    tracing::error!("{e:#}");
                    let required = e
                        .chain()
                        .any(|c| c.is::<topology::RequiredHealthcheckFailed>());
                    ExitCode::from(if required { 2 } else { 1 })
                }
            }
        }
    }
}
