//! The pipeline: one reader thread hands batches of packets to N workers over bounded
//! channels, chosen by a symmetric flow hash so both directions of a flow (and a DNS answer
//! and its query) reach the same worker. Workers own their flow state; only the detector's
//! maps, the host table and the outputs are shared. Replay never drops: the reader waits
//! for the workers.

use crate::capture::file::{CaptureError, CaptureReader};
use crate::capture::inputs::Input;
use crate::decode::defrag::{self, DefragLimits, Defragmenter};
use crate::decode::{self, Decoded, LinkType, Transport};
use crate::detect::Detector;
use crate::extract::{Extracted, Extractor, ExtractorLimits};
use crate::hosts::{HostTable, Recorded};
use crate::metrics::{Counters, Local};
use crate::output;
use crate::time::Timestamp;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Packets per batch handed to a worker.
const BATCH_PACKETS: usize = 256;
/// Batches in flight per worker (the channel bound).
const QUEUE_BATCHES: usize = 8;

/// Line-oriented output shared by the workers.
pub type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

pub struct Shared {
    pub detector: Detector,
    pub hosts: HostTable,
    pub counters: Counters,
    pub alerts: Option<SharedWriter>,
    pub events: Option<SharedWriter>,
    pub extract_limits: ExtractorLimits,
    /// First write error on an output; reported once at the end.
    pub output_error: Mutex<Option<String>>,
}

impl Shared {
    fn write_lines(&self, writer: &SharedWriter, text: &str, flush: bool) {
        let result = writer
            .lock()
            .map_err(|_| std::io::Error::other("output lock poisoned"))
            .and_then(|mut w| {
                w.write_all(text.as_bytes())?;
                if flush {
                    w.flush()?;
                }
                Ok(())
            });
        if let Err(e) = result {
            if let Ok(mut slot) = self.output_error.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }
    }

    pub fn flush_outputs(&self) {
        for w in [&self.alerts, &self.events].into_iter().flatten() {
            if let Ok(mut w) = w.lock() {
                if let Err(e) = w.flush() {
                    if let Ok(mut slot) = self.output_error.lock() {
                        slot.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct PacketRef {
    start: u32,
    len: u32,
    ts: Timestamp,
    link: LinkType,
}

#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    packets: Vec<PacketRef>,
}

impl Batch {
    fn push(&mut self, ts: Timestamp, link: LinkType, frame: &[u8]) {
        self.packets.push(PacketRef {
            start: self.data.len() as u32,
            len: frame.len() as u32,
            ts,
            link,
        });
        self.data.extend_from_slice(frame);
    }

    fn clear(&mut self) {
        self.data.clear();
        self.packets.clear();
    }
}

/// What a replay did, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct ReplayOutcome {
    pub inputs_read: usize,
    pub errors: Vec<CaptureError>,
    pub first_packet: Option<Timestamp>,
    pub last_packet: Option<Timestamp>,
}

/// Progress reporting hook: called with (input index, bytes of this input read so far).
pub trait Progress: Send {
    fn start_input(&mut self, index: usize, name: &str);
    fn advance(&mut self, bytes_of_input: u64);
    fn finish(&mut self);
}

/// Replays the inputs through `workers` workers.
pub fn replay(
    inputs: &[Input],
    shared: Arc<Shared>,
    workers: usize,
    progress: &mut dyn Progress,
) -> ReplayOutcome {
    let workers = workers.max(1);
    let hasher = ahash::RandomState::with_seeds(0x7665, 0x6e64, 0x6f72, 0x7761);
    let (free_tx, free_rx) = bounded::<Batch>(workers * (QUEUE_BATCHES + 2));
    let mut senders: Vec<Sender<Batch>> = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (tx, rx) = bounded::<Batch>(QUEUE_BATCHES);
        senders.push(tx);
        let shared = Arc::clone(&shared);
        let free_tx = free_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(rx, free_tx, shared))
            .expect("spawning a worker thread");
        handles.push(handle);
    }
    drop(free_tx);
    let mut pending: Vec<Batch> = (0..workers).map(|_| Batch::default()).collect();
    let mut outcome = ReplayOutcome::default();
    let mut local = Local::default();
    let mut defragmenter = Defragmenter::new(DefragLimits::default());
    for (index, input) in inputs.iter().enumerate() {
        progress.start_input(index, &input.display_name());
        let reader = match input {
            Input::Path(p) => CaptureReader::open(p),
            Input::Stdin => CaptureReader::new("<stdin>".into(), Box::new(std::io::stdin())),
        };
        let mut reader = match reader {
            Ok(r) => r,
            Err(e) => {
                outcome.errors.push(e);
                continue;
            }
        };
        outcome.inputs_read += 1;
        let mut since_progress = 0u32;
        loop {
            let mut target = None;
            let step = reader.next_packet(|raw| {
                local.packets += 1;
                local.bytes += u64::from(raw.wire_len.max(raw.data.len() as u32));
                outcome.first_packet.get_or_insert(raw.ts);
                outcome.last_packet = Some(outcome.last_packet.map_or(raw.ts, |t| t.max(raw.ts)));
                match decode::decode_full(raw.link, raw.data) {
                    Ok(Decoded::Packet(pkt)) => {
                        local.encaps(pkt.encaps);
                        target = Some(dispatch(
                            &shared,
                            &hasher,
                            workers,
                            &pkt,
                            &mut pending,
                            raw.ts,
                            raw.link,
                            raw.data,
                        ));
                    }
                    Ok(Decoded::Fragment(frag)) => {
                        local.encaps(frag.encaps);
                        // Fragments are joined here, before sharding: only the whole datagram
                        // has the ports that choose its flow's worker.
                        if let defrag::Outcome::Complete(datagram) = defragmenter.add(raw.ts, &frag)
                        {
                            match decode::decode(LinkType::RawIp, &datagram) {
                                Ok(pkt) => {
                                    target = Some(dispatch(
                                        &shared,
                                        &hasher,
                                        workers,
                                        &pkt,
                                        &mut pending,
                                        raw.ts,
                                        LinkType::RawIp,
                                        &datagram,
                                    ))
                                }
                                Err(e) => local.anomaly(e.reason()),
                            }
                        }
                    }
                    Err(e) => {
                        if e.is_anomaly() {
                            local.anomaly(e.reason());
                        }
                    }
                }
            });
            match step {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    outcome.errors.push(e);
                    break;
                }
            }
            if let Some(w) = target {
                if pending[w].packets.len() >= BATCH_PACKETS {
                    let fresh = free_rx.try_recv().unwrap_or_default();
                    let full = std::mem::replace(&mut pending[w], fresh);
                    if senders[w].send(full).is_err() {
                        break;
                    }
                    for (reason, n) in std::mem::take(&mut defragmenter.counts) {
                        *local.anomalies.entry(reason).or_default() += n;
                    }
                    shared.counters.fold(&mut local);
                }
            }
            since_progress += 1;
            if since_progress >= 4096 {
                since_progress = 0;
                progress.advance(reader.offset());
            }
        }
        progress.advance(reader.offset());
        if reader.unsupported.packets > 0 {
            shared.counters.unsupported_link.fetch_add(
                reader.unsupported.packets,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }
    for (w, batch) in pending.into_iter().enumerate() {
        if !batch.packets.is_empty() {
            let _ = senders[w].send(batch);
        }
    }
    drop(senders);
    for h in handles {
        let _ = h.join();
    }
    for (reason, n) in std::mem::take(&mut defragmenter.counts) {
        *local.anomalies.entry(reason).or_default() += n;
    }
    if defragmenter.in_progress() > 0 {
        *local
            .anomalies
            .entry("defrag_incomplete_at_end")
            .or_default() += defragmenter.in_progress() as u64;
    }
    shared.counters.fold(&mut local);
    shared.flush_outputs();
    progress.finish();
    outcome
}

/// Hands a decoded packet's frame to its flow's worker batch; returns the worker.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    shared: &Shared,
    hasher: &ahash::RandomState,
    workers: usize,
    pkt: &decode::Packet<'_>,
    pending: &mut [Batch],
    ts: Timestamp,
    link: LinkType,
    frame: &[u8],
) -> usize {
    let w = flow_shard(hasher, pkt, workers);
    if let Some((_, sp, dp)) = pkt.ports() {
        if sp == 53 || dp == 53 {
            shared.detector.note_dns_packet(pkt.src, pkt.dst, sp, dp);
        }
    }
    pending[w].push(ts, link, frame);
    w
}

/// Symmetric: (a → b) and (b → a) land on the same worker.
fn flow_shard(hasher: &ahash::RandomState, pkt: &decode::Packet<'_>, workers: usize) -> usize {
    if workers == 1 {
        return 0;
    }
    let mut h = hasher.build_hasher();
    let (a, b) = match pkt.ports() {
        Some((_, sp, dp)) => ((pkt.src, sp), (pkt.dst, dp)),
        None => ((pkt.src, 0), (pkt.dst, 0)),
    };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    lo.hash(&mut h);
    hi.hash(&mut h);
    matches!(pkt.transport, Transport::Tcp(_)).hash(&mut h);
    (h.finish() % workers as u64) as usize
}

fn worker(rx: Receiver<Batch>, free_tx: Sender<Batch>, shared: Arc<Shared>) {
    let mut extractor = Extractor::new(shared.extract_limits);
    let mut local = Local::default();
    let mut events = String::new();
    for mut batch in rx {
        for p in &batch.packets {
            let frame = &batch.data[p.start as usize..(p.start + p.len) as usize];
            // The reader decoded this frame already; it cannot fail differently now.
            let Ok(pkt) = decode::decode(p.link, frame) else {
                continue;
            };
            extractor.process(p.ts, &pkt, &mut |item| {
                handle(&shared, &mut local, &mut events, item)
            });
        }
        flush_events(&shared, &mut events);
        shared.counters.fold(&mut local);
        batch.clear();
        let _ = free_tx.try_send(batch);
    }
    extractor.finish(&mut |item| handle(&shared, &mut local, &mut events, item));
    flush_events(&shared, &mut events);
    shared.counters.fold(&mut local);
}

fn flush_events(shared: &Shared, events: &mut String) {
    if let (Some(w), false) = (&shared.events, events.is_empty()) {
        shared.write_lines(w, events, false);
    }
    events.clear();
}

fn handle(shared: &Shared, local: &mut Local, events: &mut String, item: Extracted) {
    match &item {
        Extracted::Anomaly(reason) => {
            local.anomaly(reason);
            return;
        }
        Extracted::Evicted => {
            local.flows_evicted += 1;
            return;
        }
        Extracted::Name(ev) => {
            local.name(ev.kind);
            if shared.events.is_some() {
                local.events += 1;
                events.push_str(&output::event_line(ev));
                events.push('\n');
            }
        }
        Extracted::Fingerprint { ts, flow, detail } => {
            if let (Some(_), crate::extract::Detail::Tls { ja4: Some(j), .. }) =
                (&shared.events, detail)
            {
                local.name(crate::extract::NameKind::Ja4);
                local.events += 1;
                events.push_str(&output::fingerprint_line(*ts, flow, j));
                events.push('\n');
            }
        }
        Extracted::FlowStart { .. } | Extracted::Unnamed { .. } => {}
    }
    if let Some((host, hiding)) = shared.detector.name_hiding(&item) {
        shared.hosts.note_hiding(host, hiding);
    }
    let rules = &shared.detector.rules;
    shared.detector.detect(&item, &mut |finding| {
        local.findings += 1;
        if let Recorded::NewAlert(det) = shared.hosts.record(&finding, rules) {
            local.alerts += 1;
            if let Some(w) = &shared.alerts {
                let mut line = output::alert_line(&finding, &det, rules);
                line.push('\n');
                shared.write_lines(w, &line, true);
            }
        }
    });
}
