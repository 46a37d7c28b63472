#!/usr/bin/env bash
# The agency inventory at scale (a benchmark, not a test): a PostgreSQL of its own holding
# HOSTS hosts seen by SENSORS sensors over SITES sites, then
#   1. `vendorwatch hosts --inventory` (all, --vendor, --site) and `report --html` over it;
#   2. the shipping throughput of one sensor: a capture of SHIP_HOSTS hosts replayed with
#      the server down fills the spool; the server comes back and a run with nothing new to
#      read ships it all — its time is the shipping time (connect, migrate-check, batches).
# Usage: sudo bash bench/agency.sh [HOSTS] [SENSORS]      (default 1000000 100; root: runs
#        PostgreSQL as the postgres user).  Prints a Markdown table for BENCHMARKS.md.
# The inventory rows are generated in SQL in the shape sensors write (a snapshot per host and
# witness, its detections in columns); the shipping part uses the real sensor end to end.
set -euo pipefail
HOSTS=${1:-1000000}
SENSORS=${2:-100}
SITES=${SITES:-10}
SHIP_HOSTS=${SHIP_HOSTS:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VW=${VW:-$ROOT/target/release/vendorwatch}
[ -x "$VW" ] || (cd "$ROOT" && cargo build --release --bin vendorwatch)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/vw-agency-bench.XXXXXX)
chown postgres: "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg() { runuser -u postgres -- "$PGBIN/$1" "${@:2}"; }
cleanup() { pg pg_ctl -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
pg initdb -D "$WORK/data" -A trust -U vw >/dev/null
start() { pg pg_ctl -D "$WORK/data" -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_wal_size=4GB" -l "$WORK/log" -w start >/dev/null; }
stop() { pg pg_ctl -D "$WORK/data" -m fast -w stop >/dev/null; }
start
psql() { command psql -X -q -h "$WORK" -p "$PORT" -U vw "$@"; }
psql -d postgres -c "CREATE DATABASE inv"
URL="postgres://vw@127.0.0.1:$PORT/inv?sslmode=disable"
"$VW" hosts --create-schema --inventory "$URL" >/dev/null

echo "generating $HOSTS hosts, $SENSORS sensors, $SITES sites ..." >&2
gen_start=$(date +%s)
psql -d inv <<SQL
-- Each host has one witness; every tenth host a second one (another sensor of its site).
-- Categories rotate; one host in twenty is also a huawei host (a selective --vendor).
CREATE TEMP TABLE w AS
  SELECT i, 'site-' || (i % $SITES) AS site,
         ('10.0.0.0'::inet + (i / $SITES)) AS ip,
         'sensor-' || ((i % $SITES) + $SITES * ((i / $SITES) % ($SENSORS / $SITES))) AS sensor,
         (ARRAY['update','ksn','activation','web-portal'])[1 + i % 4] AS category,
         1700000000000000000::bigint + i * 1000000000::bigint AS t
  FROM generate_series(0, $HOSTS - 1) AS i
  UNION ALL
  SELECT i, 'site-' || (i % $SITES), ('10.0.0.0'::inet + (i / $SITES)),
         'sensor-' || ((i % $SITES) + $SITES * (((i / $SITES) + 1) % ($SENSORS / $SITES))),
         (ARRAY['update','ksn','activation','web-portal'])[1 + i % 4],
         1700000000000000000::bigint + i * 1000000000::bigint + 5000000000
  FROM generate_series(0, $HOSTS - 1, 10) AS i;
INSERT INTO vw_witness_hosts (site, ip, sensor_id, inventory_id, seq, mac, hostname, host)
SELECT site, ip, sensor, 'bench', 1, NULL, 'pc-' || i, jsonb_build_object(
  'mac', NULL, 'hostname', 'pc-' || i, 'hostname_source', NULL, 'ech_connections', 0,
  'encrypted_dns_connections', 0, 'encrypted_dns_via', '[]'::jsonb, 'identities', '[]'::jsonb,
  'identities_omitted', 0,
  'detections', jsonb_build_array(jsonb_build_object(
     'vendor', 'kaspersky', 'category', category, 'severity', 'high', 'first_seen', t,
     'last_seen', t + 60000000000, 'count', 3, 'forwarded', false, 'suppressed', NULL,
     'alerted_at', t, 'rules', jsonb_build_array('kaspersky.' || category),
     'indicators', jsonb_build_array(jsonb_build_object('kind', 'dns', 'value', 'dnl-01.geo.kaspersky.com', 'count', 3)),
     'indicators_omitted', 0,
     'evidence', jsonb_build_array(jsonb_build_object('t', t, 'indicator', jsonb_build_object('kind', 'dns', 'value', 'dnl-01.geo.kaspersky.com'),
        'src_ip', host(ip), 'src_port', 50000, 'dst_ip', '10.255.0.53', 'dst_port', 53, 'tcp', false))))
  || CASE WHEN i % 20 = 0 THEN jsonb_build_array(jsonb_build_object(
     'vendor', 'huawei', 'category', 'cloud', 'severity', 'medium', 'first_seen', t, 'last_seen', t,
     'count', 1, 'forwarded', false, 'suppressed', NULL, 'alerted_at', t, 'rules', '[]'::jsonb,
     'indicators', '[]'::jsonb, 'indicators_omitted', 0, 'evidence', '[]'::jsonb)) ELSE '[]'::jsonb END)
FROM w;
INSERT INTO vw_witness_detections (site, ip, sensor_id, inventory_id, vendor, category, severity, first_seen, last_seen, count, forwarded, alerted_at)
SELECT site, ip, sensor, 'bench', 'kaspersky', category, 'high', to_timestamp(t / 1e9), to_timestamp((t + 60000000000) / 1e9), 3, false, to_timestamp(t / 1e9) FROM w;
INSERT INTO vw_witness_detections (site, ip, sensor_id, inventory_id, vendor, category, severity, first_seen, last_seen, count, forwarded, alerted_at)
SELECT site, ip, sensor, 'bench', 'huawei', 'cloud', 'medium', to_timestamp(t / 1e9), to_timestamp(t / 1e9), 1, false, to_timestamp(t / 1e9) FROM w WHERE i % 20 = 0;
INSERT INTO vw_ship_marks SELECT DISTINCT sensor, 'bench', site, 1 FROM w;
VACUUM ANALYZE;
SQL
gen_end=$(date +%s)
witnesses=$(psql -d inv -t -A -c "SELECT count(*) FROM vw_witness_hosts")
hosts=$(psql -d inv -t -A -c "SELECT count(*) FROM (SELECT DISTINCT site, ip FROM vw_witness_hosts) h")
sensors=$(psql -d inv -t -A -c "SELECT count(DISTINCT sensor_id) FROM vw_witness_hosts")
size=$(psql -d inv -t -A -c "SELECT pg_size_pretty(pg_database_size('inv'))")
echo "generated in $((gen_end - gen_start)) s: $hosts hosts, $witnesses witness rows, $sensors sensors, $size" >&2

measure() { # label, command...
  local label=$1; shift
  local out
  /usr/bin/time -o "$WORK/time" -f "%e %M" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  out=$(tail -1 "$WORK/time")
  printf '| %s | %s s | %s MiB |\n' "$label" "${out% *}" "$(( ${out#* } / 1024 ))"
}
echo
echo "Inventory: $hosts hosts (site, address), $witnesses witness snapshots, $sensors sensors, $SITES sites; database $size."
echo
echo "| command | wall time | peak RSS |"
echo "| --- | --- | --- |"
measure "\`hosts --inventory … --format json\` (every host)" "$VW" hosts --inventory "$URL" --format json
measure "\`hosts --inventory … --vendor huawei --format csv\` (5 % of hosts)" "$VW" hosts --inventory "$URL" --vendor huawei --format csv
measure "\`hosts --inventory … --site site-3 --format csv\` (one site of $SITES)" "$VW" hosts --inventory "$URL" --site site-3 --format csv
measure "\`report --html --inventory … --site site-3\` (one site's report)" "$VW" report --inventory "$URL" --site site-3 --html "$WORK/report.html"
# The whole agency as one HTML page: its memory grows with the hosts (a few KB each; every host
# gets its evidence section), so at a million hosts it is left out unless FULL_REPORT=1.
if [ "${FULL_REPORT:-0}" = 1 ] || [ "$HOSTS" -le 200000 ]; then
  measure "\`report --html --inventory …\` (the whole agency)" "$VW" report --inventory "$URL" --html "$WORK/report.html"
fi
measure "\`SELECT site, count(*) FROM vw_hosts GROUP BY site\` (Grafana: hosts per site)" /usr/bin/psql -X -q -h "$WORK" -p "$PORT" -U vw -d inv -c "SELECT site, count(*) FROM vw_hosts GROUP BY site"

# 2. Shipping throughput of one sensor.
echo "shipping: a capture of $SHIP_HOSTS hosts ..." >&2
/usr/bin/python3 - "$WORK/ship.pcap" "$SHIP_HOSTS" <<'PY'
import sys
from scapy.all import Ether, IP, UDP, DNS, DNSQR, wrpcap
out, n = sys.argv[1], int(sys.argv[2])
pkts = []
for i in range(n):
    src = "10.%d.%d.%d" % (100 + (i >> 16), (i >> 8) & 255, i & 255)
    for j, name in enumerate(("dnl-01.geo.kaspersky.com", "ksn-url-geo.kaspersky-labs.com")):
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst="10.255.0.53") / UDP(sport=40000 + j, dport=53) / DNS(id=i & 0xffff, rd=1, qd=DNSQR(qname=name))
        p.time = 1700000000 + i * 0.001 + j * 0.0001
        pkts.append(p)
wrpcap(out, pkts)
PY
head -c 24 "$WORK/ship.pcap" > "$WORK/empty.pcap"
stop
"$VW" replay -q --inventory "$URL" --sensor-id ship --site bench --state "$WORK/ship.db" \
  --inventory-wait 0 --inventory-backlog 10000000 "$WORK/ship.pcap" 2>/dev/null || true
pending=$(sqlite3 "$WORK/ship.db" "SELECT count(*) FROM agency_spool" 2>/dev/null || echo "?")
start
t0=$(date +%s.%N)
"$VW" replay -q --inventory "$URL" --sensor-id ship --site bench --state "$WORK/ship.db" "$WORK/empty.pcap" 2>/dev/null
t1=$(date +%s.%N)
dets=$(psql -d inv -t -A -c "SELECT count(*) FROM vw_witness_detections WHERE sensor_id = 'ship'")
shipped=$(psql -d inv -t -A -c "SELECT count(*) FROM vw_witness_hosts WHERE sensor_id = 'ship'")
python3 - "$t0" "$t1" "$dets" "$shipped" "$pending" <<'PY'
import sys
t0, t1, dets, hosts, pending = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = t1 - t0
print()
print(f"Shipping (one sensor, batches of 500, into the inventory above): {hosts} host snapshots ({pending} were waiting in the spool), {dets} detections in {s:.1f} s: **{dets / s:,.0f} detections/s**, {hosts / s:,.0f} hosts/s.")
PY
