//! HTTP/1.x request heads: the names a request reveals.
//!
//! `httparse` reads the request line and headers; this module turns them into the Host
//! header, the host of an absolute-form target (a request sent to a forward proxy), the
//! target of `CONNECT host:port` (what an agency's proxy sees of HTTPS), and the User-Agent.
//!
//! Two heads `httparse` will not read are still read line by line: one with more than
//! `MAX_HEADERS` headers (every header is read; the caller counts the anomaly), and one
//! whose bytes end inside it because the capture cut the frame (`parse_request_cut`):
//! then the request line and the header lines that end inside the captured bytes are
//! read, and a line cut short is never used (a cut `Host:` could name a different host).
//!
//! `BodySkip` follows a request's body (Content-Length or chunked) across as many
//! segments as it spans, so the next request on a keep-alive connection is read too.

use super::names::strip_port;

/// Headers `httparse` reads per request; a request with more is read by the line reader.
const MAX_HEADERS: usize = 64;
/// Largest body skipped to reach the next request on a connection; a larger one ends
/// inspection of the connection (counted). Real update and telemetry bodies are far smaller.
pub const MAX_BODY_SKIP: u64 = 64 << 20;
/// Chunk-size line (with extensions) and trailer bytes read before a chunked body is
/// taken as malformed.
const MAX_CHUNK_LINE: u16 = 4096;

#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    NeedMore,
    NotHttp,
    /// The bytes end inside the request line: nothing whole to read.
    LineCut,
    Request(Request<'a>),
}

/// How much of a request head was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// The whole head, by `httparse`.
    Whole,
    /// The whole head, by the line reader: it has more than `MAX_HEADERS` headers.
    ManyHeaders,
    /// The whole head, by the line reader: `httparse` refused it (a method no list has, a
    /// byte past ASCII in the target, a space before a line's end), as nginx does not.
    Lenient,
    /// The bytes end inside the head: the request line and the whole header lines were
    /// read; where the head ends is not known.
    Cut,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// The Host header, without its port.
    pub host: Option<&'a [u8]>,
    /// The request has more than one Host header (RFC 9112 §3.2 has servers refuse it;
    /// nginx and Apache do, others take the first or the last).
    pub host_repeated: bool,
    /// The last Host header, without its port, when it names another host than the first.
    pub last_host: Option<&'a [u8]>,
    /// A header of the head is folded onto a continuation line (obs-fold, RFC 9112 §5.2):
    /// nginx refuses such a request, a server that unfolds (Python's http.server) reads it.
    pub header_folded: bool,
    /// Host of an absolute-form target (`GET http://host/ HTTP/1.1`), without its port.
    pub target_host: Option<&'a [u8]>,
    /// `CONNECT host:port`: the host.
    pub connect_host: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// Bytes of the request head, so the caller can move on to the body or the next
    /// request (with `Head::Cut`, the bytes of the lines read).
    pub head_len: usize,
    /// Body length, when it is given by Content-Length (`None` for chunked or unknown).
    pub body_len: Option<u64>,
    pub chunked: bool,
    /// Where the body ends is ambiguous, and a server closes the connection after answering
    /// (RFC 9112 §6.3): Transfer-Encoding with Content-Length, a Transfer-Encoding other than
    /// a lone `chunked` (nginx and Apache answer 501 or 400), or Content-Lengths that differ.
    /// What follows on the connection is not a request the server reads: request smuggling
    /// hides a second request there.
    pub closes: bool,
    pub head: Head,
}

impl Request<'_> {
    /// What follows the head on the wire, for `BodySkip`; `None` when the head is cut.
    pub fn body(&self) -> Option<BodySkip> {
        match self.head {
            Head::Cut => None,
            // RFC 9112 §6.3: chunked wins over Content-Length.
            _ if self.chunked => Some(BodySkip::Chunked(Chunked::default())),
            _ => Some(BodySkip::Length(self.body_len.unwrap_or(0))),
        }
    }
}

const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"SEARCH ",
];

/// Bytes of empty lines at the start of `data`: a server ignores them before a request line
/// (RFC 9112 §2.2; nginx any number of CR and LF), and a client may send one after a body.
pub fn empty_lines(data: &[u8]) -> usize {
    data.iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()
}

/// Cheap probe: the stream starts with a known method and a space (or could, given more).
pub fn looks_like_request(data: &[u8]) -> bool {
    METHODS.iter().any(|m| {
        let n = m.len().min(data.len());
        n > 0 && data[..n] == m[..n]
    })
}

/// The bytes start with a whole known method and its space: a request starts here.
pub fn starts_request(data: &[u8]) -> bool {
    METHODS.iter().any(|m| data.starts_with(m))
}

/// Parses one request head at the start of `data`.
pub fn parse_request(data: &[u8]) -> Parse<'_> {
    parse(data, false)
}

/// Parses one request head at the start of `data`, where `data` is all there will be of
/// it (the capture cut the frame, or the buffer is full): the lines that are whole are read.
pub fn parse_request_cut(data: &[u8]) -> Parse<'_> {
    parse(data, true)
}

/// Parses one request head at the start of `data` on a connection already read as HTTP: any
/// method token is taken (nginx parses `FOO / HTTP/1.1`, answers 405 and reads the next
/// request), and a head `httparse` refuses is read line by line.
pub fn parse_next_request(data: &[u8], cut: bool) -> Parse<'_> {
    if looks_like_request(data) {
        // A head httparse refuses goes to the line reader there.
        parse(data, cut)
    } else {
        lenient(data, cut)
    }
}

/// A whole head read by the line reader (`Head::Lenient`); `NeedMore` until its blank line
/// is in `data`, unless nothing more will come (`cut`).
fn lenient(data: &[u8], cut: bool) -> Parse<'_> {
    match read_lines(data) {
        Parse::Request(mut r) if r.head == Head::ManyHeaders => {
            r.head = Head::Lenient;
            Parse::Request(r)
        }
        Parse::Request(r) if cut => Parse::Request(r),
        Parse::Request(_) | Parse::LineCut if !cut => Parse::NeedMore,
        other => other,
    }
}

fn parse(data: &[u8], cut: bool) -> Parse<'_> {
    if !looks_like_request(data) {
        return Parse::NotHttp;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match httparse::ParserConfig::default()
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .ignore_invalid_headers_in_requests(true)
        .parse_request(&mut req, data)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if cut => return read_lines(data),
        Ok(httparse::Status::Partial) => return Parse::NeedMore,
        // Too many headers for httparse: every line is still read, one by one.
        Err(httparse::Error::TooManyHeaders) => return read_lines(data),
        // A byte or a space httparse refuses where nginx does not (a byte past ASCII in the
        // target, a space after the version): the head is read line by line.
        Err(_) => return lenient(data, cut),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parse::NotHttp;
    };
    let fields = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    let mut request = request(method, target, fields, head_len, Head::Whole);
    // httparse passes over continuation lines (they are not headers): a Host whose value
    // is on them is read here.
    let head = &data[..head_len.min(data.len())];
    if head
        .windows(2)
        .any(|w| w[0] == b'\n' && matches!(w[1], b' ' | b'\t'))
    {
        request.header_folded = true;
        if request.host.is_none() {
            request.host = folded_host(head);
        }
    }
    Parse::Request(request)
}

/// The host of a Host header whose own line is empty and whose value is on the continuation
/// lines after it (obs-fold): the first of them that is not blank, without its port. A
/// continuation of another header is part of that header, whatever it reads like.
fn folded_host(head: &[u8]) -> Option<&[u8]> {
    let mut in_empty_host = false;
    for l in head.split(|&c| c == b'\n').skip(1) {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if matches!(l.first(), Some(b' ' | b'\t')) {
            let value = trim(l);
            if in_empty_host && !value.is_empty() {
                return Some(strip_port(value));
            }
            continue;
        }
        in_empty_host = l.iter().position(|&c| c == b':').is_some_and(|colon| {
            l[..colon].eq_ignore_ascii_case(b"host") && trim(&l[colon + 1..]).is_empty()
        });
    }
    None
}

fn request<'a>(
    method: &'a str,
    target: &'a str,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    head_len: usize,
    head: Head,
) -> Request<'a> {
    let mut host = None;
    let mut last_host = None;
    let mut host_repeated = false;
    let mut user_agent = None;
    let mut body_len = None;
    let mut chunked = false;
    let mut transfer_encoding = None;
    // Content-Lengths that differ, or Transfer-Encoding given twice.
    let mut ambiguous = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"host") {
            let value = strip_port(trim(value));
            match host {
                None => host = Some(value),
                Some(_) => {
                    host_repeated = true;
                    last_host = Some(value);
                }
            }
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            user_agent.get_or_insert(trim(value));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let len = std::str::from_utf8(trim(value))
                .ok()
                .and_then(|v| v.parse().ok());
            ambiguous |= body_len.is_some() && body_len != len;
            body_len = len;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            ambiguous |= transfer_encoding.is_some();
            transfer_encoding = Some(trim(value));
            // The last coding is the one that frames the body (RFC 9112 §6.1).
            chunked = trim(value)
                .rsplit(|&c| c == b',')
                .next()
                .is_some_and(|c| trim(c).eq_ignore_ascii_case(b"chunked"));
        }
    }
    let closes = ambiguous
        || transfer_encoding
            .is_some_and(|te| body_len.is_some() || !te.eq_ignore_ascii_case(b"chunked"));
    let connect_host =
        (method.eq_ignore_ascii_case("CONNECT")).then(|| strip_port(target.as_bytes()));
    Request {
        method,
        target,
        host: host.filter(|h| !h.is_empty()),
        host_repeated,
        last_host: last_host.filter(|h| !h.is_empty() && Some(*h) != host),
        header_folded: false,
        target_host: absolute_form_host(target),
        connect_host: connect_host.filter(|h| !h.is_empty()),
        user_agent: user_agent.filter(|u| !u.is_empty()),
        head_len,
        body_len,
        chunked,
        closes,
        head,
    }
}

/// The line at the start of `data` without its CR LF (or bare LF), and the offset after
/// it; `None` when the line does not end inside `data`.
/// A last line that ends in CR without its LF (the capture cut between the two) is whole:
/// a CR cannot be part of a field value.
fn line(data: &[u8]) -> Option<(&[u8], usize)> {
    match data.iter().position(|&c| c == b'\n') {
        Some(lf) => {
            let text = &data[..lf];
            Some((text.strip_suffix(b"\r").unwrap_or(text), lf + 1))
        }
        // Not an empty line: that would end the head, and the LF still to come is not body.
        None => match data.strip_suffix(b"\r") {
            Some(text) if !text.is_empty() => Some((text, data.len())),
            _ => None,
        },
    }
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Reads a head line by line: the request line, then every header line that ends inside
/// `data`, up to the blank line that ends the head (`Head::ManyHeaders`) or the end of the
/// bytes (`Head::Cut`). Lines that are not `name: value` are ignored, as `httparse` is
/// told to do.
fn read_lines(data: &[u8]) -> Parse<'_> {
    let Some((request_line, mut at)) = line(data) else {
        return Parse::LineCut;
    };
    let mut parts = request_line.split(|&c| c == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::NotHttp;
    };
    // A byte past ASCII in the target is taken, as nginx takes it (obs-text); controls are not.
    if !is_token(method)
        || !version.starts_with(b"HTTP/")
        || target.iter().any(|&c| c <= b' ' || c == 0x7f)
    {
        return Parse::NotHttp;
    }
    let Ok(method) = std::str::from_utf8(method) else {
        return Parse::NotHttp;
    };
    // The target as far as it is text (what follows a byte that is not is left out).
    let target = match std::str::from_utf8(target) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&target[..e.valid_up_to()]).unwrap_or_default(),
    };
    let start = at;
    let mut end = None;
    while let Some((text, n)) = data.get(at..).and_then(line) {
        at += n;
        if text.is_empty() {
            end = Some(at);
            break;
        }
    }
    let head_len = end.unwrap_or(at);
    let fields = data[start..head_len]
        .split(|&c| c == b'\n')
        .filter_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let colon = l.iter().position(|&c| c == b':')?;
            is_token(&l[..colon]).then(|| (&l[..colon], &l[colon + 1..]))
        });
    let head = if end.is_some() {
        Head::ManyHeaders
    } else {
        Head::Cut
    };
    Parse::Request(request(method, target, fields, head_len, head))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// `http://user@host:port/path` → `host`.
fn absolute_form_host(target: &str) -> Option<&[u8]> {
    let lower_scheme = target.get(..8).map(|s| s.to_ascii_lowercase());
    let rest = match lower_scheme.as_deref() {
        Some(s) if s.starts_with("http://") => &target[7..],
        Some(s) if s.starts_with("https://") => &target[8..],
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = strip_port(authority.as_bytes());
    (!host.is_empty()).then_some(host)
}

/// The body still to pass over before the next request head on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySkip {
    /// Bytes left of a Content-Length body (0: the next byte starts a request).
    Length(u64),
    Chunked(Chunked),
}

/// Where a chunked body (RFC 9112 §7.1) is, byte by byte, so it can span any segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chunked {
    state: ChunkState,
    /// Chunk size being read, or data bytes left of the current chunk.
    size: u64,
    /// Bytes of the current size line or trailer line.
    line: u16,
    /// Body bytes seen so far (bounded by `MAX_BODY_SKIP`).
    total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Size,
    /// After `;`: chunk extensions, up to the end of the line.
    Extension,
    Data,
    /// The CR LF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to a blank line.
    Trailer,
}

/// Why a body cannot be followed to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than the skip limit")]
    TooLarge,
    #[error("chunked body malformed")]
    BadChunk,
}

impl BodyError {
    pub fn reason(self) -> &'static str {
        match self {
            BodyError::TooLarge => "http_body_too_large",
            BodyError::BadChunk => "http_chunked_malformed",
        }
    }
}

impl BodySkip {
    /// Passes over the body bytes at the start of `data`. Returns how many bytes were
    /// body and whether the body ended there (the rest of `data` is the next request).
    pub fn skip(&mut self, data: &[u8]) -> Result<(usize, bool), BodyError> {
        match self {
            BodySkip::Length(left) => {
                if *left > MAX_BODY_SKIP {
                    return Err(BodyError::TooLarge);
                }
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                Ok((n, *left == 0))
            }
            BodySkip::Chunked(c) => c.skip(data),
        }
    }

    /// Passes over `n` body bytes the capture did not keep. `false` when they run past
    /// the body's end (the next request starts among them) or cannot be followed
    /// (chunk framing is in bytes we do not have).
    pub fn skip_missing(&mut self, n: u64) -> bool {
        match self {
            BodySkip::Length(left) if *left >= n => {
                *left -= n;
                true
            }
            _ => n == 0,
        }
    }
}

impl Chunked {
    fn skip(&mut self, data: &[u8]) -> Result<(usize, bool), BodyError> {
        let mut at = 0;
        while at < data.len() {
            let b = data[at];
            match self.state {
                ChunkState::Data => {
                    let n = (data.len() - at).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    at += n;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    continue;
                }
                ChunkState::DataEnd => match b {
                    b'\r' => {}
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err(BodyError::BadChunk),
                },
                ChunkState::Size | ChunkState::Extension => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(BodyError::BadChunk);
                    }
                    match (self.state, b) {
                        (_, b'\n') => {
                            self.line = 0;
                            if self.size == 0 {
                                self.state = ChunkState::Trailer;
                            } else {
                                self.total = self.total.saturating_add(self.size);
                                if self.total > MAX_BODY_SKIP {
                                    return Err(BodyError::TooLarge);
                                }
                                self.state = ChunkState::Data;
                            }
                        }
                        (ChunkState::Size, b';') => self.state = ChunkState::Extension,
                        (ChunkState::Size, b'\r' | b' ' | b'\t') => {}
                        (ChunkState::Size, _) => {
                            let digit = char::from(b).to_digit(16).ok_or(BodyError::BadChunk)?;
                            self.size = self
                                .size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(u64::from(digit)))
                                .filter(|&s| s <= MAX_BODY_SKIP)
                                .ok_or(BodyError::TooLarge)?;
                        }
                        _ => {}
                    }
                }
                ChunkState::Trailer => match b {
                    b'\n' if self.line == 0 => {
                        *self = Chunked::default();
                        return Ok((at + 1, true));
                    }
                    b'\n' => self.line = 0,
                    // A CR alone does not make a line non-blank.
                    b'\r' => {}
                    _ => {
                        self.line += 1;
                        self.total += 1;
                        if self.line > MAX_CHUNK_LINE || self.total > MAX_BODY_SKIP {
                            return Err(BodyError::BadChunk);
                        }
                    }
                },
            }
            at += 1;
        }
        Ok((at, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(data: &[u8]) -> Request<'_> {
        match parse_request(data) {
            Parse::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_header_and_user_agent() {
        let r = req(b"GET /index/u0607g.xml HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com:80\r\nUser-Agent: KSU 11\r\nAccept: */*\r\n\r\n");
        assert_eq!(r.host, Some(&b"dnl-01.geo.kaspersky.com"[..]));
        assert_eq!(r.user_agent, Some(&b"KSU 11"[..]));
        assert_eq!(r.target, "/index/u0607g.xml");
        assert_eq!(r.target_host, None);
    }

    #[test]
    fn a_host_folded_onto_a_continuation_line_is_read_as_unfolded() {
        // Python's http.server serves `Host:` + CRLF + SP + the host; nginx refuses it.
        let r = req(
            b"GET / HTTP/1.1\r\nHost:\r\n activation-v2.kaspersky.com:80\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(r.host, Some(&b"activation-v2.kaspersky.com"[..]));
        assert!(r.header_folded);
        // A continuation of another header is that header's, whatever it reads like.
        let r = req(b"GET / HTTP/1.1\r\nHost: www.example.org\r\nX-Note: a\r\n\tHost: activation-v2.kaspersky.com\r\n\r\n");
        assert_eq!(r.host, Some(&b"www.example.org"[..]));
        assert!(r.header_folded);
        // A Host with its value on its own line keeps it.
        let r = req(b"GET / HTTP/1.1\r\nHost: www.example.org\r\n more\r\n\r\n");
        assert_eq!(r.host, Some(&b"www.example.org"[..]));
        let r = req(b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n");
        assert!(!r.header_folded);
    }

    #[test]
    fn absolute_form_and_connect() {
        let r = req(b"GET http://dnl-03.geo.kaspersky.com/index/u0607g.xml HTTP/1.1\r\nHost: dnl-03.geo.kaspersky.com\r\n\r\n");
        assert_eq!(r.target_host, Some(&b"dnl-03.geo.kaspersky.com"[..]));
        let c = req(b"CONNECT activation-v2.kaspersky.com:443 HTTP/1.1\r\nHost: activation-v2.kaspersky.com:443\r\n\r\n");
        assert_eq!(c.connect_host, Some(&b"activation-v2.kaspersky.com"[..]));
    }

    #[test]
    fn a_request_with_more_headers_than_httparse_reads_is_still_read() {
        // What `curl -H X-Pad-N: …` (70 of them) sends: Host after the padding.
        let mut head = b"GET /index/u0607g.xml HTTP/1.1\r\n".to_vec();
        for i in 0..70 {
            head.extend_from_slice(format!("X-Pad-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Host: dnl-01.geo.kaspersky.com\r\nContent-Length: 3\r\n\r\nabc");
        let r = req(&head);
        assert_eq!(r.head, Head::ManyHeaders);
        assert_eq!(r.host, Some(&b"dnl-01.geo.kaspersky.com"[..]));
        assert_eq!(r.target, "/index/u0607g.xml");
        assert_eq!(r.head_len, head.len() - 3);
        assert_eq!(r.body(), Some(BodySkip::Length(3)));
    }

    #[test]
    fn a_head_cut_short_yields_its_whole_lines_only() {
        let full = b"GET http://dnl-03.geo.kaspersky.com/x HTTP/1.1\r\nUser-Agent: curl/7.88.1\r\nHost: dnl-03.geo.kaspersky.com\r\nAccept: */*\r\n\r\n";
        // Request line (48 bytes), User-Agent line (25), then 10 bytes of the Host line.
        let cut_inside_host = &full[..48 + 25 + 10];
        let r = match parse_request_cut(cut_inside_host) {
            Parse::Request(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.head, Head::Cut);
        assert_eq!(r.target_host, Some(&b"dnl-03.geo.kaspersky.com"[..]));
        assert_eq!(r.user_agent, Some(&b"curl/7.88.1"[..]));
        // `Host: dnl-03.geo.kas` is cut: never read as a host.
        assert_eq!(r.host, None);
        assert_eq!(r.body(), None);
        // The Host line ends inside the bytes: it is read.
        let n = full.len() - 13;
        let r = match parse_request_cut(&full[..n]) {
            Parse::Request(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.host, Some(&b"dnl-03.geo.kaspersky.com"[..]));
        // Cut right after the value, its CR LF missing: it could go on (`.com.example.net`).
        let host_line_end = 48 + 25 + "Host: dnl-03.geo.kaspersky.com".len();
        let r = match parse_request_cut(&full[..host_line_end]) {
            Parse::Request(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.host, None);
        // Its CR kept, only the LF missing: the value has ended.
        let r = match parse_request_cut(&full[..host_line_end + 1]) {
            Parse::Request(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.host, Some(&b"dnl-03.geo.kaspersky.com"[..]));
        // The request line itself cut: nothing.
        assert_eq!(parse_request_cut(&full[..20]), Parse::LineCut);
        // A cut CONNECT line that is whole still names its target.
        let c = b"CONNECT activation-v2.kaspersky.com:443 HTTP/1.1\r\nHost: activ";
        match parse_request_cut(c) {
            Parse::Request(r) => {
                assert_eq!(r.connect_host, Some(&b"activation-v2.kaspersky.com"[..]));
                assert_eq!(r.host, None);
            }
            other => panic!("{other:?}"),
        }
        // Uncut, the same bytes wait for more.
        assert_eq!(parse_request(c), Parse::NeedMore);
    }

    #[test]
    fn content_length_body_is_skipped_across_segments() {
        let mut b = BodySkip::Length(5000);
        assert_eq!(b.skip(&[0; 1448]), Ok((1448, false)));
        assert_eq!(b.skip(&[0; 1448]), Ok((1448, false)));
        assert!(b.skip_missing(1000));
        assert_eq!(b, BodySkip::Length(5000 - 2 * 1448 - 1000));
        let next = b"GET / HTTP/1.1\r\n";
        let mut seg = vec![b'x'; 1104];
        seg.extend_from_slice(next);
        assert_eq!(b.skip(&seg), Ok((1104, true)));
        // More missing than the body has left: the next request began among them.
        assert!(!BodySkip::Length(10).skip_missing(11));
        assert_eq!(
            BodySkip::Length(MAX_BODY_SKIP + 1).skip(b"x"),
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn chunked_body_is_followed_to_its_end_byte_by_byte() {
        let body = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let end = body.len() - b"GET / HTTP/1.1\r\n".len();
        // Whole, and fed one byte at a time: the same end.
        let mut whole = BodySkip::Chunked(Chunked::default());
        assert_eq!(whole.skip(body), Ok((end, true)));
        let mut bytewise = BodySkip::Chunked(Chunked::default());
        let mut seen = 0;
        for (i, c) in body.iter().enumerate() {
            let (n, done) = bytewise.skip(std::slice::from_ref(c)).expect("valid");
            seen += n;
            if done {
                assert_eq!(i + 1, end);
                break;
            }
        }
        assert_eq!(seen, end);
        let mut bad = BodySkip::Chunked(Chunked::default());
        assert_eq!(bad.skip(b"zz\r\n"), Err(BodyError::BadChunk));
        let mut huge = BodySkip::Chunked(Chunked::default());
        assert_eq!(huge.skip(b"ffffffffff\r\n"), Err(BodyError::TooLarge));
        // Chunk framing in bytes the capture did not keep cannot be followed.
        assert!(!BodySkip::Chunked(Chunked::default()).skip_missing(10));
    }

    #[test]
    fn every_cut_of_a_real_head_reads_only_whole_lines() {
        let full = b"GET http://dnl-03.geo.kaspersky.com/index/u0607g.xml HTTP/1.1\r\nHost: dnl-03.geo.kaspersky.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n";
        for n in 0..=full.len() {
            match parse_request_cut(&full[..n]) {
                Parse::Request(r) => {
                    assert!(r.head_len <= n);
                    for h in [r.host, r.target_host].into_iter().flatten() {
                        assert_eq!(h, b"dnl-03.geo.kaspersky.com", "cut at {n}");
                    }
                }
                Parse::LineCut | Parse::NeedMore => assert!(n < 64, "cut at {n}"),
                Parse::NotHttp => assert_eq!(n, 0),
            }
        }
    }

    #[test]
    fn partial_and_foreign() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: a"), Parse::NeedMore);
        assert_eq!(parse_request(b"GE"), Parse::NeedMore);
        assert_eq!(parse_request(b"SSH-2.0-OpenSSH_9.2\r\n"), Parse::NotHttp);
    }
}
