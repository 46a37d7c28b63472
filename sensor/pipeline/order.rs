//! Packet order across workers, for the judgements that read the resolver roles.
//!
//! The roles (`detect::resolvers`) are learned from DNS packets of many flows, and the
//! pipeline spreads flows over workers: a client's question to a home-net resolver and the
//! upstream lookup it causes are different flows, often read by different workers, each at
//! its own pace. Every worker writes what its packets show at once; a judgement that reads
//! the roles for packet `n` (was this lookup made for a client? which names will the
//! resolver chase for it?) is made only once every packet before `n` has been read by its
//! worker, and is otherwise kept back by the worker that owns it until then. So a worker
//! never judges a resolver's lookup before the client's question that caused it is on
//! record, however far apart their workers are, and the outcome does not depend on how many
//! workers there are.
//!
//! The capture thread numbers the packets it hands out (`seq`, from 1) and says, per
//! worker, the number of the last packet it handed that worker; each worker says the number
//! up to which it has read every packet of its own. Packets before `n` are all read when,
//! for every other worker, either that worker has read up to `n - 1`, or the last packet it
//! was handed comes before `n` and it has read that one. Most packets never ask: only a
//! finding on a DNS name that was not forwarded, and an answer to a possible resolver that
//! names CNAME or SVCB targets.
//!
//! This holds for one capture thread (a replay; a live capture of one interface through
//! libpcap). Several capture threads have no common order: their packets are judged at once,
//! as they come (`unordered`).

use super::Policy;
use crate::detect::{Chase, Detector, Finding};
use crossbeam_utils::CachePadded;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far behind the capture thread a worker's unsent packets may fall: a worker whose
/// batch fills slowly (few flows hash to it) would otherwise hold up every judgement kept
/// back elsewhere until its batch is full, and those waiting judgements would pile up.
/// The capture thread hands over such a batch early (`Dispatcher`).
pub const MAX_UNSENT_LAG: u64 = 65_536;

/// How often a worker that keeps judgements back looks again while no batch comes.
pub const RECHECK: Duration = Duration::from_millis(1);
/// The longest a judgement waits when a capture thread drops batches (live, a full queue):
/// the packets of a dropped batch are never read, so its worker does not say it has read
/// them until it reads a later packet, which on a quiet flow may be long.
pub const LOSSY_MAX_WAIT: Duration = Duration::from_secs(1);
/// Judgements a worker keeps back at most (about 250 bytes each); past it the oldest is made
/// at once. Another worker would have to lag by thousands of DNS answers.
pub const KEPT_MAX: usize = 8192;
/// The number under which a worker judges what its flows hold when the packets end: after
/// every packet of every worker.
pub const AFTER_EVERY_PACKET: u64 = u64::MAX;

/// Where every worker stands, shared by the capture thread and the workers.
pub struct Tracker {
    /// Per worker: the number of the last packet the capture thread handed it.
    handed: Box<[CachePadded<AtomicU64>]>,
    /// Per worker: every packet of its own numbered up to this has been read, and every
    /// judgement it kept back for them has been made.
    read: Box<[CachePadded<AtomicU64>]>,
    /// More than one capture thread feeds the workers: packets have no common order.
    unordered: AtomicBool,
    /// A capture thread drops batches when a queue is full (`LOSSY_MAX_WAIT`).
    lossy: AtomicBool,
}

impl Tracker {
    pub fn new(workers: usize) -> Tracker {
        let counters = || {
            (0..workers)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect()
        };
        Tracker {
            handed: counters(),
            read: counters(),
            unordered: AtomicBool::new(false),
            lossy: AtomicBool::new(false),
        }
    }

    /// A capture thread drops batches when a worker's queue is full.
    pub fn set_lossy(&self) {
        self.lossy.store(true, Ordering::Release);
    }

    /// Packets come from more than one capture thread from now on.
    pub fn set_unordered(&self) {
        self.unordered.store(true, Ordering::Release);
    }

    /// The capture thread handed packet `seq` to `worker`.
    pub fn handed(&self, worker: usize, seq: u64) {
        if let Some(slot) = self.handed.get(worker) {
            slot.store(seq, Ordering::Release);
        }
    }

    /// `worker` has read every packet of its own up to `seq` (and made every judgement it
    /// kept back for them).
    pub fn read_through(&self, worker: usize, seq: u64) {
        if let Some(slot) = self.read.get(worker) {
            slot.store(seq, Ordering::Release);
        }
    }

    /// Whether every worker but `me` has read every packet numbered before `seq`.
    pub fn settled(&self, me: usize, seq: u64) -> bool {
        if self.unordered.load(Ordering::Acquire) {
            return true;
        }
        let before = seq.saturating_sub(1);
        self.handed
            .iter()
            .zip(self.read.iter())
            .enumerate()
            .all(|(worker, (handed, read))| {
                if worker == me {
                    return true;
                }
                // Handed first: a packet handed after this load is numbered after `seq`
                // (the capture thread had handed `seq` itself before its worker read it).
                let last_handed = handed.load(Ordering::Acquire);
                let read = read.load(Ordering::Acquire);
                read >= before || (last_handed < seq && read >= last_handed)
            })
    }
}

/// A judgement that reads the resolver roles, kept back until it can be made.
pub enum Judgement {
    /// The names a DNS answer to a possible resolver leads to.
    Chase(Chase),
    /// A finding on a DNS name: was the lookup made for a client (`Finding::forwarded`)?
    Finding {
        finding: Box<Finding>,
        /// The name looked up (the event's question).
        lookup: String,
        /// What the finding is reported by: the rules it was found with.
        policy: Policy,
    },
}

struct Kept {
    seq: u64,
    /// When it was kept back, where the wait is bounded (`LOSSY_MAX_WAIT`).
    since: Option<Instant>,
    judgement: Judgement,
}

/// One worker's judgements waiting for packet order, oldest first. While any waits, every
/// later one waits behind it: an earlier chase may write what a later finding reads.
pub struct KeptBack<'a> {
    worker: usize,
    tracker: &'a Tracker,
    waiting: VecDeque<Kept>,
    /// The packet the worker is reading, or has read last.
    current: u64,
}

impl<'a> KeptBack<'a> {
    pub fn new(worker: usize, tracker: &'a Tracker) -> KeptBack<'a> {
        KeptBack {
            worker,
            tracker,
            waiting: VecDeque::new(),
            current: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The worker starts on packet `seq`: it has read every packet of its own before it.
    pub fn start(&mut self, seq: u64) {
        self.current = seq;
        if self.waiting.is_empty() {
            self.tracker
                .read_through(self.worker, seq.saturating_sub(1));
        }
    }

    /// Whether a judgement for the current packet can be made now.
    pub fn settled(&self) -> bool {
        self.waiting.is_empty() && self.tracker.settled(self.worker, self.current)
    }

    /// Keeps a judgement for the current packet back.
    pub fn keep(&mut self, judgement: Judgement) {
        let lossy = self.tracker.lossy.load(Ordering::Acquire);
        self.waiting.push_back(Kept {
            seq: self.current,
            since: lossy.then(Instant::now),
            judgement,
        });
    }

    /// Makes every judgement, oldest first, that can be made now (the current packet read):
    /// a chase is done, a finding is recorded with `record`. Past `KEPT_MAX`, and live past
    /// `LOSSY_MAX_WAIT`, the oldest is made as things stand (counted).
    ///
    /// Inlined: it runs after every packet, and nearly always has nothing to make.
    #[inline]
    pub fn make_settled(&mut self, detector: &Detector, record: &mut dyn FnMut(Finding, &Policy)) {
        if self.waiting.is_empty() {
            // Nothing to make; what is read is said when the next packet starts (`start`)
            // or the batch ends (`batch_done`): once per packet is enough.
            return;
        }
        self.make_waiting(detector, record);
    }

    /// `make_settled` with judgements kept back.
    fn make_waiting(&mut self, detector: &Detector, record: &mut dyn FnMut(Finding, &Policy)) {
        while let Some(oldest) = self.waiting.front() {
            let overdue = self.waiting.len() > KEPT_MAX
                || oldest.since.is_some_and(|t| t.elapsed() >= LOSSY_MAX_WAIT);
            if !self.tracker.settled(self.worker, oldest.seq) {
                if !overdue {
                    break;
                }
                let roles = detector.resolver_roles();
                roles.judged_early.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(kept) = self.waiting.pop_front() {
                make(detector, kept.judgement, record);
            }
        }
        // What is read now: up to the oldest judgement still kept back, or everything.
        let through = self
            .waiting
            .front()
            .map_or(self.current, |oldest| oldest.seq.saturating_sub(1));
        self.tracker.read_through(self.worker, through);
    }

    /// The worker has read its batch: says so, when nothing it read waits.
    pub fn batch_done(&self) {
        if self.waiting.is_empty() {
            self.tracker.read_through(self.worker, self.current);
        }
    }

    /// Makes every judgement kept back, waiting for the other workers as long as it takes
    /// (the packets have all been handed out: they will get there).
    pub fn make_all(&mut self, detector: &Detector, record: &mut dyn FnMut(Finding, &Policy)) {
        loop {
            self.make_settled(detector, record);
            if self.waiting.is_empty() {
                return;
            }
            std::thread::sleep(RECHECK);
        }
    }
}

fn make(detector: &Detector, judgement: Judgement, record: &mut dyn FnMut(Finding, &Policy)) {
    match judgement {
        Judgement::Chase(chase) => detector.chase(&chase),
        Judgement::Finding {
            mut finding,
            lookup,
            policy,
        } => {
            finding.forwarded = detector.forwarded_lookup(finding.host, &lookup, finding.ts);
            record(*finding, &policy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_settled_once_every_other_worker_has_read_what_came_before_it() {
        let p = Tracker::new(3);
        // Nothing handed to anyone: nothing to wait for.
        assert!(p.settled(0, 10));
        // Worker 1 was handed packets 4 and 8, and has read only 4.
        p.handed(1, 4);
        p.handed(1, 8);
        p.read_through(1, 4);
        assert!(p.settled(0, 5), "worker 1 has read everything before 5");
        assert!(!p.settled(0, 10), "worker 1 has not read 8");
        assert!(p.settled(1, 10), "a worker's own packets do not count");
        p.read_through(1, 8);
        assert!(p.settled(0, 10));
        // Handed packet 12: until worker 1 starts on it, nothing says that it holds none
        // between 8 and 10; starting on 12, it has read everything before.
        p.handed(1, 12);
        assert!(!p.settled(0, 10));
        p.read_through(1, 11);
        assert!(p.settled(0, 10) && p.settled(0, 12));
        assert!(!p.settled(0, 13));
        // Worker 2 holds one back at 6: it says it has read up to 5.
        p.handed(2, 9);
        p.read_through(2, 5);
        assert!(p.settled(0, 6));
        assert!(!p.settled(0, 7));
    }

    fn detector() -> Detector {
        let loaded = crate::detect::rules::load_embedded().expect("embedded packs");
        let set = crate::detect::RuleSet::compile(loaded, None).expect("compiles");
        let home = crate::config::parse_home_net(crate::config::DEFAULT_HOME_NET).expect("home");
        let encrypted = crate::detect::resolvers::EncryptedDns::embedded().expect("list");
        Detector::new(
            std::sync::Arc::new(set),
            home,
            Default::default(),
            encrypted,
        )
    }

    fn chase() -> Judgement {
        Judgement::Chase(Chase {
            ts: crate::time::Timestamp::from_parts(100, 0),
            resolver: "10.0.0.53".parse().expect("address"),
            name: "www.example.org".into(),
            targets: vec!["dnl-01.geo.kaspersky.com".into()],
        })
    }

    /// Two workers: 0 reads the odd packets, 1 the even ones, each as the worker loop does
    /// (`start`, perhaps `keep`, `make_settled`). What a worker keeps back is made once the
    /// other has read every packet before it, oldest first; meanwhile each says how far it
    /// has read, up to its oldest judgement kept back, so neither holds the other up.
    #[test]
    fn kept_judgements_are_made_in_order_once_the_other_worker_has_caught_up() {
        let tracker = Tracker::new(2);
        let d = detector();
        let mut never = |_: Finding, _: &Policy| panic!("no finding here");
        let (mut odd, mut even) = (KeptBack::new(0, &tracker), KeptBack::new(1, &tracker));
        let hand = |seq: u64| tracker.handed(usize::from(seq % 2 == 0), seq);
        (1..=4).for_each(hand);
        // Worker 1 reads 2, then keeps a chase back at 4: worker 0 has not read 1 or 3.
        even.start(2);
        assert!(!even.settled());
        even.make_settled(&d, &mut never);
        even.start(4);
        even.keep(chase());
        even.make_settled(&d, &mut never);
        assert!(!even.is_empty());
        // Worker 0 reads 1 and 3: worker 1 has read everything before them.
        for seq in [1, 3] {
            odd.start(seq);
            assert!(odd.settled(), "packet {seq}");
            odd.make_settled(&d, &mut never);
        }
        // Worker 0 keeps one back at 5: worker 1's chase at 4 is not made yet.
        (5..=6).for_each(hand);
        odd.start(5);
        assert!(!odd.settled());
        odd.keep(chase());
        odd.make_settled(&d, &mut never);
        // Worker 1 reads 6 and keeps it behind its chase at 4, which it then makes (worker 0
        // has read 3), saying it has read through 5: the chase at 6 waits for worker 0's at 5.
        even.start(6);
        assert!(!even.settled(), "behind the chase at 4");
        even.keep(chase());
        even.make_settled(&d, &mut never);
        assert!(!even.is_empty());
        assert!(tracker.settled(0, 5) && !tracker.settled(0, 7));
        // Worker 0 looks again: its chase at 5 is made, then worker 1's at 6.
        odd.make_settled(&d, &mut never);
        assert!(odd.is_empty());
        even.make_settled(&d, &mut never);
        assert!(even.is_empty());
        assert!(tracker.settled(0, 7) && tracker.settled(1, 7));
    }

    #[test]
    fn packets_of_several_capture_threads_are_judged_at_once() {
        let p = Tracker::new(2);
        p.handed(1, 100);
        assert!(!p.settled(0, 200));
        p.set_unordered();
        assert!(p.settled(0, 200));
    }
}
