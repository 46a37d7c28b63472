#!/usr/bin/env bash
# Live-capture benchmark: one big real capture replayed with tcpreplay into one end of a veth pair,
# captured on the other end by vendorwatch live and by tcpdump, at several rates.
#
#   bash bench/live.sh [--write] [--head] [PCAP]
#
#   PCAP     default bench-data/bench.pcap (made with bench/make-capture.sh when missing;
#            SIZE_MB=N makes a smaller one)
#   --write  also replace the section between <!-- bench:live:start --> and <!-- bench:live:end -->
#            in BENCHMARKS.md (appended, with a short method header, if the markers are missing)
#   --head   benchmark the last commit exactly: build it from `git archive HEAD` in
#            bench-data/bench-build/ (as bench/run.sh --head) instead of the working tree
#   RATES="mbps:200 mbps:500 mbps:1000 topspeed"   tcpreplay settings, in this order (also pps:N)
#   CONTENDERS="tcpdump tcpdump-B256 vw vw2"       which capturers (see bench/README.md; also vw2-pcap)
#   RUNS=N   runs per rate and contender (default 1); the contenders take turns
#   SETTLE=S seconds between the end of tcpreplay and the stop (default 1; vendorwatch is also
#            left running until its /metrics counters have not moved for 2 s)
#   IDLE_MAX=P, IDLE_WAIT=S  before each run, wait up to S seconds (default 300) until the other
#            CPU use of the machine is below P percent (default 15); what was seen is printed
#   VWL_NS=NAME  the network namespace holding the veth pair (default vwl-live)
#
# Both veth ends live in a namespace of their own (no addresses, IPv6 off, offloads off, MTU 9000),
# so nothing is sent anywhere else; it is deleted at the end. Everything is kept in
# bench-data/bench-live/: runs.jsonl, every tool's output, the reports, table.md, differences.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WRITE=0
HEAD=0
PCAP=
for a in "$@"; do
    case $a in
        --write) WRITE=1 ;;
        --head) HEAD=1 ;;
        -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "live.sh: unknown option $a" >&2; exit 2 ;;
        *) PCAP=$a ;;
    esac
done
PCAP=${PCAP:-$ROOT/bench-data/bench.pcap}
RATES=${RATES:-mbps:200 mbps:500 mbps:1000 topspeed}
CONTENDERS=${CONTENDERS:-tcpdump tcpdump-B256 vw vw2}
RUNS=${RUNS:-1}
SETTLE=${SETTLE:-1}
IDLE_MAX=${IDLE_MAX:-15}
IDLE_WAIT=${IDLE_WAIT:-300}
NS=${VWL_NS:-vwl-live}
A=vwl-a
B=vwl-b
MTU=9000
METRICS=127.0.0.1:9717 # inside the namespace: its own loopback, so the port is always free
PY=/usr/bin/python3
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
log() { printf '=== %s\n' "$*" >&2; }
die() { printf 'live.sh: %s\n' "$*" >&2; exit 1; }

((EUID == 0)) || die "needs root (network namespaces, veth, packet capture)"

# one run at a time: checked before anything is built or deleted, so a second run cannot wipe the
# output folder of one in progress (the lock is released when this script and its children end)
LOCK=/run/lock/$NS.lock
exec 9>"$LOCK"
flock -n 9 || die "another bench/live.sh is running (it holds $LOCK)"
if ip netns list | awk '{print $1}' | grep -qx "$NS"; then
    die "network namespace $NS exists, left over from a run that did not finish: remove it with ip netns del $NS"
fi

# ----------------------------------------------------------------------------------------------
# tools
# ----------------------------------------------------------------------------------------------
need=()
for pair in tcpreplay:tcpreplay tcpdump:tcpdump jq:jq curl:curl ethtool:ethtool capinfos:wireshark-common \
    ip:iproute2 python3:python3; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q -o DPkg::Lock::Timeout=900 "${need[@]}" >&2 ||
        { apt-get update -q -o DPkg::Lock::Timeout=900 >&2 &&
            apt-get install -y -q -o DPkg::Lock::Timeout=900 "${need[@]}" >&2; }
fi
for c in $CONTENDERS; do
    case $c in tcpdump | tcpdump-B256 | vw | vw2 | vw2-pcap) ;; *) die "unknown contender $c (tcpdump tcpdump-B256 vw vw2 vw2-pcap)" ;; esac
done
for r in $RATES; do
    [[ $r == topspeed || $r =~ ^(mbps|pps):[0-9]+(\.[0-9]+)?$ ]] || die "unknown rate $r (topspeed, mbps:N, pps:N)"
done

# ----------------------------------------------------------------------------------------------
# capture and build
# ----------------------------------------------------------------------------------------------
if [[ ! -f $PCAP ]]; then
    log "$PCAP is missing: making it (bench/make-capture.sh${SIZE_MB:+, SIZE_MB=$SIZE_MB})"
    bash "$ROOT/bench/make-capture.sh" "$PCAP" ${SIZE_MB:+"$SIZE_MB"}
fi
PCAP=$(cd "$(dirname "$PCAP")" && pwd)/$(basename "$PCAP")
EXPECTED=$PCAP.expected.json
[[ -f $EXPECTED ]] || log "no $EXPECTED: detections are not checked"

OUTDIR=$(dirname "$PCAP")/bench-live
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
# the veth pair, alone in its namespace
# ----------------------------------------------------------------------------------------------
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "veth pair $A -> $B in namespace $NS (MTU $MTU, offloads off, IPv6 off, no addresses)"
ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
# IPv6 off before the links exist: no link-local address, no router or neighbour solicitations,
# so the only frames on the pair are the ones tcpreplay sends
nsx sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$NS" link set lo up
ip -n "$NS" link add "$A" mtu $MTU type veth peer name "$B" mtu $MTU
for d in $A $B; do
    for f in rx tx sg tso gso gro lro rx-gro-hw rx-vlan-offload tx-vlan-offload; do
        nsx ethtool -K "$d" "$f" off >/dev/null 2>&1 || true
    done
    ip -n "$NS" link set "$d" up
done
sleep 0.5
OFFLOADS=$(nsx ethtool -k "$B" | awk -F': ' '/^(generic-receive-offload|tcp-segmentation-offload|generic-segmentation-offload|rx-checksumming|tx-checksumming|scatter-gather):/ {print $1 "=" $2}' | paste -sd' ' -)
log "offloads on $B: $OFFLOADS"

# ----------------------------------------------------------------------------------------------
# what is measured, and on what
# ----------------------------------------------------------------------------------------------
BYTES=$(stat -c %s "$PCAP")
PACKETS=$(capinfos -c -M "$PCAP" | awk -F': *' '/Number of packets/ {print $2}')
MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
MEM=$(free -b | awk '/^Mem:/ {printf "%.1f GiB", $2 / 2^30}')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
DEFAULT_W=$(($(nproc) > 1 ? $(nproc) - 1 : 1))
CLK_TCK=$(getconf CLK_TCK)

busy() { # percent of the machine's CPU time used over the next 0.5 s (by others: we are idle)
    local a b
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2];
        printf "%d", (t > 0 ? 100 * (y[1] - x[1]) / t : 0)}'
}
wait_idle() { # prints the other CPU use (percent) just before the run, and how long it waited
    local t0=$SECONDS b
    b=$(busy)
    while ((b > IDLE_MAX && SECONDS - t0 < IDLE_WAIT)); do
        sleep 2
        b=$(busy)
    done
    echo "$b $((SECONDS - t0))"
}
linkstat() { # DEV DIR FIELD -> counter
    ip -n "$NS" -s -j link show dev "$1" | jq -r ".[0].stats64.$2.$3"
}
softnet_drops() { # packets dropped because a CPU's input backlog was full (all CPUs, whole machine)
    local s=0 _cpu dropped _rest
    while read -r _cpu dropped _rest; do s=$((s + 16#$dropped)); done </proc/net/softnet_stat
    echo "$s"
}
metric() { # FILE NAME [LABEL-SUBSTRING] -> sum of the matching samples
    awk -v n="$2" -v l="${3:-}" '$1 !~ /^#/ && ($1 == n || index($1, n "{") == 1) && index($1, l) {s += $NF}
        END {printf "%.0f", s + 0}' "$1"
}
scrape() { # -> OUT FILE
    nsx curl -s -m 2 "http://$METRICS/metrics" >"$1.tmp" 2>/dev/null && mv "$1.tmp" "$1"
}
vw_counts() { # metrics file -> "captured kernel interface queue"
    # Every source of the interface: B itself (libpcap) or B#0, B#1, ... (fanout sockets).
    echo "$(metric "$1" vendorwatch_packets_received_total "source=\"$B")" \
        "$(metric "$1" vendorwatch_dropped_total 'stage="kernel"')" \
        "$(metric "$1" vendorwatch_dropped_total 'stage="interface"')" \
        "$(metric "$1" vendorwatch_dropped_total 'stage="queue"')"
}
cpu_secs() { # PID -> user + system seconds so far
    awk -v t="$CLK_TCK" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t}' "/proc/$1/stat" 2>/dev/null || echo 0
}
rate_args() {
    case $1 in
        topspeed) echo --topspeed ;;
        mbps:*) echo "--mbps=${1#mbps:}" ;;
        pps:*) echo "--pps=${1#pps:}" ;;
    esac
}
label_of() {
    case $1 in
        tcpdump) echo "tcpdump -w /dev/null" ;;
        tcpdump-B256) echo "tcpdump -B 262144 -w /dev/null" ;;
        vw) echo "vendorwatch, default workers ($DEFAULT_W)" ;;
        vw2) echo "vendorwatch --workers 2" ;;
        vw2-pcap) echo "vendorwatch --workers 2 --capture-threads 1" ;;
    esac
}

run_one() { # RATE CONTENDER RUN -> appends one JSON line to runs.jsonl
    local rate=$1 c=$2 r=$3 tag="$1-$2-$3" cap_pid rc=0 trc=0 idle b waited report= i
    local -a cmd
    tag=${tag//:/}
    case $c in
        tcpdump) cmd=(tcpdump -i "$B" -n -w /dev/null) ;;
        tcpdump-B256) cmd=(tcpdump -i "$B" -n -B 262144 -w /dev/null) ;;
        vw | vw2 | vw2-pcap)
            report=$OUTDIR/report-$tag.json
            # A fresh inventory per run: live's default (/var/lib/vendorwatch) need not exist here.
            rm -f "$OUTDIR/inventory-$tag.db"*
            cmd=("$VW" live -i "$B" --home-net 10.0.0.0/8,fd00::/8 --buffer-mb 256 --report "$report" --quiet
                --state "$OUTDIR/inventory-$tag.db"
                --metrics-addr "$METRICS")
            if [[ $c == vw2* ]]; then cmd+=(--workers 2); fi
            if [[ $c == vw2-pcap ]]; then cmd+=(--capture-threads 1); fi ;;
    esac
    echo "ip netns exec $NS ${cmd[*]}" >"$OUTDIR/cmd-$tag.txt"
    read -r b waited < <(wait_idle)
    log "run $r/$RUNS, $rate, $(label_of "$c"): other CPU use before the run ${b}% (waited ${waited} s; load average $(cut -d' ' -f1-3 /proc/loadavg))"
    local a_tx0 a_txd0 b_rx0 b_rxd0 sn0 a_tx1 a_txd1 b_rx1 b_rxd1 sn1
    a_tx0=$(linkstat $A tx packets) a_txd0=$(linkstat $A tx dropped)
    b_rx0=$(linkstat $B rx packets) b_rxd0=$(linkstat $B rx dropped) sn0=$(softnet_drops)

    # not through nsx: a backgrounded function is a subshell, and $! must be the capturer itself
    # (ip netns exec execs the command)
    ip netns exec "$NS" "${cmd[@]}" >"$OUTDIR/cap-$tag.out" 2>"$OUTDIR/cap-$tag.err" &
    cap_pid=$!
    PIDS+=("$cap_pid")
    local ready=0
    for i in $(seq 1 100); do
        if ! kill -0 "$cap_pid" 2>/dev/null; then break; fi
        if [[ $c == vw* ]]; then
            if [[ $(nsx curl -s -o /dev/null -w '%{http_code}' -m 1 "http://$METRICS/healthz" 2>/dev/null) == 200 ]]; then
                ready=1
                break
            fi
        elif grep -q 'listening on' "$OUTDIR/cap-$tag.err"; then
            ready=1
            break
        fi
        sleep 0.1
    done
    ((ready)) || die "$(label_of "$c") did not start: $(cat "$OUTDIR/cap-$tag.err")"
    sleep 0.5

    # shellcheck disable=SC2046
    nsx tcpreplay -i "$A" -K $(rate_args "$rate") "$PCAP" >"$OUTDIR/tcpreplay-$tag.txt" 2>&1 || trc=$?
    sleep "$SETTLE"

    local cpu counts prev= same=0 t0=$SECONDS
    if [[ $c == vw* ]]; then
        # stop only once vendorwatch has read everything it is going to read: its counters
        # (packets read, kernel/interface/queue drops) have not moved for 2 s
        while ((SECONDS - t0 < 60)); do
            scrape "$OUTDIR/metrics-$tag.txt" || true
            counts=$(vw_counts "$OUTDIR/metrics-$tag.txt" 2>/dev/null || true)
            if [[ -n $counts && $counts == "$prev" ]]; then
                same=$((same + 1))
                if ((same >= 4)); then break; fi
            else
                same=0
            fi
            prev=$counts
            sleep 0.5
        done
    fi
    cpu=$(cpu_secs "$cap_pid")
    kill -TERM "$cap_pid" 2>/dev/null || true
    wait "$cap_pid" || rc=$?
    PIDS=() # one capturer at a time
    a_tx1=$(linkstat $A tx packets) a_txd1=$(linkstat $A tx dropped)
    b_rx1=$(linkstat $B rx packets) b_rxd1=$(linkstat $B rx dropped) sn1=$(softnet_drops)

    local captured kernel iface queue received= other=
    if [[ $c == vw* ]]; then
        read -r captured kernel iface queue < <(vw_counts "$OUTDIR/metrics-$tag.txt")
        # every other stage of vendorwatch_dropped_total that is not zero: "stage/reason N, ..."
        other=$(awk '/^vendorwatch_dropped_total\{/ && !/stage="(kernel|interface|queue)"/ && $NF != 0 {
            st = $1; sub(/.*stage="/, "", st); sub(/".*/, "", st); re = $1; sub(/.*reason="/, "", re); sub(/".*/, "", re)
            printf "%s%s/%s %d", (n++ ? ", " : ""), st, re, $NF}' "$OUTDIR/metrics-$tag.txt")
    else
        local e=$OUTDIR/cap-$tag.err
        captured=$(awk '/packets? captured/ {print $1}' "$e")
        received=$(awk '/packets? received by filter/ {print $1}' "$e")
        kernel=$(awk '/packets? dropped by kernel/ {print $1}' "$e")
        iface=$(awk '/packets? dropped by interface/ {print $1}' "$e")
        queue=
    fi
    local t=$OUTDIR/tcpreplay-$tag.txt
    jq -n -c --arg rate "$rate" --arg c "$c" --argjson run "$r" --arg lab "$(label_of "$c")" \
        --arg sent "$(awk -F': *' '/Successful packets/ {print $2}' "$t")" \
        --arg failed "$(awk -F': *' '/Failed packets/ {print $2}' "$t")" \
        --arg retried "$(awk -F': *' '/Retried packets/ {s += $2} END {print s + 0}' "$t")" \
        --arg pps "$(sed -n 's/.*Rated: .*, \([0-9.]*\) pps.*/\1/p' "$t" | head -1)" \
        --arg mbps "$(sed -n 's/.*Rated: .*, \([0-9.]*\) Mbps,.*/\1/p' "$t" | head -1)" \
        --arg secs "$(sed -n 's/.*sent in \([0-9.]*\) seconds.*/\1/p' "$t" | head -1)" \
        --arg trc "$trc" --arg rc "$rc" --arg cpu "$cpu" --arg busy "$b" --arg waited "$waited" \
        --arg captured "$captured" --arg received "$received" --arg kernel "${kernel:-0}" \
        --arg iface "${iface:-0}" --arg queue "$queue" --arg report "$report" --arg other "$other" \
        --arg a_tx "$((a_tx1 - a_tx0))" --arg a_txd "$((a_txd1 - a_txd0))" \
        --arg b_rx "$((b_rx1 - b_rx0))" --arg b_rxd "$((b_rxd1 - b_rxd0))" --arg softnet "$((sn1 - sn0))" \
        '{rate: $rate, contender: $c, run: $run, label: $lab, sent: $sent, failed: $failed, retried: $retried,
          pps: $pps, mbps: $mbps, secs: $secs, tcpreplay_rc: $trc, rc: $rc, cpu: $cpu, busy: $busy,
          waited: $waited, captured: $captured, received: $received, kernel: $kernel, iface: $iface,
          queue: $queue, other_drops: $other, report: $report, a_tx: $a_tx, a_tx_dropped: $a_txd, b_rx: $b_rx,
          b_rx_dropped: $b_rxd, softnet_dropped: $softnet}' >>"$OUTDIR/runs.jsonl"
    log "  offered $(sed -n 's/.*Rated: \(.*\)/\1/p' "$t" | head -1); reached $B $((b_rx1 - b_rx0)); captured $captured, kernel drops ${kernel:-0}, interface drops ${iface:-0}${queue:+, queue drops $queue}; CPU ${cpu} s; exit $rc"
}

log "loading $(basename "$PCAP") into the page cache ($((BYTES / 1000000)) MB, $PACKETS packets)"
cat "$PCAP" >/dev/null
: >"$OUTDIR/runs.jsonl"
for rate in $RATES; do
    for r in $(seq 1 "$RUNS"); do
        for c in $CONTENDERS; do
            run_one "$rate" "$c" "$r"
        done
    done
done

# ----------------------------------------------------------------------------------------------
# table
# ----------------------------------------------------------------------------------------------
export BYTES PACKETS COMMIT DIRTY MODEL MEM LOAD RUNS PCAP EXPECTED OUTDIR HEAD IDLE_MAX IDLE_WAIT SETTLE
export NPROC=$(nproc) KERNEL=$(uname -r) DATE=$(date -u +%Y-%m-%d) OFFLOADS MTU
export TCPDUMP_V=$(tcpdump --version 2>&1 | head -1)
export TCPREPLAY_V=$(tcpreplay --version 2>&1 | head -1 | sed 's/ (build.*//')
export BACKLOG=$(sysctl -n net.core.netdev_max_backlog)
$PY - >"$OUTDIR/table.md" <<'PYEOF'
import ipaddress, json, os

E = os.environ
outdir = E["OUTDIR"]
runs = [json.loads(l) for l in open(f"{outdir}/runs.jsonl")]

expected = None
ex = {}
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
        a = ipaddress.ip_address(addr)
        for c in ex["copies"]:
            for src, dst in c["map"].items():
                s, d = ipaddress.ip_network(src), ipaddress.ip_network(dst)
                if a.version == d.version and a in d:
                    return str(ipaddress.ip_address(int(s.network_address) | (int(a) & int(d.hostmask)))), c["index"]
        return addr, None

def num(x):
    try:
        return int(float(x))
    except (TypeError, ValueError):
        return None

def fmt(x):
    n = num(x)
    return "-" if n is None else f"{n:,}"

def check(report):
    rep = json.load(open(report))
    dets = [(str(ipaddress.ip_address(h["ip"])), d["vendor"], d["category"])
            for h in rep["hosts"] for d in h["detections"] if not d.get("forwarded")]
    if expected is None:
        return len(dets), None
    got = set(dets)
    return len(dets), (sorted(expected - got), sorted(got - expected), len(dets) - len(got))

diffs = []
out = []
packets, bytes_ = int(E["PACKETS"]), int(E["BYTES"])
out.append(f"Capture: `{os.path.basename(E['PCAP'])}`, {bytes_ / 1e6:,.1f} MB, {packets:,} packets"
           + (f", {ex['expected']['client_hosts']:,} client hosts, {ex['expected']['detections']:,} expected "
              "host x vendor x category detections" if ex else "")
           + "; made by `bench/make-capture.sh`, frames of at most 1514 bytes.  ")
busy = [num(r["busy"]) or 0 for r in runs]
out.append(f"Machine: {E['NPROC']} cores ({E['MODEL']}), {E['MEM']} RAM, Linux {E['KERNEL']}; load average before "
           f"the runs {E['LOAD']}; other CPU use just before each run {min(busy)}-{max(busy)}% (each run waits up to "
           f"{E['IDLE_WAIT']} s for it to fall below {E['IDLE_MAX']}%; per run in the last column).  ")
dirty = f" plus uncommitted changes to {E['DIRTY'].replace(',', ', ')}" if E["DIRTY"] else ""
how = "built from `git archive HEAD`" if E["HEAD"] == "1" else "working tree"
out.append(f"vendorwatch commit `{E['COMMIT']}`{dirty} ({how}, `cargo build --release`); {E['TCPDUMP_V']}; "
           f"{E['TCPREPLAY_V']}; {E['RUNS']} run(s) per rate and contender; {E['DATE']}.  ")
out.append(f"Link: a veth pair alone in a network namespace, MTU {E['MTU']}, no addresses, IPv6 off, offloads off "
           f"({E['OFFLOADS']}); net.core.netdev_max_backlog {E['BACKLOG']}; `tcpreplay -i vwl-a -K RATE FILE`, "
           f"capture on vwl-b.")
out.append("")
out.append("| rate | offered packets/s | sent | reached vwl-b | contender | captured | kernel drops | interface drops "
           "| queue drops | capturer CPU s | detections found / expected | other CPU before |")
out.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|")
notes = []
for r in runs:
    rate = r["rate"]
    rate_s = {"topspeed": "`--topspeed`"}.get(rate) or f"`--{rate.split(':')[0]} {rate.split(':')[1]}`"
    pps = num(r["pps"])
    offered = f"{pps:,}" + (f" ({float(r['mbps']):,.0f} Mbit/s)" if r["mbps"] else "") if pps is not None else "?"
    det = "-"
    if r["report"]:
        if not os.path.exists(r["report"]):
            det = "no report"
        else:
            n, d = check(r["report"])
            if d is None:
                det = f"{n} (no ground truth)"
            elif not d[0] and not d[1] and not d[2]:
                det = f"{n} / {len(expected)}"
            else:
                det = (f"**{len(expected) - len(d[0])} / {len(expected)}** ({len(d[0])} missing, {len(d[1])} extra"
                       + (f", {d[2]} duplicate" if d[2] else "") + ")")
                diffs.append((r, d))
    label = r["label"] + ("" if r["rc"] == "0" else f" (exit {r['rc']})")
    queue = fmt(r["queue"]) if r["queue"] != "" else "-"
    out.append(f"| {rate_s} | {offered} | {fmt(r['sent'])} | {fmt(r['b_rx'])} | {label} | {fmt(r['captured'])} | "
               f"{fmt(r['kernel'])} | {fmt(r['iface'])} | {queue} | {r['cpu']} | {det} | {r['busy']}% |")
    if num(r["failed"]) or num(r["retried"]) or r["tcpreplay_rc"] != "0":
        notes.append(f"{rate}, {r['label']}: tcpreplay exit {r['tcpreplay_rc']}, {fmt(r['failed'])} failed, "
                     f"{fmt(r['retried'])} retried sends")
    if num(r["a_tx_dropped"]) or num(r["b_rx_dropped"]) or num(r["softnet_dropped"]):
        notes.append(f"{rate}, {r['label']}: vwl-a tx_dropped {fmt(r['a_tx_dropped'])}, vwl-b rx_dropped "
                     f"{fmt(r['b_rx_dropped'])}, CPU backlog drops (/proc/net/softnet_stat, whole machine) "
                     f"{fmt(r['softnet_dropped'])}")
    if r.get("other_drops"):
        notes.append(f"{rate}, {r['label']}: `vendorwatch_dropped_total` at other stages at the scrape: {r['other_drops']}"
                     + (" (reassembly/buffer_cap counts flows whose reassembly buffer shed bytes, when the flow ends: "
                        "a closed TCP flow ends 10 s of packet time after its FIN, the others at the stop, after the "
                        "scrape; not packets lost by the capture)" if "reassembly/" in r["other_drops"] else ""))
    if r["received"] and num(r["received"]) is not None:
        rest = num(r["received"]) - (num(r["captured"]) or 0) - (num(r["kernel"]) or 0)
        if rest > 0:
            notes.append(f"{rate}, {r['label']}: libpcap received {fmt(r['received'])}; {rest:,} were still in the "
                         "ring when tcpdump stopped")
out.append("")
out.append("offered: tcpreplay's own \"Rated\" figure. sent: its successful packets. reached vwl-b: the receive counter "
           "of the capture interface. captured: packets the capturer read from the kernel ring (tcpdump's \"packets "
           "captured\"; vendorwatch's `vendorwatch_packets_received_total`). kernel drops: the ring was full (libpcap "
           "`ps_drop`); interface drops: libpcap `ps_ifdrop` (the interface's rx_dropped); queue drops: packets "
           "vendorwatch read but shed because a worker's queue was full. vendorwatch ran as `vendorwatch live -i vwl-b "
           "--home-net 10.0.0.0/8,fd00::/8 --buffer-mb 256 --report R --quiet --metrics-addr 127.0.0.1:9717 "
           "[--workers 2]`; with `--quiet` it prints no summary, so its counters were scraped from /metrics once they "
           f"had stopped moving (at least {E['SETTLE']} s after tcpreplay ended), then it was stopped with SIGTERM; "
           "tcpdump was stopped with SIGTERM "
           f"{E['SETTLE']} s after tcpreplay ended. capturer CPU s: user + system time of the capturer up to the stop. "
           "detections: the host x vendor x category entries of R that are not `forwarded` "
           "(`jq '[.hosts[].detections[] | select(.forwarded|not)] | length'`), compared as a set with the ground "
           "truth.")
if notes:
    out.append("")
    out.append("Notes: " + "; ".join(notes) + ".")
print("\n".join(out))

if diffs:
    with open(f"{outdir}/differences.txt", "w") as f:
        for r, (missing, extra, dup) in diffs:
            f.write(f"## {r['rate']}, {r['label']}, run {r['run']} ({r['report']})\n")
            for kind, items in (("missing", missing), ("extra", extra)):
                f.write(f"{kind}: {len(items)}\n")
                by_cat = {}
                for h, v, c in items:
                    by_cat[c] = by_cat.get(c, 0) + 1
                if by_cat:
                    f.write("  by category: " + ", ".join(f"{k} {n}" for k, n in sorted(by_cat.items())) + "\n")
                for h, v, c in items:
                    base, copy = unmap(h)
                    f.write(f"    {h} {v} {c} (base {base}, copy {copy})\n")
    print(f"\nDetections differ from the ground truth: see {outdir}/differences.txt", file=os.sys.stderr)
PYEOF

TABLE=$OUTDIR/table.md
echo
cat "$TABLE"
if [[ -f $OUTDIR/differences.txt ]]; then
    echo
    echo "Differences from the ground truth (first lines of $OUTDIR/differences.txt):"
    grep -E '^(##|missing|extra|  by category)' "$OUTDIR/differences.txt" | head -40
fi

if ((WRITE)); then
    BM=$ROOT/BENCHMARKS.md
    [[ -f $BM ]] || printf '# vendorwatch benchmarks\n' >"$BM"
    if ! grep -q '<!-- bench:live:start -->' "$BM" || ! grep -q '<!-- bench:live:end -->' "$BM"; then
        cat >>"$BM" <<'EOF'

## Live capture (veth, tcpreplay)

How it is measured (`bench/live.sh --write`, see `bench/README.md`): the replay benchmark's capture
(`bench/make-capture.sh`) is sent by `tcpreplay` (loaded into memory first, `-K`) into one end of a veth
pair, at fixed rates (`--mbps`) and as fast as it can (`--topspeed`); the capturer listens on the other
end: `vendorwatch live` with the default workers and with 2, and tcpdump writing to /dev/null (with its
default kernel buffer and with the same 256 MiB as vendorwatch), one at a time, each with its own replay.
The table gives what tcpreplay offered, what reached the interface, what each capturer read and where
packets were lost (the kernel ring, the interface, vendorwatch's worker queues), and whether
vendorwatch's host report still holds every host x vendor x category detection of the ground truth.
The sender and the capturer share the machine's cores, so this is what one box can do, not a wire rate.

<!-- bench:live:start -->
<!-- bench:live:end -->
EOF
    fi
    $PY - "$BM" "$TABLE" <<'PYEOF'
import sys
bm, table = sys.argv[1:]
s = open(bm).read()
start, end = "<!-- bench:live:start -->", "<!-- bench:live:end -->"
a, b = s.index(start) + len(start), s.index(end)
open(bm, "w").write(s[:a] + "\n" + open(table).read().rstrip("\n") + "\n" + s[b:])
PYEOF
    log "wrote the table into $BM"
fi
