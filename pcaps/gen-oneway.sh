#!/usr/bin/env bash
# One-direction tap captures: what a tap (or a span port, a broken TAP leg, an asymmetric route)
# that carries only the client's side of a connection records. Each is the client's packets of a
# two-way capture of gen-evasion.sh, taken with the same BPF filter a one-direction capture
# would use (`src host CLIENT`), so the server's answer in the two-way capture says what the
# server received:
#
#   evasion-paws-oneway.pcap            evasion-paws.pcap's client side: the decoy that PAWS drops
#                                       and the real ClientHello, no SYN-ACK (timestamps agreed is
#                                       known only from the client's SYN and later segments)
#   evasion-hrr-decoy-real-oneway.pcap  evasion-hrr-decoy-real.pcap's client side: the decoy hello,
#                                       then the real one that followed the HelloRetryRequest the
#                                       tap does not carry
#   evasion-hrr-real-decoy-oneway.pcap  evasion-hrr-real-decoy.pcap's client side
#   evasion-pre-synack-oneway.pcap      evasion-pre-synack.pcap's client side: the decoy sent ahead
#                                       of the SYN-ACK and the real ClientHello at the same sequence
#                                       number, neither judged by a server segment on the tap
#
#   bash pcaps/gen-oneway.sh      (needs tcpdump; no root, no lab; then:
#                                  python3 pcaps/expected_evasion.py --write)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v tcpdump >/dev/null || { echo "gen-oneway: tcpdump is needed (apt-get install tcpdump)" >&2; exit 1; }
derive() { # SOURCE CLIENT
    local src=$HERE/$1.pcap out=$HERE/$1-oneway.pcap
    [[ -f $src ]] || { echo "gen-oneway: $src is missing (pcaps/gen-evasion.sh makes it)" >&2; exit 1; }
    tcpdump -r "$src" -w "$out" "src host $2" 2>/dev/null
    echo "gen-oneway: $(basename "$out"): $(tcpdump -r "$out" 2>/dev/null | wc -l) of $(tcpdump -r "$src" 2>/dev/null | wc -l) packets"
}
derive evasion-paws 10.40.1.12
derive evasion-hrr-decoy-real 10.40.1.11
derive evasion-hrr-real-decoy 10.40.1.11
derive evasion-pre-synack 10.40.1.12
