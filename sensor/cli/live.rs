//! `vendorwatch live`: open every interface, start the workers, drop privileges and install
//! the sandbox, run the capture threads (`capture::live::machine`), watch them until
//! SIGINT/SIGTERM, then conclude the run.
//!
//! An interface is captured by one libpcap thread, or (Linux, `--capture-threads` above 1,
//! by default as many as workers) by the N sockets of an `AF_PACKET` fanout group
//! (`capture::fanout`), one thread each: every socket thread decodes, reassembles and
//! hashes its own share through its own dispatcher, so that work is spread over N threads
//! while each flow still reaches its worker by the dispatcher's symmetric flow hash. The
//! kernel does not reassemble (`kernel_defrag` off): the sensor's own defragmenter sees the
//! fragments and their overlaps. Where fanout cannot be opened (another OS, a link type it
//! does not read, a filter naming `vlan`) the interface falls back to libpcap, with a
//! warning. Each socket is a source of its own (`eth0#2`) in the counters, the metrics and
//! the summary, so drops are counted per socket; the interface's totals are their sum.
//!
//! An interface that is administratively down at start is waited for, as a running capture
//! waits for its link (`capture::live`): stderr says at once that it is down, that the
//! sensor waits, and how to bring it up; capture starts when it is up, on the path it would
//! have had (a down interface is found before any path is tried, so no fallback stands in
//! for it). Why wait rather than exit: a down link is a state that passes, not a typo (a
//! missing interface, a bad filter still exit 2 at once); a sensor started at boot before
//! the network configuration brings its span interface up must not die of it (systemd's
//! restarts give up after a few tries), and one started by hand says so and can be
//! stopped. The wait comes before the outputs, the metrics endpoint and the privilege drop:
//! nothing is served while the process still holds its capabilities without its sandbox,
//! for as long as the link may take. What would fail after the wait and can be told without
//! opening anything (a missing `--user`, an output in a directory that does not exist) is
//! said before it, with exit 2 (`check_before_waiting`). An interface up without carrier opens (libpcap reads
//! nothing until the link is there) and is said with what to check.

use super::runtime::{self, Started};
use super::{exit, logging, CommonArgs};
use crate::capture::live::{self, machine};
use crate::config::{LiveConfig, LiveSettings, RunConfig};
use crate::decode::LinkType;
use crate::metrics::Counters;
use crate::output::{self, PacketSpan};
use crate::pipeline::{self, Shared, WhenFull};
use crate::serve::exporter;
use crate::time::Timestamp;
use clap::Args;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Args, Debug)]
pub struct LiveArgs {
    #[command(flatten)]
    pub live: LiveSettings,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// How often the main thread looks at the capture threads, the stop flag and the health.
const SUPERVISE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Per-interface capture statistics shared between capture threads and the status line.
type SourceTotals = Arc<Mutex<Vec<(String, live::PcapTotals)>>>;

/// Runs `live`; returns the exit code.
pub fn run(args: LiveArgs) -> i32 {
    let built = runtime::configure(&args.common, crate::config::Mode::Live)
        .and_then(|(cfg, file)| Ok((cfg, LiveConfig::build(&args.live, &file.live)?)));
    match built {
        Ok((cfg, live)) => run_live(cfg, live),
        Err(e) => {
            logging::error(&e.to_string());
            exit::UNUSABLE
        }
    }
}

/// One interface, opened: a libpcap handle, or the sockets of a fanout group.
enum Opened {
    Pcap(live::LiveCapture),
    #[cfg(target_os = "linux")]
    Ring(Vec<crate::capture::ring_fanout::RingMember>),
    #[cfg(target_os = "linux")]
    Fanout(Vec<crate::capture::fanout::FanoutSocket>),
}

/// Why the interfaces could not all be opened.
enum NotOpened {
    /// These are down (administratively): nothing captures on them until they are up.
    Down(Vec<String>),
    /// Anything else (no such interface, a bad filter, no permission): said, with what to do.
    Unusable(String),
}

/// Opens every interface before anything runs, so that a typo fails at once; `workers`:
/// how many capture threads an interface gets by default. When one is down, none is kept
/// open (a ring filling while the others wait would count as drops what was never to be
/// read): all are opened again once it is up.
fn open_captures(
    settings: &LiveConfig,
    workers: usize,
    quiet: bool,
) -> Result<Vec<Opened>, NotOpened> {
    let mut opened = Vec::with_capacity(settings.interfaces.len());
    let mut down = Vec::new();
    for interface in &settings.interfaces {
        match open_interface(settings, interface, workers, quiet) {
            Ok(o) => opened.push(o),
            Err(live::OpenError::InterfaceDown { .. }) => down.push(interface.clone()),
            Err(e) => return Err(NotOpened::Unusable(e.to_string())),
        }
    }
    if !down.is_empty() {
        return Err(NotOpened::Down(down));
    }
    for interface in &settings.interfaces {
        say_if_without_carrier(interface);
    }
    Ok(opened)
}

/// One interface, on the first capture path that opens it.
// `threads` and `quiet` serve fanout only, which is Linux's.
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn open_interface(
    settings: &LiveConfig,
    interface: &str,
    workers: usize,
    quiet: bool,
) -> Result<Opened, live::OpenError> {
    // Looked at before any path is tried: each path says a down interface in its own words
    // (and a plain socket binds to one), so a fallback would stand in for it.
    if live::LinkWatch::new(interface).state() == live::LinkState::AdminDown {
        return Err(live::OpenError::InterfaceDown {
            interface: interface.to_string(),
        });
    }
    let threads = match settings.capture_threads {
        0 => workers,
        n => n,
    };
    #[cfg(target_os = "linux")]
    if threads > 1 {
        match open_ring_fanout(settings, interface, threads, quiet) {
            Ring::Opened(members) => return Ok(Opened::Ring(members)),
            Ring::TrySockets => {
                if let Some(sockets) = open_fanout(settings, interface, threads, quiet) {
                    return Ok(Opened::Fanout(sockets));
                }
            }
            Ring::LibpcapSays => {}
        }
    }
    // Said only when asked for: the default falls back without a word.
    #[cfg(not(target_os = "linux"))]
    if settings.capture_threads > 1 {
        tracing::warn!(
            "warning: {interface}: fanout capture needs Linux; capturing with libpcap \
             (one capture thread)"
        );
    }
    live::LiveCapture::open(&live_options(settings, interface)).map(Opened::Pcap)
}

/// How long an interface just brought up may read "no carrier" before it is said: the
/// kernel publishes a new carrier (`operstate`) up to a second late.
const CARRIER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Warns when an opened interface has no carrier: it is captured (packets come when the
/// link does), but nothing arrives meanwhile, and that is the operator's to fix.
fn say_if_without_carrier(interface: &str) {
    let since = std::time::Instant::now();
    let mut state = live::LinkWatch::new(interface).state();
    while state == live::LinkState::NoCarrier && since.elapsed() < CARRIER_GRACE {
        std::thread::sleep(live::LINK_CHECK);
        state = live::LinkWatch::new(interface).state();
    }
    if state == live::LinkState::NoCarrier {
        tracing::warn!(
            "warning: {interface}: the interface is {}: nothing arrives until the link is \
             there ({}); capture starts by itself when it is",
            state.describe(),
            state.advice(interface)
        );
    }
}

/// How often a down interface is tried again when sysfs cannot tell whether it is up.
const DOWN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits for the `down` interfaces to come up, saying so for each, then opens every
/// interface; `None` (said here) when stopped first, an error (said by the caller) when
/// opening fails otherwise (the interface was removed meanwhile, ...).
fn wait_for_interfaces(
    settings: &LiveConfig,
    cfg: &RunConfig,
    stop: &AtomicBool,
    mut down: Vec<String>,
) -> Result<Option<Vec<Opened>>, String> {
    // Said now, not once the link is up: a typo must not wait for a cable.
    if let Some(filter) = &settings.bpf {
        live::check_filter(filter).map_err(|e| e.to_string())?;
    }
    let mut said: Vec<String> = Vec::new();
    let mut next_try = std::time::Instant::now() + DOWN_RETRY;
    loop {
        for interface in &down {
            if !said.contains(interface) {
                // A warning, never hidden by -q: until it is up, the sensor captures nothing.
                tracing::warn!(
                    "warning: {interface}: the interface is {}; vendorwatch waits for it to \
                     come up and starts capturing then: {}",
                    live::LinkState::AdminDown.describe(),
                    live::LinkState::AdminDown.advice(interface)
                );
                said.push(interface.clone());
            }
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                // Asked for (systemctl stop, Ctrl-C): no failure, but said however quiet.
                tracing::warn!(
                    "stopped while waiting for {} to come up; nothing was captured",
                    down.join(", ")
                );
                return Ok(None);
            }
            std::thread::sleep(live::LINK_CHECK);
            let states: Vec<live::LinkState> = down
                .iter()
                .map(|i| live::LinkWatch::new(i).state())
                .collect();
            if states.contains(&live::LinkState::AdminDown) {
                continue;
            }
            // sysfs says it is up: try now; where it cannot tell (no sysfs, or the interface
            // went away, which the try then says), every DOWN_RETRY.
            if !states.contains(&live::LinkState::Unknown) || std::time::Instant::now() >= next_try
            {
                break;
            }
        }
        match open_captures(settings, cfg.workers, cfg.quiet) {
            Ok(captures) => {
                for interface in said.iter().filter(|_| !cfg.quiet) {
                    tracing::info!("{interface}: the interface is up; capturing");
                }
                return Ok(Some(captures));
            }
            Err(NotOpened::Down(still)) => down = still,
            Err(NotOpened::Unusable(e)) => return Err(e),
        }
        next_try = std::time::Instant::now() + DOWN_RETRY;
    }
}

/// What opening an interface as a fanout group of libpcap handles came to.
#[cfg(target_os = "linux")]
enum Ring {
    Opened(Vec<crate::capture::ring_fanout::RingMember>),
    /// The group could not be made (said why): the plain fanout sockets may do.
    TrySockets,
    /// The interface cannot be captured at all as asked (no such interface, down, a bad
    /// filter, no permission): libpcap says so, with what to do, when it opens the interface
    /// alone next.
    LibpcapSays,
}

/// The interface as a fanout group of `members` libpcap handles.
#[cfg(target_os = "linux")]
fn open_ring_fanout(settings: &LiveConfig, interface: &str, members: usize, quiet: bool) -> Ring {
    use crate::capture::ring_fanout;
    match ring_fanout::open(&live_options(settings, interface), members) {
        Ok(members) => {
            if !quiet {
                tracing::info!(
                    "{interface}: {} capture threads (libpcap rings) in fanout group {}",
                    members.len(),
                    members.first().map_or(0, ring_fanout::RingMember::group)
                );
            }
            Ring::Opened(members)
        }
        Err(
            live::OpenError::NoSuchInterface { .. }
            | live::OpenError::InterfaceDown { .. }
            | live::OpenError::BadFilter { .. }
            | live::OpenError::Permission { .. },
        ) => Ring::LibpcapSays,
        Err(e) => {
            tracing::warn!(
                "warning: {interface}: no fanout over libpcap rings ({e}); trying fanout sockets"
            );
            Ring::TrySockets
        }
    }
}

fn live_options(settings: &LiveConfig, interface: &str) -> live::LiveOptions {
    live::LiveOptions {
        interface: interface.to_string(),
        bpf: settings.bpf.clone(),
        buffer_mb: settings.buffer_mb,
        promiscuous: settings.promiscuous,
    }
}

/// The interface as a fanout group of `sockets`, or `None` (said why) for libpcap instead.
#[cfg(target_os = "linux")]
fn open_fanout(
    settings: &LiveConfig,
    interface: &str,
    sockets: usize,
    quiet: bool,
) -> Option<Vec<crate::capture::fanout::FanoutSocket>> {
    use crate::capture::fanout::{self, OpenError};
    let opened = fanout::open(&fanout::FanoutOptions {
        interface: interface.to_string(),
        sockets,
        group: None,
        bpf: settings.bpf.clone(),
        snaplen: live::SNAPLEN.unsigned_abs(),
        // The interface's buffer, shared out as the rings are.
        buffer_bytes: usize::try_from(crate::capture::ring_fanout::member_ring_mb(
            settings.buffer_mb,
            sockets,
        ))
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 20),
        promiscuous: settings.promiscuous,
        // The sensor's own defragmenter must see the fragments (and their overlaps): each
        // socket thread reassembles, then hashes, in its dispatcher.
        kernel_defrag: false,
    });
    match opened {
        Ok(sockets) => {
            if quiet {
                return Some(sockets);
            }
            tracing::info!(
                "{interface}: {} capture threads in fanout group {}",
                sockets.len(),
                sockets.first().map_or(0, fanout::FanoutSocket::group)
            );
            Some(sockets)
        }
        // libpcap says these better, with what to do (the interfaces there are, where the
        // filter breaks, that it is down): it is opened next and fails with its own words.
        Err(
            OpenError::NoSuchInterface { .. }
            | OpenError::InterfaceDown { .. }
            | OpenError::BadFilter { .. },
        ) => None,
        Err(e) => {
            tracing::warn!(
                reason = e.reason(),
                "warning: {interface}: no fanout capture ({e}); capturing with libpcap (one \
                 capture thread)"
            );
            None
        }
    }
}

/// What would fail once a down interface is up, checked before waiting for it (which may
/// take hours) without opening or serving anything: that `--user` exists, that every output
/// file can be created where it is asked for (its directory exists, and it is not a
/// directory itself), and that the inventory's path is one the store takes. What only
/// opening can tell (permissions, a full disk) is said then. A directory that would appear
/// during the wait (a mount) is refused now: systemd's restart tries again.
fn check_before_waiting(cfg: &RunConfig, settings: &LiveConfig) -> Result<(), String> {
    crate::capture::privileges::check_user(settings.user.as_deref()).map_err(|e| e.to_string())?;
    if let Some(state) = &cfg.state {
        crate::hosts::store::check_state_path(state).map_err(runtime::inventory_unusable)?;
    }
    let outputs = [
        ("alerts file", cfg.alerts.as_deref()),
        ("events file", cfg.events.as_deref()),
        ("report", cfg.report.as_deref()),
    ];
    for (what, path) in outputs {
        let Some(path) = path.filter(|p| *p != std::path::Path::new("-")) else {
            continue;
        };
        let shown = crate::operator_input::shown(path);
        if path.is_dir() {
            return Err(format!(
                "cannot create the {what} {shown}: it is a directory (give a file path)"
            ));
        }
        if !crate::operator_input::parent_dir(path).is_dir() {
            return Err(format!(
                "cannot create the {what} {shown}: {}",
                output::create_advice(path)
            ));
        }
    }
    Ok(())
}

/// Drops privileges, then installs the seccomp filter; returns whether it is on.
fn lock_down(cfg: &RunConfig, user: Option<&str>) -> Result<bool, String> {
    use crate::capture::privileges::{self, Dropped};
    use crate::capture::sandbox::{self, Sandbox};
    // Everything privileged is open: interfaces, outputs, the metrics socket. -q hides the
    // notices, never the warnings: a sensor left with root or without its sandbox is a risk
    // the operator must hear about however quiet the run.
    match privileges::drop_to(user).map_err(|e| e.to_string())? {
        Dropped::StillRoot => tracing::warn!(
            "warning: still running as root (create the user {:?} or pass --user)",
            privileges::DEFAULT_USER
        ),
        Dropped::To { user, uid, gid } if !cfg.quiet => {
            tracing::info!("running as {user} (uid {uid}, gid {gid}) with no capabilities")
        }
        Dropped::To { .. } | Dropped::NotRoot => {}
    }
    // Start-up is over (interfaces, outputs, metrics socket, inventory, privileges): install
    // the seccomp filter on every thread, the workers' and the metrics server's included.
    let sandbox = sandbox::apply(cfg.seccomp).map_err(|e| e.to_string())?;
    match sandbox {
        Sandbox::On { .. } if !cfg.quiet => tracing::info!("{}", sandbox.describe()),
        Sandbox::On { .. } => {}
        // Its words start with "warning:".
        Sandbox::Off | Sandbox::Unsupported { .. } => tracing::warn!("{}", sandbox.describe()),
    }
    Ok(matches!(sandbox, Sandbox::On { .. }))
}

fn run_live(cfg: RunConfig, settings: LiveConfig) -> i32 {
    // A restarted sensor appends to its alerts file (a SIEM tailing it sees no truncation).
    let cfg = RunConfig {
        alerts_file: crate::output::alertfile::AlertFileOptions {
            append: true,
            ..cfg.alerts_file
        },
        ..cfg
    };
    // Before the interfaces: a stop must end the wait for one that is down, and a SIGHUP
    // (a reload, before the reloader is there to take it) must not end the process.
    let stop = Arc::new(AtomicBool::new(false));
    let hangup = Arc::new(AtomicBool::new(false));
    let handlers = [
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGHUP, &hangup),
    ];
    for (signal, flag) in handlers {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(flag)) {
            logging::error(&format!("cannot install the signal handler: {e}"));
            return exit::UNUSABLE;
        }
    }
    let opened = match open_captures(&settings, cfg.workers, cfg.quiet) {
        Err(NotOpened::Down(down)) => check_before_waiting(&cfg, &settings)
            .and_then(|()| wait_for_interfaces(&settings, &cfg, &stop, down)),
        Err(NotOpened::Unusable(e)) => Err(e),
        Ok(c) => Ok(Some(c)),
    };
    let captures = match opened {
        Ok(Some(c)) => c,
        Ok(None) => return exit::OK,
        Err(e) => {
            logging::error(&e.to_string());
            return exit::UNUSABLE;
        }
    };
    let Some(started) = runtime::start_or_say(&cfg, false) else {
        return exit::UNUSABLE;
    };
    let pool = match pipeline::WorkerPool::start(
        Arc::clone(&started.shared),
        cfg.workers,
        pipeline::LIVE_QUEUE_BATCHES,
    ) {
        Ok(p) => p,
        Err(e) => {
            logging::error(&format!("cannot start worker threads: {e}"));
            return exit::UNUSABLE;
        }
    };
    let sandboxed = match lock_down(&cfg, settings.user.as_deref()) {
        Ok(on) => on,
        Err(e) => {
            logging::error(&e.to_string());
            return exit::UNUSABLE;
        }
    };
    let mut run = spawn_captures(captures, &pool, &started, &stop, sandboxed);
    supervise(&cfg, &settings, &started, &pool, &stop, &mut run);
    finish(&cfg, started, pool, &stop, run)
}

/// One capture thread per libpcap interface and per fanout socket, each with its own
/// dispatcher into the worker pool and its own source slot (`eth0`, or `eth0#2`).
fn spawn_captures(
    captures: Vec<Opened>,
    pool: &pipeline::WorkerPool,
    started: &Started,
    stop: &Arc<AtomicBool>,
    sandboxed: bool,
) -> Running {
    let mut run = Running {
        threads: Vec::new(),
        failures: Vec::new(),
        totals: Arc::new(Mutex::new(Vec::new())),
        interfaces: captures.len(),
        started: std::time::Instant::now(),
        socket_sources: Vec::new(),
    };
    for opened in captures {
        match opened {
            Opened::Pcap(cap) => {
                let source = cap.interface.clone();
                spawn_one(&mut run, cap, source, true, pool, started, stop, sandboxed);
            }
            #[cfg(target_os = "linux")]
            Opened::Ring(members) => {
                spawn_group(&mut run, members, pool, started, stop, sandboxed);
            }
            #[cfg(target_os = "linux")]
            Opened::Fanout(sockets) => {
                let sources = spawn_group(&mut run, sockets, pool, started, stop, sandboxed);
                run.socket_sources.extend(sources);
            }
        }
    }
    run.started = std::time::Instant::now();
    run
}

/// Starts the capture threads of a fanout group, member `i` as source `IFACE#i`; returns
/// the sources' names.
#[cfg(target_os = "linux")]
fn spawn_group<P: machine::PacketSource + Send + 'static>(
    run: &mut Running,
    members: Vec<P>,
    pool: &pipeline::WorkerPool,
    started: &Started,
    stop: &Arc<AtomicBool>,
    sandboxed: bool,
) -> Vec<String> {
    let mut sources = Vec::with_capacity(members.len());
    for (index, member) in members.into_iter().enumerate() {
        let source = format!("{}#{index}", member.interface());
        sources.push(source.clone());
        // The link is one link: its interruptions are counted once, by member 0.
        spawn_one(
            run,
            member,
            source,
            index == 0,
            pool,
            started,
            stop,
            sandboxed,
        );
    }
    sources
}

/// Starts the capture thread of one source (a libpcap handle or a fanout member).
#[allow(clippy::too_many_arguments)]
fn spawn_one<P: machine::PacketSource + Send + 'static>(
    run: &mut Running,
    cap: P,
    source: String,
    counts_interruptions: bool,
    pool: &pipeline::WorkerPool,
    started: &Started,
    stop: &Arc<AtomicBool>,
    sandboxed: bool,
) {
    let index = match run.totals.lock() {
        Ok(mut t) => {
            t.push((source.clone(), live::PcapTotals::default()));
            t.len() - 1
        }
        Err(_) => usize::MAX,
    };
    let dispatcher = pool.dispatcher(WhenFull::Drop, &source);
    let ctx = CaptureThread {
        stop: Arc::clone(stop),
        totals: Arc::clone(&run.totals),
        index,
        interface: cap.interface().to_string(),
        counts_interruptions,
        first_last: Arc::clone(&started.span),
        shared: Arc::clone(&started.shared),
        sandboxed,
    };
    match std::thread::Builder::new()
        .name(format!("capture-{source}"))
        .spawn(move || ctx.capture(cap, dispatcher))
    {
        Ok(h) => run.threads.push(h),
        Err(e) => run
            .failures
            .push(format!("cannot start a capture thread: {e}")),
    }
}

/// The capture threads and what the main thread keeps of them.
struct Running {
    threads: Vec<std::thread::JoinHandle<Result<(), String>>>,
    failures: Vec<String>,
    /// Sources are per socket (`eth0#2`); inputs are interfaces.
    interfaces: usize,
    totals: SourceTotals,
    /// The sources that are plain fanout sockets (counted by the kernel, not by libpcap).
    socket_sources: Vec<String>,
    started: std::time::Instant,
}

/// Until a signal or the last capture thread ends: mirrors the capture statistics for the
/// metrics, keeps `/healthz` current, prints the status line; stops when the metrics
/// endpoint fails (without it the sensor cannot be watched).
fn supervise(
    cfg: &RunConfig,
    settings: &LiveConfig,
    started: &Started,
    pool: &pipeline::WorkerPool,
    stop: &AtomicBool,
    run: &mut Running,
) {
    let shared = &started.shared;
    runtime::set_health(shared, None);
    if let Some(server) = &started.server {
        if !cfg.quiet {
            tracing::info!("metrics on http://{}/metrics", server.addr);
        }
    }
    let status = !cfg.quiet && std::io::stderr().is_terminal() && settings.status_every > 0;
    let every = std::time::Duration::from_secs(settings.status_every.max(1));
    let mut next_status = run.started + every;
    while !stop.load(Ordering::Relaxed) && run.threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(SUPERVISE_EVERY);
        mirror_stats(shared, &run.totals, pool);
        // Healthy while every interface captures; otherwise the first one's problem, with
        // what happens next (it comes back by itself, or a restart is needed).
        let problem = shared.counters.sensor.captures.lock().ok().and_then(|c| {
            c.iter()
                .find_map(|(i, st)| st.problem.as_ref().map(|p| format!("{i}: {p}")))
        });
        let stopped = run
            .threads
            .iter()
            .position(|t| t.is_finished())
            .map(|t| format!("capture thread {t} stopped"));
        runtime::set_health(shared, problem.or(stopped).as_deref());
        // Without its endpoint the sensor cannot be watched (`/healthz` is gone): stop, so
        // that the exit status says so and a supervisor restarts it with a working one.
        if let Some(why) = started.server.as_ref().and_then(exporter::Server::failure) {
            run.failures.push(format!(
                "the metrics endpoint failed: {why}; stopping (restart the sensor to serve it again)"
            ));
            break;
        }
        if status && std::time::Instant::now() >= next_status {
            next_status += std::time::Duration::from_secs(settings.status_every);
            let secs = run.started.elapsed().as_secs_f64();
            eprintln!("{}", status_line(shared, &run.totals, pool, secs));
        }
    }
}

/// Copies the capture totals and queue depths where the metrics read them.
fn mirror_stats(shared: &Shared, totals: &SourceTotals, pool: &pipeline::WorkerPool) {
    if let (Ok(t), Ok(mut mirror)) = (totals.lock(), shared.counters.sensor.sources.lock()) {
        *mirror = t
            .iter()
            .map(|(n, s)| (n.clone(), s.received, s.dropped, s.if_dropped))
            .collect();
    }
    if let Ok(mut depth) = shared.counters.sensor.queue_depth.lock() {
        *depth = pool.queue_depths();
    }
}

/// Stops: capture threads flush their batches, the workers drain every queue and end their
/// flows, and only then are the report and the summary written.
fn finish(
    cfg: &RunConfig,
    started: Started,
    pool: pipeline::WorkerPool,
    stop: &AtomicBool,
    mut run: Running,
) -> i32 {
    // The flusher writes the events file every second until the run is concluded.
    let Started {
        flusher: _flusher,
        span,
        shared,
        vendors,
        server,
        persister,
        reloader,
        shipper,
    } = started;
    stop.store(true, Ordering::Relaxed);
    for t in run.threads {
        match t.join() {
            Ok(Err(e)) => run.failures.push(e),
            Ok(Ok(())) => {}
            Err(_) => run.failures.push("a capture thread panicked".into()),
        }
    }
    pool.finish();
    if let Some(server) = server {
        server.stop();
    }
    // No reload while the results are written: they are judged by one rule set.
    if let Some(r) = reloader {
        r.stop();
    }
    let resolvers = shared.detector.resolvers();
    let (first_packet, last_packet) = span.lock().map(|g| *g).unwrap_or_default();
    let sources = run.totals.lock().map(|t| t.clone()).unwrap_or_default();
    let facts = output::summary::RunFacts {
        inputs_read: run.interfaces,
        interfaces: true,
        input_errors: &run.failures,
        skipped_inputs: 0,
        elapsed_secs: run.started.elapsed().as_secs_f64(),
        first_packet,
        last_packet,
        resolvers: &resolvers,
        vendors: &vendors,
        sources: sources
            .iter()
            .map(|(name, t)| output::summary::SourceCounts {
                name: name.clone(),
                counter: if run.socket_sources.contains(name) {
                    "fanout socket"
                } else {
                    "libpcap"
                },
                received: t.received,
                dropped: t.dropped,
                if_dropped: t.if_dropped,
            })
            .collect(),
    };
    let mut code = runtime::conclude(cfg, &shared, &vendors, facts, persister);
    if let Some(s) = shipper {
        code = code.max(super::agency::finish_shipping(
            s,
            std::time::Duration::from_secs(crate::hosts::agency::LIVE_WAIT_SECS),
            false,
            cfg.quiet,
        ));
    }
    if run.failures.is_empty() {
        code
    } else {
        exit::PARTIAL
    }
}

/// What a capture thread shares with the rest of the sensor: it observes the capture.
struct CaptureThread {
    stop: Arc<AtomicBool>,
    totals: SourceTotals,
    /// This thread's slot in the source totals.
    index: usize,
    interface: String,
    /// Whether this thread logs and counts its interface's interruptions (one thread per
    /// interface does: the sockets of a fanout group all see the same link go down).
    counts_interruptions: bool,
    first_last: PacketSpan,
    shared: Arc<Shared>,
    sandboxed: bool,
}

impl CaptureThread {
    fn capture<P: machine::PacketSource>(
        &self,
        cap: P,
        mut dispatcher: pipeline::Dispatcher,
    ) -> Result<(), String> {
        let result = machine::Capture::new(cap, &mut dispatcher, self, &self.stop, self.sandboxed)
            .run()
            .map_err(|e| e.to_string());
        dispatcher.finish();
        result
    }

    /// Updates this interface's health for /healthz and the metrics.
    fn status(&self, f: impl FnOnce(&mut crate::metrics::CaptureStatus)) {
        if let Ok(mut all) = self.shared.counters.sensor.captures.lock() {
            f(all.entry(self.interface.clone()).or_default());
        }
    }
}

impl machine::Observer for CaptureThread {
    fn healthy(&self, up: bool) {
        // Not up at start (or when reopened): no carrier yet. /healthz says why nothing comes.
        let problem = (!up).then(|| {
            format!(
                "capture waiting: the interface is {}; it starts when the link is up",
                live::LinkWatch::new(&self.interface).state().describe()
            )
        });
        self.status(|st| {
            st.up = up;
            st.problem = problem;
        });
    }
    fn problem(&self, problem: String, down: bool) {
        self.status(|st| {
            if down {
                st.up = false;
            }
            st.problem = Some(problem);
        });
    }
    fn interrupted(&self, reason: &'static str, times: u64) {
        self.status(|st| *st.interruptions.entry(reason).or_default() += times);
    }
    fn totals(&self, totals: live::PcapTotals) {
        if let Ok(mut all) = self.totals.lock() {
            if let Some(slot) = all.get_mut(self.index) {
                slot.1 = totals;
            }
        }
    }
    fn span(&self, first: Option<Timestamp>, last: Option<Timestamp>) {
        runtime::widen_span(&self.first_last, first, last);
    }
    fn speaks_for_link(&self) -> bool {
        self.counts_interruptions
    }
}

impl machine::PacketSink for pipeline::Dispatcher {
    fn packet(&mut self, ts: Timestamp, link: LinkType, data: &[u8], wire_len: u32) {
        pipeline::Dispatcher::packet(self, ts, link, data, wire_len);
    }
    fn flush(&mut self) {
        pipeline::Dispatcher::flush(self);
    }
}

fn status_line(
    shared: &Shared,
    totals: &SourceTotals,
    pool: &pipeline::WorkerPool,
    secs: f64,
) -> String {
    let c = &shared.counters;
    let packets = Counters::get(&c.packets);
    let sources: Vec<String> = totals
        .lock()
        .map(|t| {
            t.iter()
                .map(|(n, s)| {
                    format!(
                        "{n} recv {} drop {} ifdrop {}",
                        s.received, s.dropped, s.if_dropped
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "[{:>6.0}s] {} packets ({:.0}/s) | {} | queue drops {} (depth {:?}) | evictions {} | hosts {} | alerts {}",
        secs,
        packets,
        packets as f64 / secs.max(1e-9),
        sources.join("; "),
        Counters::get(&c.queue_dropped),
        pool.queue_depths(),
        Counters::get(&c.flows_evicted),
        shared.hosts.len(),
        Counters::get(&c.alerts),
    )
}
