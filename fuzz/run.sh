#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, and
# prints a results table (Markdown, also written to fuzz/work/results.md).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]        default: 60 s, every target
#
# Stable Rust only: cargo-fuzz passes -Zsanitizer=address, a nightly flag, which
# RUSTC_BOOTSTRAP=1 unlocks on a stable compiler. AddressSanitizer is tried first;
# if that build fails the script falls back to `--sanitizer none` (still coverage-guided).
# Set SANITIZER=none (or address) to choose.
#
# The targets are built once, then the libFuzzer binaries are run directly: `cargo fuzz run`
# would rebuild whenever sensor/ changed in between, and each run would fuzz another build.
#
# Seeds in fuzz/corpus/<target>/ are only read; what libFuzzer finds goes to
# fuzz/work/corpus/<target>/ (git-ignored), logs to fuzz/work/logs/. A crash, timeout or
# out-of-memory input is copied to fuzz/regressions/<target>/; reproduce it with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> regressions/<target>/<file>
set -uo pipefail

secs=${1:-60}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p work/logs
# What is built: HEAD, plus whatever sensor/ held uncommitted at build time.
rev=$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C .. status --porcelain -- sensor 2>/dev/null)" ] || rev="$rev + uncommitted sensor/ changes"
sanitizer=${SANITIZER:-}
if [ -z "$sanitizer" ]; then
    if cargo fuzz build --sanitizer address >work/logs/build.log 2>&1; then
        sanitizer=address
    else
        echo "AddressSanitizer build failed (see fuzz/work/logs/build.log); using --sanitizer none" >&2
        sanitizer=none
    fi
fi
if ! cargo fuzz build --sanitizer "$sanitizer" >>work/logs/build.log 2>&1; then
    tail -30 work/logs/build.log >&2
    echo "build failed" >&2
    exit 2
fi

bin_dir=target/x86_64-unknown-linux-gnu/release

results=work/results.md
{
    echo "Build: $rev; sanitizer: $sanitizer; $secs s per target; $(date -u +%Y-%m-%dT%H:%MZ); $(rustc --version | cut -d' ' -f1-2)"
    echo
    echo "| target | seconds | executions | exec/s | cov | ft | corpus (files/bytes) | new units | crashes |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
} >"$results"

failed=0
for t in "${targets[@]}"; do
    mkdir -p "work/corpus/$t" "corpus/$t" "artifacts/$t"
    log="work/logs/$t.log"
    ls "artifacts/$t" | sort >work/before
    start=$(date +%s)
    echo "== $t ($secs s)" >&2
    # libFuzzer grows inputs up to the largest seed (at least 4096 bytes); the ClientHello
    # joiner has a 64 KiB cap (MAX_CLIENT_HELLO) that only longer inputs reach.
    case "$t" in
        tls_client_hello) extra=(-max_len=70000) ;;
        *) extra=() ;;
    esac
    "$bin_dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${extra[@]}" \
        "work/corpus/$t" "corpus/$t" >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))

    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: K/Sb ... exec/s: E ..."
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    field() { sed -nE "s/.* $1:? ([^ ]+).*/\1/p" <<<"$last"; }
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -1)
    new=$(sed -nE 's/^stat::new_units_added: *([0-9]+).*/\1/p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")

    found=()
    for f in $(ls "artifacts/$t" | sort | comm -13 work/before -); do
        mkdir -p "regressions/$t"
        cp "artifacts/$t/$f" "regressions/$t/$f"
        found+=("$f")
    done
    if [ ${#found[@]} -gt 0 ]; then
        crashes="${#found[@]}: ${found[*]}"
        failed=1
    elif [ $rc -ne 0 ]; then
        crashes="exit $rc, see work/logs/$t.log"
        failed=1
    else
        crashes=0
    fi
    echo "| $t | $elapsed | ${execs:-?} | ${rate:-?} | $(field cov) | $(field ft) | $(field corp) | ${new:-?} | $crashes |" >>"$results"
    echo "   $crashes crash(es); $(field cov) cov, $(field ft) ft, ${execs:-?} execs" >&2
done

cat "$results"
exit $failed
