#!/usr/bin/env bash
# Whole-binary replay benchmark: vendorwatch against the tcpdump floor on one big real capture.
#
#   bash bench/run.sh [--write] [PCAP...]
#
#   PCAP     default: bench-data/enterprise.pcap (the enterprise mix, when it exists) and
#            bench-data/bench.pcap (the bulk-heavy capture, made with bench/make-capture.sh when
#            missing); several captures are measured one after the other
#   --write  also replace the capture's section in BENCHMARKS.md: between <!-- bench:replay:start -->
#            and <!-- bench:replay:end --> for bench.pcap, <!-- bench:replay:NAME:start --> and
#            <!-- bench:replay:NAME:end --> for NAME.pcap (created if missing)
#   --head   benchmark the last commit (HEAD) exactly: build it from `git archive HEAD` in
#            bench-data/bench-build/ instead of building the working tree
#   RUNS=N   runs per contender (default 3); the contenders take turns, run by run
#   IDLE_MAX=P, IDLE_WAIT=S  before each run, wait up to S seconds (default 120) until the other CPU
#            use of the machine is below P percent (default 15); the largest value seen is printed
#
# For each contender: median wall time, MB/s, packets/s (capinfos -c), ratio to tcpdump and peak
# RSS (/usr/bin/time -v, the largest of the runs); for vendorwatch also whether the host report
# holds exactly the host x vendor x category detections of the ground truth (PCAP.expected.json).
# The file is read again just before every run, so every contender reads it from the page cache.
# Reports, timings and any differences from the ground truth are kept in bench-data/bench-run-NAME/ (NAME: the capture file's name without .pcap).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WRITE=0
HEAD=0
PCAPS=()
OPTS=()
for a in "$@"; do
    case $a in
        --write) WRITE=1; OPTS+=("$a") ;;
        --head) HEAD=1; OPTS+=("$a") ;;
        -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $a" >&2; exit 2 ;;
        *) PCAPS+=("$a") ;;
    esac
done
if ((${#PCAPS[@]} == 0)); then
    [[ -f $ROOT/bench-data/enterprise.pcap ]] && PCAPS+=("$ROOT/bench-data/enterprise.pcap")
    PCAPS+=("$ROOT/bench-data/bench.pcap")
fi
if ((${#PCAPS[@]} > 1)); then   # one capture at a time, each a run of its own
    for p in "${PCAPS[@]}"; do bash "${BASH_SOURCE[0]}" "${OPTS[@]}" "$p"; done
    exit 0
fi
PCAP=${PCAPS[0]}
RUNS=${RUNS:-3}
IDLE_MAX=${IDLE_MAX:-15}
IDLE_WAIT=${IDLE_WAIT:-120}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
PY=/usr/bin/python3
log() { printf '=== %s\n' "$*" >&2; }

for cmd in tcpdump capinfos jq; do
    command -v $cmd >/dev/null || { echo "run.sh needs $cmd (apt-get install tcpdump wireshark-common jq)" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || { echo "run.sh needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

if [[ ! -f $PCAP ]]; then
    log "$PCAP is missing: making it (bench/make-capture.sh)"
    bash "$ROOT/bench/make-capture.sh" "$PCAP"
fi
PCAP=$(cd "$(dirname "$PCAP")" && pwd)/$(basename "$PCAP")
EXPECTED=$PCAP.expected.json
[[ -f $EXPECTED ]] || log "no $EXPECTED: detections are not checked"

NAME=$(basename "$PCAP" .pcap)
OUTDIR=$(dirname "$PCAP")/bench-run-$NAME
SECTION=bench:replay; [[ $NAME == bench ]] || SECTION=bench:replay:$NAME
COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if ((HEAD)); then
    BUILD=$(dirname "$PCAP")/bench-build
    log "cargo build --release of HEAD ($COMMIT) in $BUILD"
    rm -rf "$BUILD/src"
    mkdir -p "$BUILD/src"
    git -C "$ROOT" archive HEAD | tar -x -C "$BUILD/src"
    (cd "$BUILD/src" && CARGO_TARGET_DIR=$BUILD/target cargo build --release --quiet --bin vendorwatch)
    VW=$BUILD/target/release/vendorwatch
    DIRTY=
else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet --bin vendorwatch)
    VW=$ROOT/target/release/vendorwatch
    DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=all -- sensor Cargo.toml Cargo.lock rules 2>/dev/null |
        awk '{print $2}' | paste -sd, - || true)
fi
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"

# ----------------------------------------------------------------------------------------------
# what is measured, and on what
# ----------------------------------------------------------------------------------------------
BYTES=$(stat -c %s "$PCAP")
PACKETS=$(capinfos -c -M "$PCAP" | awk -F': *' '/Number of packets/ {print $2}')
MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
MEM=$(free -b | awk '/^Mem:/ {printf "%.1f GiB", $2 / 2^30}')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# contenders: label | command (the file is appended)
declare -a LABELS CMDS
LABELS+=("tcpdump -r FILE -w /dev/null (floor)"); CMDS+=("tcpdump -r")
LABELS+=("vendorwatch --workers 1");              CMDS+=("vw 1")
LABELS+=("vendorwatch --workers 2");              CMDS+=("vw 2")
DEFAULT_W=$(($(nproc) > 1 ? $(nproc) - 1 : 1))   # vendorwatch's default: cores - 1, at least 1
LABELS+=("vendorwatch, default workers ($DEFAULT_W)"); CMDS+=("vw default")
LABELS+=("vendorwatch, default workers, --events"); CMDS+=("vw events")

busy() { # percent of the machine's CPU time used over the next 0.5 s (by others: we are idle)
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2];
        printf "%d", (t > 0 ? 100 * (y[1] - x[1]) / t : 0)}'
}
wait_idle() { # prints the other CPU use (percent) just before the run
    local t0=$SECONDS b
    b=$(busy)
    while ((b > IDLE_MAX && SECONDS - t0 < IDLE_WAIT)); do
        sleep 2
        b=$(busy)
    done
    echo "$b"
}

run_one() { # INDEX RUN -> one TSV line: index run seconds maxrss_kb rc report busy
    local i=$1 r=$2 tf=$OUTDIR/time-$1-$2.txt report= t0 t1 rc
    local -a cmd
    case ${CMDS[$i]} in
        "tcpdump -r") cmd=(tcpdump -r "$PCAP" -w /dev/null) ;;
        # every vendorwatch run keeps the default inventory, in a fresh file of its own
        "vw default") report=$OUTDIR/report-$i-$r.json
            cmd=("$VW" replay --quiet --state "$OUTDIR/state-$i-$r.db" --report "$report" "$PCAP") ;;
        "vw events") report=$OUTDIR/report-$i-$r.json
            cmd=("$VW" replay --quiet --state "$OUTDIR/state-$i-$r.db" --events "$OUTDIR/events-$i.jsonl"
                --report "$report" "$PCAP") ;;
        vw\ *) report=$OUTDIR/report-$i-$r.json
            cmd=("$VW" replay --quiet --state "$OUTDIR/state-$i-$r.db" --workers "${CMDS[$i]#vw }"
                --report "$report" "$PCAP") ;;
    esac
    echo "${cmd[*]}" >"$OUTDIR/cmd-$i.txt"
    b=$(wait_idle)
    # Every run reads the file from the page cache: read it again now (the host of a VM can
    # drop cached pages between runs, and a run that refills them pays for it).
    cat "$PCAP" >/dev/null
    t0=$(date +%s.%N)
    rc=0
    /usr/bin/time -v -o "$tf" "${cmd[@]}" >"$OUTDIR/out-$i-$r.txt" 2>"$OUTDIR/err-$i-$r.txt" || rc=$?
    t1=$(date +%s.%N)
    rm -f "$OUTDIR/state-$i-$r.db"*
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$r" "$($PY -c "print($t1 - $t0)")" \
        "$(awk -F': *' '/Maximum resident set size/ {print $2}' "$tf")" "$rc" "$report" "$b" \
        "$(awk -F': *' '/User time \(seconds\)|System time \(seconds\)/ {s += $2} END {print s + 0}' "$tf")"
}

log "warming the page cache ($((BYTES / 1000000)) MB)"
cat "$PCAP" >/dev/null
cat "$PCAP" >/dev/null

: >"$OUTDIR/runs.tsv"
for r in $(seq 1 "$RUNS"); do
    for i in "${!LABELS[@]}"; do
        line=$(run_one "$i" "$r")
        echo "$line" >>"$OUTDIR/runs.tsv"
        log "run $r/$RUNS ${LABELS[$i]}: $(cut -f3 <<<"$line" | xargs printf '%.2f') s, rc $(cut -f5 <<<"$line"), other CPU use before: $(cut -f7 <<<"$line")%"
    done
done

# ----------------------------------------------------------------------------------------------
# table
# ----------------------------------------------------------------------------------------------
export BYTES PACKETS COMMIT DIRTY MODEL MEM LOAD RUNS PCAP EXPECTED OUTDIR HEAD IDLE_MAX IDLE_WAIT
export NPROC=$(nproc) KERNEL=$(uname -r) DATE=$(date -u +%Y-%m-%d)
export TCPDUMP_V=$(tcpdump --version 2>&1 | head -1)
LABELS_JSON=$(printf '%s\n' "${LABELS[@]}" | jq -R . | jq -s -c .)
export LABELS_JSON
$PY - >"$OUTDIR/table.md" <<'PYEOF'
import ipaddress, json, os, statistics

E = os.environ
labels = json.loads(E["LABELS_JSON"])
bytes_, packets, runs = int(E["BYTES"]), int(E["PACKETS"]), int(E["RUNS"])
outdir = E["OUTDIR"]
rows = {}
busy_max = 0
for line in open(f"{outdir}/runs.tsv"):
    i, r, secs, rss, rc, report, busy, cpu = line.rstrip("\n").split("\t")
    rows.setdefault(int(i), []).append((float(secs), int(rss or 0), int(rc), report, float(cpu or 0)))
    busy_max = max(busy_max, int(busy or 0))

# ground truth: the base detections mapped through every copy's address mapping
expected = None
exp_info = {}
if os.path.exists(E["EXPECTED"]):
    ex = json.load(open(E["EXPECTED"]))
    def mapped(addr, m):
        a = ipaddress.ip_address(addr)
        for src, dst in m.items():
            s, d = ipaddress.ip_network(src), ipaddress.ip_network(dst)
            if a.version == s.version and a in s:
                return str(ipaddress.ip_address(int(d.network_address) | (int(a) & int(s.hostmask))))
        return str(a)
    expected = {(mapped(d["host"], c["map"]), d["vendor"], d["category"])
                for d in ex["base"]["detections"] for c in ex["copies"]}
    def unmap(addr):
        """(base address, copy index) of an address of the big capture, or (addr, None)."""
        a = ipaddress.ip_address(addr)
        for c in ex["copies"]:
            for src, dst in c["map"].items():
                s, d = ipaddress.ip_network(src), ipaddress.ip_network(dst)
                if a.version == d.version and a in d:
                    return str(ipaddress.ip_address(int(s.network_address) | (int(a) & int(d.hostmask)))), c["index"]
        return addr, None
    exp_info = ex
    if len(expected) != ex["expected"]["detections"]:
        raise SystemExit(f"expected.json is inconsistent: {len(expected)} != {ex['expected']['detections']}")

def check(report):
    """(count, differences or None)"""
    rep = json.load(open(report))
    dets = [(str(ipaddress.ip_address(h["ip"])), d["vendor"], d["category"])
            for h in rep["hosts"] for d in h["detections"]]
    if expected is None:
        return len(dets), None
    got = set(dets)
    missing, extra = sorted(expected - got), sorted(got - expected)
    dup = len(dets) - len(got)
    return len(dets), (missing, extra, dup)

median = lambda xs: statistics.median(xs)
floor = median([s for s, *_ in rows[0]])
diff_notes = []
out = []
out.append(f"Capture: `{os.path.basename(E['PCAP'])}`, {bytes_ / 1e6:,.1f} MB, {packets:,} packets"
           + (f", {exp_info['expected']['client_hosts']:,} client hosts ({exp_info['base']['client_hosts']} real hosts x "
              f"{len(exp_info['copies'])} address-mapped copies), {exp_info['expected']['detections']:,} expected "
              f"host x vendor x category detections" if exp_info else "")
           + "; classic pcap, Ethernet, made by `bench/make-capture.sh`.  ")
dirty = f" plus uncommitted changes to {E['DIRTY'].replace(',', ', ')}" if E["DIRTY"] else ""
how = "built from `git archive HEAD`" if E["HEAD"] == "1" else "working tree"
out.append(f"Machine: {E['NPROC']} cores ({E['MODEL']}), {E['MEM']} RAM, Linux {E['KERNEL']}; "
           f"load average before the runs {E['LOAD']}; other CPU use just before each run at most {busy_max}% "
           f"(runs wait up to {E['IDLE_WAIT']} s for it to fall below {E['IDLE_MAX']}%).  ")
out.append(f"vendorwatch commit `{E['COMMIT']}`{dirty} ({how}, `cargo build --release`); {E['TCPDUMP_V']}; "
           f"{runs} runs per contender, taking turns, file in the page cache; {E['DATE']}.")
out.append("")
out.append("| contender | median s | min-max s | MB/s | packets/s | x tcpdump | CPU s | CPU s / M packets | peak RSS MiB | detections = ground truth |")
out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
failed = []
for i, label in enumerate(labels):
    rs = rows[i]
    secs = [s for s, *_ in rs]
    m = median(secs)
    rss = max(x[1] for x in rs) / 1024
    rcs = sorted({x[2] for x in rs})
    if rcs != [0]:
        failed.append(f"{label}: exit codes {rcs}")
    if i == 0:
        det = "-"
    else:
        verdicts = []
        for (_, _, _, report, _) in rs:
            if not os.path.exists(report):
                verdicts.append("no report")
                continue
            n, d = check(report)
            if d is None:
                verdicts.append(f"{n} (no ground truth)")
            elif not d[0] and not d[1] and not d[2]:
                verdicts.append(f"yes ({n})")
            else:
                verdicts.append(f"NO: {n}, expected {len(expected)} ({len(d[0])} missing, {len(d[1])} extra"
                                + (f", {d[2]} duplicate" if d[2] else "") + ")")
                diff_notes.append((label, report, d))
        det = verdicts[0] if len(set(verdicts)) == 1 else "; ".join(f"run {k + 1}: {v}" for k, v in enumerate(verdicts))
    rc_note = "" if rcs == [0] else f" (exit {','.join(map(str, rcs))})"
    out.append(f"| {label}{rc_note} | {m:.2f} | {min(secs):.2f}-{max(secs):.2f} | {bytes_ / 1e6 / m:,.0f} | "
               f"{packets / m:,.0f} | {m / floor:.2f} | {median([x[4] for x in rs]):.2f} | "
               f"{median([x[4] for x in rs]) / packets * 1e6:.2f} | {rss:,.0f} | {det} |")
out.append("")
out.append("x tcpdump: median wall time divided by tcpdump's (below 1: faster than tcpdump). CPU s: median user + "
           "system time, which other work on the machine disturbs less than wall time. MB/s: 10^6 bytes of "
           "the file per second. vendorwatch ran as `vendorwatch replay --quiet --state S [--workers W] [--events E] --report R FILE` "
           "(S: the default inventory, in a fresh file per run); "
           "detections: the host x vendor x category entries of R (`jq '[.hosts[].detections[]] | length'`) against "
           "the ground truth, compared as sets.")
print("\n".join(out))

# differences, in full, to a file; a summary on stderr
if diff_notes:
    with open(f"{outdir}/differences.txt", "w") as f:
        for label, report, (missing, extra, dup) in diff_notes:
            f.write(f"## {label} ({report})\n")
            for kind, items in (("missing", missing), ("extra", extra)):
                f.write(f"{kind}: {len(items)}\n")
                by_base = {}
                for h, v, c in items:
                    base, copy = unmap(h)
                    by_base.setdefault((base, v, c), []).append(copy)
                for (base, v, c), copies in sorted(by_base.items()):
                    where = (f"in {len(copies)} of {len(ex['copies'])} copies {sorted(x for x in copies if x is not None)}"
                             if copies != [None] else "(not in any copy's range)")
                    f.write(f"  base {base} {v} {c}: {where}\n")
                for h, v, c in items:
                    f.write(f"    {h} {v} {c}\n")
    print(f"\nDetections differ from the ground truth: see {outdir}/differences.txt", file=os.sys.stderr)
if failed:
    print("\nFailed runs: " + "; ".join(failed), file=os.sys.stderr)
PYEOF

TABLE=$OUTDIR/table.md
cat "$TABLE"
if [[ -f $OUTDIR/differences.txt ]]; then
    echo
    echo "Differences from the ground truth (first lines of $OUTDIR/differences.txt):"
    grep -E '^(##|missing|extra|  base)' "$OUTDIR/differences.txt" | head -40
fi

if ((WRITE)); then
    BM=$ROOT/BENCHMARKS.md
    if [[ ! -f $BM ]]; then
        cat >"$BM" <<'EOF'
# vendorwatch benchmarks

## Replay throughput (whole binary)

How it is measured (`bench/run.sh --write`, see `bench/README.md`): one large capture of real traffic
(`bench/make-capture.sh`: curl, dig, nginx and unbound in network namespaces, captured with tcpdump,
then multiplied with `tcprewrite --pnat` into thousands of distinct client hosts and merged with
`mergecap`) is replayed by `vendorwatch replay --quiet --report FILE` with 1 and 2 workers and the
default, and read by `tcpdump -r FILE -w /dev/null` as the floor (the cost of just reading the file).
The file is read again just before every run, so every contender reads it from the page cache; the contenders
take turns, several runs each; the table gives the median wall time and the largest peak RSS
(`/usr/bin/time -v`). "detections = ground truth" compares the host x vendor x category entries of
vendorwatch's host report with the ground truth that tshark derived from the base capture before
multiplication.

<!-- bench:replay:start -->
<!-- bench:replay:end -->
EOF
    fi
    if ! grep -q "<!-- $SECTION:start -->" "$BM" || ! grep -q "<!-- $SECTION:end -->" "$BM"; then
        printf '\n<!-- %s:start -->\n<!-- %s:end -->\n' "$SECTION" "$SECTION" >>"$BM"
    fi
    $PY - "$BM" "$TABLE" "$SECTION" <<'PYEOF'
import sys
bm, table, section = sys.argv[1:]
s = open(bm).read()
start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
a, b = s.index(start) + len(start), s.index(end)
open(bm, "w").write(s[:a] + "\n" + open(table).read().rstrip("\n") + "\n" + s[b:])
PYEOF
    log "wrote the table into $BM"
fi
