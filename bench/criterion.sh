#!/usr/bin/env bash
# Runs the criterion benchmarks of the hot paths (benches/hot_paths.rs) and, with --write,
# puts their medians into BENCHMARKS.md between the bench:criterion markers.
# Usage: bash bench/criterion.sh [--write]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
cargo bench --bench hot_paths -- --warm-up-time 2 --measurement-time 5 2>&1 | tee "$out" >&2
table=$(python3 - "$out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rows = []
for m in re.finditer(r"^(\S+)\s*\n?\s*time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", text, re.M):
    name, lo, mid, hi = m.groups()
    rows.append(f"| `{name}` | {mid} | {lo} – {hi} |")
print("| benchmark | median | 95% interval |\n|---|---:|---|")
print("\n".join(rows))
PY
)
machine="$(nproc) cores ($(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r); commit $(git rev-parse --short HEAD); $(date -u +%Y-%m-%d)"
section="Machine: ${machine}.

${table}

\`match_name/N\`: four lookups (an exact name, a name under a suffix, a glob, a miss) against N generated
names; the cost per lookup is a handful of hash probes per label, whatever N is (the larger table
costs only cache misses). \`load_rules\`: parsing, validating and indexing a pack of 1,000,000 names."
echo "$section"
if [ "${1:-}" = --write ]; then
  python3 - "$section" <<'PY'
import sys
path = "BENCHMARKS.md"
text = open(path).read()
start, end = "<!-- bench:criterion:start -->", "<!-- bench:criterion:end -->"
block = f"{start}\n{sys.argv[1]}\n{end}"
if start in text:
    a = text.index(start); b = text.index(end) + len(end)
    text = text[:a] + block + text[b:]
else:
    text += f"\n## Hot paths (criterion)\n\n`bash bench/criterion.sh --write` (`cargo bench --bench hot_paths`).\n\n{block}\n"
open(path, "w").write(text)
PY
fi
