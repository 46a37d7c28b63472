//! DHCP on the flow table, which keeps no state for it: DHCP datagrams are not flows
//! (broadcasts, from 0.0.0.0). Each DHCPv4 or DHCPv6 message is read on its own, and the
//! addresses it binds to a machine become identities.

use crate::decode::UdpDatagram;
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{dhcp, Extracted, Identity, IdentitySource};
use crate::time::Timestamp;
use std::net::IpAddr;

/// DHCPv4 server and client ports.
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
/// DHCPv6 client and server (and relay) ports.
const DHCPV6_CLIENT_PORT: u16 = 546;
const DHCPV6_SERVER_PORT: u16 = 547;

/// Reads a datagram between DHCP ports (client to server, server or relay to client, relay
/// to server). Returns whether it was one (and so is not read as anything else).
pub(super) fn inspect(
    dgram: &UdpDatagram<'_>,
    ts: Timestamp,
    out: &mut impl FnMut(Extracted),
) -> bool {
    match (dgram.src_port, dgram.dst_port) {
        (DHCP_CLIENT_PORT, DHCP_SERVER_PORT)
        | (DHCP_SERVER_PORT, DHCP_CLIENT_PORT)
        | (DHCP_SERVER_PORT, DHCP_SERVER_PORT) => on_dhcp_message(dgram.payload, ts, out),
        (DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT)
        | (DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT)
        | (DHCPV6_SERVER_PORT, DHCPV6_SERVER_PORT) => on_dhcpv6_message(dgram.payload, ts, out),
        _ => return false,
    }
    true
}

/// Reads one DHCPv4 message: the address it binds to a machine becomes an identity.
fn on_dhcp_message(payload: &[u8], ts: Timestamp, out: &mut impl FnMut(Extracted)) {
    let msg = match dhcp::parse(payload) {
        Ok(m) => m,
        Err(e) => {
            out(Extracted::Anomaly(e.into()));
            return;
        }
    };
    if msg.anomalies.options_truncated {
        out(Extracted::Anomaly(FlowAnomaly::DhcpOptionsTruncated.into()));
    }
    let Some(binding) = msg.binding() else {
        return;
    };
    out(Extracted::Identity(Identity {
        ts,
        ip: IpAddr::V4(binding.address),
        mac: msg.client_mac(),
        hostname: msg.hostname(),
        client_id: msg.client_id_hex(),
        source: match binding.source {
            dhcp::BindingSource::Request => IdentitySource::DhcpRequest,
            dhcp::BindingSource::Inform => IdentitySource::DhcpInform,
            dhcp::BindingSource::Ack => IdentitySource::DhcpAck,
        },
    }));
}

/// Reads one DHCPv6 message: each address it binds becomes an identity.
fn on_dhcpv6_message(payload: &[u8], ts: Timestamp, out: &mut impl FnMut(Extracted)) {
    let msg = match dhcp::parse_v6(payload) {
        Ok(m) => m,
        Err(e) => {
            out(Extracted::Anomaly(e.into()));
            return;
        }
    };
    if msg.anomalies.options_truncated {
        out(Extracted::Anomaly(
            FlowAnomaly::Dhcpv6OptionsTruncated.into(),
        ));
    }
    if msg.anomalies.addresses_truncated {
        out(Extracted::Anomaly(
            FlowAnomaly::Dhcpv6AddressesTruncated.into(),
        ));
    }
    let (mac, hostname, client_id) = (msg.client_mac(), msg.hostname(), msg.client_id_hex());
    for b in msg.bindings() {
        out(Extracted::Identity(Identity {
            ts,
            ip: IpAddr::V6(b.address),
            mac,
            hostname: hostname.clone(),
            client_id: client_id.clone(),
            source: match b.source {
                dhcp::BindingSource::Ack => IdentitySource::Dhcpv6Reply,
                _ => IdentitySource::Dhcpv6Request,
            },
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use super::*;

    #[test]
    fn dhcp_request_and_ack_become_identities_and_keep_no_flow() {
        let frames = [
            (
                1,
                udp([0; 4], [255; 4], 68, 67, &dhcp::tests::dhclient_request()),
            ),
            (
                1,
                udp(
                    [10, 10, 3, 1],
                    [10, 10, 3, 101],
                    67,
                    68,
                    &dhcp::tests::dnsmasq_ack(),
                ),
            ),
            (
                2,
                udp([0; 4], [255; 4], 68, 67, &dhcp::tests::udhcpc_request()),
            ),
            // Not DHCP on the DHCP ports: counted, not a crash.
            (3, udp([0; 4], [255; 4], 68, 67, b"hello")),
        ];
        let mut ex = Extractor::new(ExtractorLimits::default());
        let got = collect(&mut ex, &frames);
        let ids = identities(&got);
        let row = |i: &Identity| {
            (
                i.ip.to_string(),
                i.mac.map(|m| m.to_string()),
                i.hostname.clone(),
                i.client_id.clone(),
                i.source,
            )
        };
        assert_eq!(
            ids.iter().map(row).collect::<Vec<_>>(),
            [
                (
                    "10.10.3.101".into(),
                    Some("02:00:5e:10:03:11".into()),
                    Some("ws-alice".into()),
                    None,
                    IdentitySource::DhcpRequest
                ),
                (
                    "10.10.3.101".into(),
                    Some("02:00:5e:10:03:11".into()),
                    Some("ws-alice".into()),
                    None,
                    IdentitySource::DhcpAck
                ),
                (
                    "10.10.3.102".into(),
                    Some("02:00:5e:10:03:12".into()),
                    Some("ws-bob".into()),
                    Some("01:02:00:5e:10:03:12".into()),
                    IdentitySource::DhcpRequest
                ),
            ]
        );
        assert!(got
            .iter()
            .any(|e| matches!(e, Extracted::Anomaly(a) if a.reason() == "dhcp_too_short")));
        assert_eq!(ex.active_flows(), 0);
        assert!(names(&got).is_empty());
    }

    #[test]
    fn dhcpv6_request_and_reply_become_identities() {
        let (client, server) = ("fe80::5eff:fe10:313", "fe80::5eff:fe10:301");
        let frames = [
            (
                1,
                udp6(
                    client,
                    "ff02::1:2",
                    546,
                    547,
                    &dhcp::tests::dhclient6_request(),
                ),
            ),
            (
                1,
                udp6(server, client, 547, 546, &dhcp::tests::dnsmasq6_reply()),
            ),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        let ids = identities(&got);
        let sources: Vec<IdentitySource> = ids.iter().map(|i| i.source).collect();
        assert_eq!(
            sources,
            [IdentitySource::Dhcpv6Request, IdentitySource::Dhcpv6Reply]
        );
        for i in &ids {
            assert_eq!(i.ip.to_string(), "fd00:10::3:103");
            assert_eq!(
                i.mac,
                Some(crate::mac::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x03, 0x13]))
            );
            assert_eq!(i.hostname.as_deref(), Some("ws-carol.lab"));
            assert_eq!(
                i.client_id.as_deref(),
                Some("00:03:00:01:02:00:5e:10:03:13")
            );
        }
    }
}
