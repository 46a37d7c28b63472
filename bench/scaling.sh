#!/usr/bin/env bash
# Replay throughput per worker count, and the reader thread's share of a core.
#
#   bash bench/scaling.sh [--bin PATH] [--workers "1 2 4 8 all"] [--runs N] [--make] [PCAP]
#
#   PCAP       default bench-data/enterprise.pcap
#   --bin      the vendorwatch binary to measure (default: target/release/vendorwatch, built
#              with `cargo build --release` when missing); a prebuilt release binary copied to
#              another machine works: nothing else of the repository is needed there
#   --workers  the worker counts (default "1 2 4 8 all"; all = the machine's cores)
#   --runs     runs per worker count (default 3; the median is printed)
#   --make     make PCAP first when it is missing (bench/make-capture.sh PCAP 1000 enterprise: needs
#              root, network namespaces, tcpdump, nginx, unbound, curl and dig); without it a
#              missing PCAP is an error: copy the capture (and its .expected.json) there instead
#
# Needs only bash, python3 and coreutils: no root, no packages. For each worker count it runs
# `vendorwatch replay --quiet --state none --workers W PCAP` (the file read once before, so it
# comes from the page cache), samples every thread's CPU time from /proc while it runs, and prints
# packets/s, CPU seconds per million packets, and the reader (main) thread's CPU time and its
# share of one core over the wall time. The reader's share is the ceiling: when it nears 1.0,
# more workers cannot help (the reader frames, decodes and hashes every packet for them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=
WORKERS="1 2 4 8 all"
RUNS=3
MAKE=0
PCAP=
while (($#)); do
    case $1 in
        --bin) BIN=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --make) MAKE=1 ;;
        -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "scaling.sh: unknown option $1" >&2; exit 2 ;;
        *) PCAP=$1 ;;
    esac
    shift
done
PCAP=${PCAP:-$ROOT/bench-data/enterprise.pcap}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }
command -v python3 >/dev/null || { echo "scaling.sh needs python3" >&2; exit 2; }
if [[ ! -f $PCAP ]]; then
    if ((MAKE)); then
        bash "$ROOT/bench/make-capture.sh" "$PCAP" 1000 enterprise
    else
        echo "scaling.sh: $PCAP is missing (give a capture, or --make to make one as root)" >&2
        exit 2
    fi
fi
if [[ -z $BIN ]]; then
    BIN=$ROOT/target/release/vendorwatch
    [[ -x $BIN ]] || (cd "$ROOT" && cargo build --release --quiet --bin vendorwatch)
fi
[[ -x $BIN ]] || { echo "scaling.sh: $BIN is not executable" >&2; exit 2; }
CORES=$(nproc)
cat "$PCAP" >/dev/null   # into the page cache

python3 - "$BIN" "$PCAP" "$RUNS" "$CORES" $WORKERS <<'PYEOF'
"""Runs the replays and samples per-thread CPU time (utime + stime from /proc/PID/task/*/stat)."""
import os, statistics, subprocess, sys, tempfile, time

binary, pcap, runs, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
counts = []
for w in sys.argv[5:]:
    n = cores if w == "all" else int(w)
    if n not in counts:
        counts.append(n)
tick = os.sysconf("SC_CLK_TCK")

def packets(path):
    """Records in a classic pcap (the benchmark captures are classic pcap)."""
    import struct
    with open(path, "rb") as f:
        head = f.read(24)
        end = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        n = 0
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            f.seek(struct.unpack(end + "I", h[8:12])[0], 1)
            n += 1

def one(workers):
    d = tempfile.mkdtemp(prefix="vw-scaling-")
    cmd = [binary, "replay", "--quiet", "--state", "none", "--workers", str(workers),
           "--report", os.path.join(d, "report.json"), pcap]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = {}   # tid -> (name, cpu seconds)
    while p.poll() is None:
        try:
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                try:
                    stat = open(f"/proc/{p.pid}/task/{tid}/stat").read()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
        except OSError:
            pass
        time.sleep(0.02)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    reader = seen.get(str(p.pid), ("main", 0.0))[1]
    work = sum(c for t, (n, c) in seen.items() if n.startswith("worker-"))
    total = sum(c for _, c in seen.values())
    return wall, reader, work, total

npk = packets(pcap)
print(f"capture: {pcap}, {os.path.getsize(pcap) / 1e6:,.1f} MB, {npk:,} packets; {cores} cores; "
      f"binary {binary}; {runs} run(s) per count, medians")
print("(CPU from /proc sampled every 20 ms while it runs: the last 20 ms of a thread may be missing)")
print()
print("| workers | wall s | packets/s | speed-up | CPU s / M packets | reader CPU s | reader share of a core | workers CPU s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
base = None
for n in counts:
    rs = [one(n) for _ in range(runs)]
    wall = statistics.median(r[0] for r in rs)
    reader = statistics.median(r[1] for r in rs)
    work = statistics.median(r[2] for r in rs)
    total = statistics.median(r[3] for r in rs)
    base = base or wall
    print(f"| {n} | {wall:.2f} | {npk / wall:,.0f} | {base / wall:.2f} | {total / npk * 1e6:.2f} | "
          f"{reader:.2f} | {reader / wall:.2f} | {work:.2f} |", flush=True)
PYEOF
