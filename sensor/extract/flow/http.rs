//! HTTP on a TCP flow: the client's request heads (Host, absolute-URI and CONNECT names,
//! user agent), and between them the bodies passed over (Content-Length or chunked, across
//! any number of segments), for up to `http_max_requests` requests per connection. After a
//! CONNECT the flow is probed again (the tunnel usually carries TLS).

use super::{App, Conn, Step};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{http, Detail, Extracted, NameKind};
use crate::time::Timestamp;

/// HTTP requests read per connection by default (a proxy or keep-alive connection carries
/// many hosts); `--http-max-requests` changes it.
pub const HTTP_MAX_REQUESTS: u32 = 1000;

/// Bytes of a request target or user agent kept in an event's detail.
const DETAIL_MAX: usize = 512;

/// What the next client bytes of an HTTP connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpNext {
    /// A request head.
    Head,
    /// The body of the last request, passed over to reach the next head.
    Body(http::BodySkip),
    /// Unknown: a head or body was cut short by the capture. The next request is looked
    /// for where a segment starts with a method.
    Resync,
}

/// An HTTP connection's state: requests read so far, and what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HttpState {
    requests: u32,
    next: HttpNext,
}

impl Default for HttpState {
    fn default() -> Self {
        HttpState {
            requests: 0,
            next: HttpNext::Head,
        }
    }
}

impl HttpState {
    /// Reads the client bytes of the connection (the server's are not read, nor kept).
    pub(super) fn inspect(
        &mut self,
        conn: &mut Conn,
        from_client: bool,
        ts: Timestamp,
        max_requests: u32,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        if !from_client {
            conn.to_client.release();
            return Step::Wait;
        }
        if conn.to_server.data().is_empty() {
            if cut > 0 {
                self.skip_missing(cut);
            }
            return Step::Wait;
        }
        match self.next {
            HttpNext::Body(body) => self.skip_body(conn, body, out),
            HttpNext::Resync => self.resync(conn),
            HttpNext::Head => self.head(conn, ts, max_requests, cut, out),
        }
    }

    /// Bytes the capture did not keep follow: body bytes to pass over, or (after a head)
    /// the start of something we cannot see.
    fn skip_missing(&mut self, cut: u32) {
        self.next = match self.next {
            HttpNext::Body(mut body) => {
                if body.skip_missing(u64::from(cut)) {
                    HttpNext::Body(body)
                } else {
                    HttpNext::Resync
                }
            }
            _ => HttpNext::Resync,
        };
    }

    fn skip_body(
        &mut self,
        conn: &mut Conn,
        mut body: http::BodySkip,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        match body.skip(conn.to_server.data()) {
            Err(e) => {
                out(Extracted::Anomaly(e.into()));
                Step::Finish
            }
            Ok((n, done)) => {
                conn.to_server.consume(n);
                // Body bytes are passed over, not inspected: they do not spend the
                // connection's inspection budget (MAX_BODY_SKIP bounds each body).
                conn.client_bytes = conn.client_bytes.saturating_sub(n as u64);
                self.next = if done {
                    HttpNext::Head
                } else {
                    HttpNext::Body(body)
                };
                Step::Again
            }
        }
    }

    /// Looks for the next request where a segment starts with a method.
    fn resync(&mut self, conn: &mut Conn) -> Step {
        let data = conn.to_server.data();
        let start = conn
            .to_server
            .segment_starts()
            .iter()
            .copied()
            .find(|&s| data.get(s..).is_some_and(http::starts_request));
        match start {
            Some(s) => {
                conn.to_server.consume(s);
                self.next = HttpNext::Head;
            }
            None => {
                let n = data.len();
                conn.to_server.consume(n);
            }
        }
        Step::Again
    }

    /// Reads one request head at the start of the client's buffer.
    fn head(
        &mut self,
        conn: &mut Conn,
        ts: Timestamp,
        max_requests: u32,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        let lead = http::empty_lines(conn.to_server.data());
        if lead > 0 {
            // Empty lines before a request line: the server skips them, and so do we.
            conn.to_server.consume(lead);
            return Step::Again;
        }
        let full = conn.to_server.is_full();
        let data = conn.to_server.data();
        // Nothing more of this head will come: read the lines that are whole.
        let parsed = http::parse_next_request(data, cut > 0 || full);
        let req = match parsed {
            http::Parse::NeedMore => return Step::Wait,
            http::Parse::NotHttp if self.requests > 0 => {
                // Bytes no server reads as a request (nginx answers 400): the next request
                // is looked for where a segment starts with one, rather than giving up on
                // the connection (a decoy request, then garbage, then the real one).
                out(Extracted::Anomaly(
                    FlowAnomaly::HttpRequestUnreadable.into(),
                ));
                let n = data.len();
                conn.to_server.consume(n);
                self.next = HttpNext::Resync;
                return Step::Again;
            }
            http::Parse::NotHttp => return Step::Finish,
            http::Parse::LineCut if cut > 0 => {
                out(Extracted::Anomaly(FlowAnomaly::HttpRequestLineCut.into()));
                let n = data.len();
                conn.to_server.consume(n);
                self.next = HttpNext::Resync;
                return Step::Again;
            }
            http::Parse::LineCut => {
                out(Extracted::Anomaly(
                    FlowAnomaly::HttpRequestHeadTooLarge.into(),
                ));
                return Step::Finish;
            }
            http::Parse::Request(req) => req,
        };
        match req.head {
            http::Head::Whole | http::Head::Lenient => {}
            http::Head::ManyHeaders => {
                out(Extracted::Anomaly(FlowAnomaly::HttpTooManyHeaders.into()))
            }
            http::Head::Cut if cut > 0 => out(Extracted::Anomaly(FlowAnomaly::HttpHeadCut.into())),
            http::Head::Cut => out(Extracted::Anomaly(
                FlowAnomaly::HttpRequestHeadTooLarge.into(),
            )),
        }
        if req.host_repeated {
            out(Extracted::Anomaly(FlowAnomaly::HttpHostRepeated.into()));
        }
        if req.header_folded {
            out(Extracted::Anomaly(FlowAnomaly::HttpHeaderFolded.into()));
        }
        let (detail, found) = names_of(&req);
        let head_len = req.head_len;
        let body = req.body();
        let closes = req.closes;
        // After CONNECT the client speaks the tunnelled protocol (TLS, usually).
        let tunnel = req.connect_host.is_some();
        for (kind, raw) in found {
            conn.emit_name(ts, kind, &raw, detail.clone(), out);
        }
        self.requests += 1;
        if closes {
            // The server answers this one and closes: what follows is no request it reads.
            out(Extracted::Anomaly(FlowAnomaly::HttpFramingAmbiguous.into()));
            return Step::Finish;
        }
        if self.requests >= max_requests {
            out(Extracted::Anomaly(FlowAnomaly::HttpMaxRequests.into()));
            return Step::Finish;
        }
        self.next = match body {
            Some(body) => HttpNext::Body(body),
            // A head too large for the buffer: the rest of the connection is not followed.
            None if cut == 0 => return Step::Finish,
            // Cut short: the rest of this request is unknown.
            None => HttpNext::Resync,
        };
        conn.to_server.consume(head_len);
        // A head read does not spend the connection's inspection budget either (as bodies
        // do not): `max_requests` bounds a keep-alive connection, whose later requests may
        // name other hosts.
        conn.client_bytes = conn.client_bytes.saturating_sub(head_len as u64);
        if !tunnel {
            return Step::Again;
        }
        if self.next == HttpNext::Resync {
            conn.to_server.consume(usize::MAX);
        }
        Step::Become(App::Probe)
    }
}

/// A request's detail, and the names it carries: its Host (the first, and the last when a
/// request has several: servers differ in which they take), an absolute target's host when
/// another, a CONNECT's host.
fn names_of(req: &http::Request<'_>) -> (Detail<'static>, Vec<(NameKind, Vec<u8>)>) {
    let detail = Detail::Http {
        method: req.method.to_string(),
        target: String::from_utf8_lossy(&req.target.as_bytes()[..req.target.len().min(DETAIL_MAX)])
            .into_owned(),
        user_agent: req
            .user_agent
            .map(|u| String::from_utf8_lossy(&u[..u.len().min(DETAIL_MAX)]).into_owned()),
    };
    let mut found: Vec<(NameKind, Vec<u8>)> = Vec::with_capacity(3);
    for h in [req.host, req.last_host, req.target_host]
        .into_iter()
        .flatten()
    {
        if !found.iter().any(|(_, seen)| seen == h) {
            found.push((NameKind::HttpHost, h.to_vec()));
        }
    }
    if let Some(h) = req.connect_host {
        found.push((NameKind::HttpConnect, h.to_vec()));
    }
    (detail, found)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use super::*;

    /// A client's segments from sequence number 1, one per request, after its SYN.
    fn requests(requests: &[&[u8]]) -> Vec<(u32, Vec<u8>)> {
        let mut frames = vec![(1, tcp(false, 0, SYN, b""))];
        let mut seq = 1u32;
        for r in requests {
            frames.push((1, tcp(false, seq, ACK, r)));
            seq += r.len() as u32;
        }
        frames
    }

    fn hosts(got: &[Extracted]) -> Vec<String> {
        names_of_kind(got, NameKind::HttpHost)
    }

    #[test]
    fn requests_nginx_reads_that_httparse_refuses_are_read() {
        // Each was served by nginx 1.22 (the review's check): an unknown method between two
        // requests (405, then the next is served), a byte past ASCII in the target, a space
        // after the version.
        let frames = requests(&[
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"FOO / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET /\x80 HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: dnl-02.geo.kaspersky.com\r\n\r\n",
        ]);
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            hosts(&got),
            [
                "a.example",
                "a.example",
                "dnl-01.geo.kaspersky.com",
                "dnl-02.geo.kaspersky.com"
            ]
        );
        // Garbage after a request: counted, and the next request is still read.
        let frames = requests(&[
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"\x16\x03\x01 not a request\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n",
        ]);
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(hosts(&got), ["a.example", "dnl-01.geo.kaspersky.com"]);
        assert_eq!(anomaly_count(&got, "http_request_unreadable"), 1);
    }

    #[test]
    fn many_request_heads_do_not_spend_the_inspection_budget() {
        // 40 keep-alive requests with 8 KB heads (320 KB, past the 256 KiB budget), then one
        // to a vendor host: a server with the default keepalive_requests serves them all.
        let padding = format!("X-Pad: {}\r\n", "p".repeat(8000));
        let decoy = format!("GET / HTTP/1.1\r\nHost: a.example\r\n{padding}\r\n");
        let mut list: Vec<&[u8]> = vec![decoy.as_bytes(); 40];
        let real = b"GET / HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n";
        list.push(real);
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &requests(&list),
        );
        assert_eq!(
            hosts(&got).last().map(String::as_str),
            Some("dnl-01.geo.kaspersky.com")
        );
    }

    #[test]
    fn keep_alive_is_followed_across_bodies_that_span_segments() {
        // python http.client: a 5,000-byte POST in four segments, a chunked PUT, then a
        // GET to a vendor host on the same connection.
        let mut frames = vec![(1, tcp(false, 0, SYN, b""))];
        let mut seq = 1u32;
        let mut send = |frames: &mut Vec<(u32, Vec<u8>)>, bytes: &[u8]| {
            for chunk in bytes.chunks(1448) {
                frames.push((1, tcp(false, seq, ACK, chunk)));
                seq += chunk.len() as u32;
            }
        };
        let mut post =
            b"POST /upload HTTP/1.1\r\nHost: www.example.org\r\nContent-Length: 5000\r\n\r\n"
                .to_vec();
        post.extend_from_slice(&[b'G'; 5000]);
        send(&mut frames, &post);
        let mut put =
            b"PUT /c HTTP/1.1\r\nHost: www.example.org\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for _ in 0..4 {
            put.extend_from_slice(b"5dc\r\n");
            put.extend_from_slice(&[b'G'; 1500]);
            put.extend_from_slice(b"\r\n");
        }
        put.extend_from_slice(b"0\r\n\r\n");
        send(&mut frames, &put);
        send(
            &mut frames,
            b"GET /index/u0607g.xml HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n",
        );
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            names(&got),
            [
                (NameKind::HttpHost, "www.example.org".to_string()),
                (NameKind::HttpHost, "www.example.org".to_string()),
                (NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string()),
            ]
        );
        // With a limit of two requests, the third is not read, and that is counted.
        let limits = ExtractorLimits {
            http_max_requests: 2,
            ..ExtractorLimits::default()
        };
        let got = collect(&mut Extractor::new(limits), &frames);
        assert_eq!(names(&got).len(), 2);
        assert_eq!(anomaly_count(&got, "http_max_requests"), 1);
    }

    #[test]
    fn empty_lines_before_a_request_line_are_skipped() {
        // RFC 9112 §2.2: a server ignores them (nginx answers both of these requests), so
        // they must not hide a request: before the first request of a connection (in its
        // own segment, or in front of the request line), and after a body.
        let requests: [&[&[u8]]; 3] = [
            &[b"\r\nGET / HTTP/1.1\r\nHost: activation-v2.kaspersky.com\r\n\r\n"],
            &[
                b"\r\n\r\n",
                b"\nGET / HTTP/1.1\r\nHost: activation-v2.kaspersky.com\r\n\r\n",
            ],
            &[
                b"POST /a HTTP/1.1\r\nHost: www.example.org\r\nContent-Length: 2\r\n\r\nhi",
                b"\r\nGET /b HTTP/1.1\r\nHost: activation-v2.kaspersky.com\r\n\r\n",
            ],
        ];
        for segments in requests {
            let mut frames = vec![(1, tcp(false, 0, SYN, b""))];
            let mut seq = 1u32;
            for bytes in segments {
                frames.push((1, tcp(false, seq, ACK, bytes)));
                seq += bytes.len() as u32;
            }
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            let hosts = names(&got);
            assert_eq!(
                hosts.last(),
                Some(&(
                    NameKind::HttpHost,
                    "activation-v2.kaspersky.com".to_string()
                )),
                "{segments:?}"
            );
        }
    }

    #[test]
    fn nothing_after_a_request_with_ambiguous_framing_is_read() {
        // Request smuggling's shapes: nginx answers the first request (400 or 501) and closes
        // the connection, so the request hidden after it never reaches it.
        let hidden = "GET / HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n";
        let heads = [
            "Content-Length: 76\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Content-Length: 5\r\nContent-Length: 6",
        ];
        for framing in heads {
            let request = format!(
                "POST / HTTP/1.1\r\nHost: www.example.org\r\n{framing}\r\n\r\n0\r\n\r\n{hidden}"
            );
            let frames = [
                (1, tcp(false, 0, SYN, b"")),
                (1, tcp(false, 1, ACK, request.as_bytes())),
            ];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(
                names(&got),
                [(NameKind::HttpHost, "www.example.org".to_string())],
                "{framing}"
            );
            assert_eq!(
                anomaly_count(&got, "http_framing_ambiguous"),
                1,
                "{framing}"
            );
        }
        // A plain chunked body, and one Content-Length given twice alike, are followed.
        for framing in [
            "Transfer-Encoding: chunked",
            "Content-Length: 5\r\nContent-Length: 5",
        ] {
            // Five bytes: the last chunk of a chunked body, or a body of length 5.
            let request = format!(
                "POST / HTTP/1.1\r\nHost: www.example.org\r\n{framing}\r\n\r\n0\r\n\r\n{hidden}"
            );
            let frames = [
                (1, tcp(false, 0, SYN, b"")),
                (1, tcp(false, 1, ACK, request.as_bytes())),
            ];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(names(&got).len(), 2, "{framing}");
            assert_eq!(
                anomaly_count(&got, "http_framing_ambiguous"),
                0,
                "{framing}"
            );
        }
    }

    #[test]
    fn every_host_of_a_request_with_two_host_headers_is_reported() {
        // nginx and Apache refuse it; Python's http.server takes the first, other servers
        // the last: both are named, and the request counted.
        let head = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nAccept: */*\r\nHost: activation-v2.kaspersky.com:80\r\n\r\n";
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[(1, tcp(false, 0, SYN, b"")), (1, tcp(false, 1, ACK, head))],
        );
        assert_eq!(
            names(&got),
            [
                (NameKind::HttpHost, "www.example.org".to_string()),
                (
                    NameKind::HttpHost,
                    "activation-v2.kaspersky.com".to_string()
                )
            ]
        );
        assert_eq!(anomaly_count(&got, "http_host_repeated"), 1);
        // The same host twice: one name, still counted.
        let head = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nHost: www.example.org\r\n\r\n";
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[(1, tcp(false, 0, SYN, b"")), (1, tcp(false, 1, ACK, head))],
        );
        assert_eq!(
            names(&got),
            [(NameKind::HttpHost, "www.example.org".to_string())]
        );
        assert_eq!(anomaly_count(&got, "http_host_repeated"), 1);
    }

    #[test]
    fn a_request_with_seventy_headers_still_names_its_host() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..70 {
            head.extend_from_slice(format!("X-Pad-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Host: dnl-01.geo.kaspersky.com\r\n\r\n");
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[(1, tcp(false, 0, SYN, b"")), (1, tcp(false, 1, ACK, &head))],
        );
        assert_eq!(
            names(&got),
            [(NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string())]
        );
        assert_eq!(anomaly_count(&got, "http_too_many_headers"), 1);
    }

    #[test]
    fn a_head_cut_by_the_snap_length_is_read_and_the_next_request_still_found() {
        // Snap length 128 on Ethernet keeps 114 bytes of IP: 74 of each request's 120+.
        let first = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let second = b"GET /x HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
        // 16 + 28 bytes of lines, then `Host: dnl-02.geo.kaspersky.com` fills the 74 bytes kept.
        let decoy = b"GET / HTTP/1.1\r\nUser-Agent: curl/7.88.1 ab\r\nHost: dnl-02.geo.kaspersky.com.example.net\r\n\r\n";
        let (s2, s3) = (
            1 + first.len() as u32,
            1 + (first.len() + second.len()) as u32,
        );
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, snap(tcp(false, 1, ACK, first), 114)),
                (1, snap(tcp(false, s2, ACK, second), 114)),
                (1, snap(tcp(false, s3, ACK, decoy), 114)),
            ],
        );
        assert_eq!(
            names(&got),
            [
                (NameKind::HttpHost, "www.example.org".to_string()),
                (NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string()),
            ]
        );
        // The decoy's Host line is cut after `.com`: never read.
        assert_eq!(anomaly_count(&got, "http_head_cut"), 3);
    }
}
