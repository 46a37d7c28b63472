//! HTTP/1.x request heads: the names a request reveals.
//!
//! `httparse` reads the request line and headers; this module turns them into the Host
//! header, the host of an absolute-form target (a request sent to a forward proxy), the
//! target of `CONNECT host:port` (what an agency's proxy sees of HTTPS), and the User-Agent.

use super::names::strip_port;

/// Headers read per request; a request with more is read up to here.
const MAX_HEADERS: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    NeedMore,
    NotHttp,
    Request(Request<'a>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// The Host header, without its port.
    pub host: Option<&'a [u8]>,
    /// Host of an absolute-form target (`GET http://host/ HTTP/1.1`), without its port.
    pub target_host: Option<&'a [u8]>,
    /// `CONNECT host:port`: the host.
    pub connect_host: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// Bytes of the request head, so the caller can move on to the body or the next request.
    pub head_len: usize,
    /// Body length, when it is given by Content-Length (`None` for chunked or unknown).
    pub body_len: Option<usize>,
    pub chunked: bool,
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

/// Cheap probe: the stream starts with a known method and a space (or could, given more).
pub fn looks_like_request(data: &[u8]) -> bool {
    METHODS.iter().any(|m| {
        let n = m.len().min(data.len());
        n > 0 && data[..n] == m[..n]
    })
}

/// Parses one request head at the start of `data`.
pub fn parse_request(data: &[u8]) -> Parse<'_> {
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
        Ok(httparse::Status::Partial) => return Parse::NeedMore,
        // Too many headers: the request line alone still names the target.
        Err(httparse::Error::TooManyHeaders) => return Parse::NotHttp,
        Err(_) => return Parse::NotHttp,
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parse::NotHttp;
    };
    let mut host = None;
    let mut user_agent = None;
    let mut body_len = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            host.get_or_insert(strip_port(trim(h.value)));
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            user_agent.get_or_insert(trim(h.value));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(trim(h.value))
                .ok()
                .and_then(|v| v.parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = trim(h.value).eq_ignore_ascii_case(b"chunked");
        }
    }
    let connect_host =
        (method.eq_ignore_ascii_case("CONNECT")).then(|| strip_port(target.as_bytes()));
    Parse::Request(Request {
        method,
        target,
        host: host.filter(|h| !h.is_empty()),
        target_host: absolute_form_host(target),
        connect_host: connect_host.filter(|h| !h.is_empty()),
        user_agent: user_agent.filter(|u| !u.is_empty()),
        head_len,
        body_len,
        chunked,
    })
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
    fn absolute_form_and_connect() {
        let r = req(b"GET http://dnl-03.geo.kaspersky.com/index/u0607g.xml HTTP/1.1\r\nHost: dnl-03.geo.kaspersky.com\r\n\r\n");
        assert_eq!(r.target_host, Some(&b"dnl-03.geo.kaspersky.com"[..]));
        let c = req(b"CONNECT activation-v2.kaspersky.com:443 HTTP/1.1\r\nHost: activation-v2.kaspersky.com:443\r\n\r\n");
        assert_eq!(c.connect_host, Some(&b"activation-v2.kaspersky.com"[..]));
    }

    #[test]
    fn partial_and_foreign() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: a"), Parse::NeedMore);
        assert_eq!(parse_request(b"GE"), Parse::NeedMore);
        assert_eq!(parse_request(b"SSH-2.0-OpenSSH_9.2\r\n"), Parse::NotHttp);
    }
}
