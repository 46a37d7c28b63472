#!/usr/bin/env bash
# Compares two builds by the worker's CPU against the reader's, in the same run: a change to the
# worker's code shows as a lower worker/reader ratio, while whatever slows or speeds up the whole
# machine (a shared VM's phase) moves both threads alike and cancels out. On this project's 2-core
# VM, wall and CPU times of whole runs vary by 10-20 % from run to run. The ratio is noisy too
# (single runs 0.95-1.35 there; medians of 8-10 pairs move by about 0.05): it shows a change of a
# tenth of the worker's time, not a few per cent (count instructions for those: callgrind.sh).
#
#   bash bench/thread-share.sh [--runs N] [--pcap PCAP] A_BINARY B_BINARY
#
#   --runs   pairs of runs (default 8); the order within a pair flips every pair, since the
#            first run of a pair tends to be the slower
#   --pcap   default bench-data/enterprise.pcap
#
# Each run: `perf record -F 1000` of `BINARY replay --quiet --state none --workers 1 --report
# /dev/null PCAP` (task-clock samples, which any Linux with perf has, VMs included), then the
# samples of the worker thread (`worker-0`) and of the reader (the main thread, named after the
# binary) from `perf report --sort comm`. Prints one line per run and, per build, the median
# worker/reader ratio and in how many pairs B's ratio was the lower. Only meaningful for a change
# that leaves one of the two threads' code alone (usually the reader's). Needs perf and python3.
set -euo pipefail

RUNS=8
PCAP=
while (($#)); do
    case $1 in
        --runs) RUNS=$2; shift ;;
        --pcap) PCAP=$2; shift ;;
        -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "thread-share.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
if (($# != 2)); then
    echo "thread-share.sh: give two binaries to compare (see --help)" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PCAP=${PCAP:-$ROOT/bench-data/enterprise.pcap}
for f in "$1" "$2" "$PCAP"; do
    [ -r "$f" ] || { echo "thread-share.sh: cannot read $f" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "thread-share.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/runs.tsv
: >"$out"
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then order=(A B); else order=(B A); fi
    for label in "${order[@]}"; do
        if [ "$label" = A ]; then bin=$1; else bin=$2; fi
        cat "$PCAP" >/dev/null
        perf record -q -F 1000 -o "$work/perf.data" "$bin" replay --quiet --no-seccomp \
            --state none --workers 1 --report /dev/null "$PCAP" >/dev/null 2>&1
        # The main thread's comm is the binary's file name, cut to 15 characters.
        reader=$(basename "$bin" | cut -c1-15)
        perf report -i "$work/perf.data" --sort comm --stdio -n 2>/dev/null |
            awk -v label="$label" -v run="$i" -v reader="$reader" '
                /^#/ || NF < 3 { next }
                $3 == "worker-0" { w = $2 }
                $3 == reader { r = $2 }
                END {
                    if (!w || !r) { print "no samples of both threads" > "/dev/stderr"; exit 1 }
                    printf "%s\t%d\t%d\t%d\t%.4f\n", label, run, w, r, w / r
                }' | tee -a "$out"
    done
done
python3 - "$out" "$1" "$2" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines() if line]
ratio = {(label, int(run)): float(q) for label, run, _, _, q in rows}
runs = sorted({run for _, run in ratio})
for label, name in (("A", sys.argv[2]), ("B", sys.argv[3])):
    print(f"{label} {name}: worker/reader median {statistics.median(ratio[(label, r)] for r in runs):.3f}")
lower = sum(ratio[("B", r)] < ratio[("A", r)] for r in runs)
print(f"B's ratio lower in {lower} of {len(runs)} pairs")
PY
