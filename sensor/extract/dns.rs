//! DNS message parser (RFC 1035), pure: bytes in, questions and answers out.
//!
//! Names are decompressed with three limits: at most `MAX_POINTER_JUMPS` compression
//! pointers (a pointer back to a place already visited is a loop and ends the name at
//! once), at most `MAX_NAME_LEN` octets, and no label past the end of the message. A name
//! that breaks one is not whole: it is flagged and counted, and never handed on as a name
//! (a question with such a name is dropped, an answer with one is skipped), so a message
//! cut by the snap length, or a hostile one, can never name something it does not.
//! Forward pointers are legal and followed (real resolvers emit them).
//!
//! A dot inside a label (`dnl-01.geo` as one label, which dig prints `dnl-01\.geo`) is
//! escaped as `\x2e`, like every other byte that would change how the name reads, so it
//! can never pass for the name with one more label.

use super::names::{NameBuf, MAX_NAME_LEN};
use crate::decode::bytes::be16;
use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Pointer chains longer than this are treated as loops.
pub const MAX_POINTER_JUMPS: usize = 32;
/// Answers read per message; the rest are counted, not parsed.
pub const MAX_ANSWERS: usize = 64;
pub const HEADER_LEN: usize = 12;

pub const OPCODE_UPDATE: u8 = 5;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SVCB: u16 = 64;
pub const TYPE_HTTPS: u16 = 65;
/// SvcParamKeys (RFC 9460 §14.3.2).
const SVC_ALPN: u16 = 1;
const SVC_ECH: u16 = 5;

/// A name read from a message. Most names are at most 24 bytes and are kept inline: the
/// worker reads every DNS message, and an allocation (and a free) per name and
/// answer was a tenth of what it spent on them.
pub type Name = compact_str::CompactString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub questions: SmallVec<[Question; 1]>,
    pub answers: Vec<Answer>,
    pub anomalies: Anomalies,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    /// The name a reverse-lookup owner (`….in-addr.arpa`, `….ip6.arpa`) points to.
    Ptr(Name),
    /// SVCB / HTTPS (RFC 9460): where the service is, which protocols, and whether it
    /// publishes an ECH configuration (its clients will hide their server names).
    Svcb {
        priority: u16,
        target: Name,
        alpn: Vec<String>,
        ech: bool,
        /// The public names of the ECH configurations (`ech::public_names`): what the
        /// outer ClientHello of this service's clients will name.
        ech_public_names: Vec<String>,
    },
    /// A record type we do not read.
    Other,
}

/// Recoverable problems found while parsing; each is a counter in the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    pub name_pointer_loop: bool,
    pub name_too_long: bool,
    /// A name runs past the end of a message that was whole on the wire (malformed).
    pub name_out_of_bounds: bool,
    /// A name runs past the end of a message the capture cut short (snap length).
    pub name_cut: bool,
    pub answers_truncated: bool,
    /// A label holds a dot; it is escaped as `\x2e`.
    pub label_with_dot: bool,
    /// QDCOUNT promises more questions than the message holds; those present are read.
    pub questions_overstated: bool,
}

impl Anomalies {
    pub fn any(&self) -> bool {
        self.name_pointer_loop
            || self.name_too_long
            || self.name_out_of_bounds
            || self.name_cut
            || self.answers_truncated
            || self.label_with_dot
            || self.questions_overstated
    }

    /// Metric labels of the anomalies present.
    pub fn reasons(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.name_pointer_loop, "dns_name_pointer_loop"),
            (self.name_too_long, "dns_name_too_long"),
            (self.name_out_of_bounds, "dns_name_out_of_bounds"),
            (self.name_cut, "dns_name_cut"),
            (self.answers_truncated, "dns_answers_truncated"),
            (self.label_with_dot, "dns_label_with_dot"),
            (self.questions_overstated, "dns_questions_overstated"),
        ]
        .into_iter()
        .filter_map(|(on, r)| on.then_some(r))
    }
}

/// Why a message could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum DnsError {
    #[error("shorter than a DNS header")]
    TooShort,
    #[error("question section unreadable")]
    BadQuestion,
    #[error("not a DNS message (implausible counts)")]
    Implausible,
}

impl DnsError {
    pub fn reason(self) -> &'static str {
        match self {
            DnsError::TooShort => "dns_too_short",
            DnsError::BadQuestion => "dns_bad_question",
            DnsError::Implausible => "dns_implausible",
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses one DNS message.
pub fn parse(msg: &[u8]) -> Result<Message, DnsError> {
    parse_message(msg, false)
}

/// Parses a DNS message that the capture cut short (its datagram or segment was longer on
/// the wire than the bytes we have): the questions and answers that are whole are read,
/// and a name running past the end is counted as `dns_name_cut`, not as malformed.
pub fn parse_cut(msg: &[u8]) -> Result<Message, DnsError> {
    parse_message(msg, true)
}

/// Parses a DNS message for what a worker reads to learn resolver roles
/// (`Detector::note_dns_packet`): the header, the questions and the names that answers
/// point to (CNAME and SVCB/HTTPS targets) come out as `parse` gives them, and every name is
/// walked and checked the same way (the anomalies are the same), but the answers' owner
/// names and PTR targets are left empty. It reads DNS over TCP and datagrams cut by the snap
/// length (a whole datagram's message is parsed once, in full, for the extraction too), and
/// building those strings (a name and an allocation per answer) was most of what the roles
/// spent on a message.
pub fn parse_for_roles(msg: &[u8]) -> Result<Message, DnsError> {
    parse_inner(msg, false, true, Vec::new())
}

/// [`parse`], or [`parse_cut`] when `cut`: the capture kept only these bytes of the message.
pub fn parse_message(msg: &[u8], cut: bool) -> Result<Message, DnsError> {
    parse_inner(msg, cut, false, Vec::new())
}

/// [`parse_message`], its answers put in `answers` (emptied first): the vector of a
/// message read before, so that its allocation is reused.
pub fn parse_message_into(
    msg: &[u8],
    cut: bool,
    answers: Vec<Answer>,
) -> Result<Message, DnsError> {
    parse_inner(msg, cut, false, answers)
}

/// `lean`: see `parse_for_roles`. `answers`: where to put the answers (see
/// `parse_message_into`).
fn parse_inner(
    msg: &[u8],
    cut: bool,
    lean: bool,
    answers: Vec<Answer>,
) -> Result<Message, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(DnsError::TooShort);
    }
    let id = be16(msg, 0).ok_or(DnsError::TooShort)?;
    let flags = be16(msg, 2).ok_or(DnsError::TooShort)?;
    let qdcount = be16(msg, 4).ok_or(DnsError::TooShort)?;
    let ancount = be16(msg, 6).ok_or(DnsError::TooShort)?;
    let mut anomalies = Anomalies::default();
    let section = read_questions(msg, qdcount, cut, &mut anomalies)?;
    let ancount = if section.readable { ancount } else { 0 };
    // Nearly every answer's owner is a pointer to the question: that name is read already.
    let first_question = section
        .questions
        .first()
        .filter(|_| section.first_uncompressed)
        .map(|q| &q.name);
    let answers = read_answers(
        msg,
        section.end,
        ancount,
        &mut anomalies,
        lean,
        first_question,
        answers,
    );
    if cut && anomalies.name_out_of_bounds {
        anomalies.name_out_of_bounds = false;
        anomalies.name_cut = true;
    }
    Ok(Message {
        id,
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        questions: section.questions,
        answers,
        anomalies,
    })
}

/// The question section as far as it could be read.
struct QuestionSection {
    questions: SmallVec<[Question; 1]>,
    /// Where the section ends (the first answer starts).
    end: usize,
    /// Whether the answers after it can be framed.
    readable: bool,
    /// Whether the first question's name is written out in full right after the header (no
    /// pointer): then an answer owner that points to it is that name (`read_record`).
    first_uncompressed: bool,
}

/// Reads the `qdcount` questions after the header. An error when not even the first is
/// readable and nothing says why (no anomaly, no cut): then this is not DNS.
#[inline]
fn read_questions(
    msg: &[u8],
    qdcount: u16,
    cut: bool,
    anomalies: &mut Anomalies,
) -> Result<QuestionSection, DnsError> {
    // Each question takes at least 5 octets: a count that cannot fit is overstated (a
    // hostile message, or one cut short). Its questions are still read as far as they go;
    // if not even the first is readable, this is not DNS.
    let count_fits = usize::from(qdcount) * 5 <= msg.len() - HEADER_LEN;
    let mut at = HEADER_LEN;
    let mut questions = SmallVec::new();
    let mut readable = true;
    let mut first_uncompressed = false;
    for i in 0..qdcount {
        if at >= msg.len() && i > 0 && !cut {
            // The message ends cleanly after a question: the count promised more.
            anomalies.questions_overstated = true;
            readable = false;
            break;
        }
        let (name, next, whole) = read_name(msg, at, anomalies);
        match (whole, be16(msg, next), be16(msg, next + 2)) {
            (true, Some(qtype), Some(_class)) => {
                first_uncompressed |= i == 0 && is_uncompressed(msg, at, next);
                at = next + 4;
                questions.push(Question { name, qtype });
            }
            // The rest of the message is unreadable; a broken name is dropped, never
            // handed on as far as it was read (it could be a cut decoy).
            (whole, _, _) => {
                readable = false;
                if whole {
                    if i == 0 && !cut && !anomalies.any() {
                        return Err(if count_fits {
                            DnsError::BadQuestion
                        } else {
                            DnsError::Implausible
                        });
                    }
                    // The name is whole, only its type and class are missing: it still
                    // names what was asked.
                    questions.push(Question { name, qtype: 0 });
                }
                if !count_fits && !cut {
                    anomalies.questions_overstated = true;
                }
                break;
            }
        }
    }
    if questions.is_empty() && !count_fits {
        return Err(DnsError::Implausible);
    }
    Ok(QuestionSection {
        questions,
        end: at,
        readable,
        first_uncompressed,
    })
}

/// Whether the name at `at`, which ends at `end`, is plain labels and the root (no pointer).
fn is_uncompressed(msg: &[u8], mut at: usize, end: usize) -> bool {
    while let Some(&len) = msg.get(at) {
        if len == 0 {
            return at + 1 == end;
        }
        if len & 0xc0 != 0 {
            return false;
        }
        at += 1 + usize::from(len);
    }
    false
}

/// Reads up to `ancount` answers (at most `MAX_ANSWERS`) from `at`.
#[inline]
fn read_answers(
    msg: &[u8],
    mut at: usize,
    ancount: u16,
    anomalies: &mut Anomalies,
    lean: bool,
    first_question: Option<&Name>,
    mut answers: Vec<Answer>,
) -> Vec<Answer> {
    answers.clear();
    for i in 0..ancount {
        if usize::from(i) >= MAX_ANSWERS {
            break;
        }
        match read_record(msg, at, anomalies, lean, first_question) {
            Some((answer, next)) => {
                // An answer whose names are not whole is skipped; the next one is framed
                // by this one's RDLENGTH all the same.
                answers.extend(answer);
                at = next;
            }
            None => {
                anomalies.answers_truncated = true;
                break;
            }
        }
    }
    answers
}

/// Reads one resource record: `None` when it runs past the message, `Some((None, next))`
/// when it is framed but one of its names is not whole. `lean`: the owner name and a PTR
/// target are checked but not built (`parse_for_roles`). `first_question`: the first
/// question's name when it is written out in full at `HEADER_LEN`; an owner that is a pointer
/// there is that name (reading it again would give the same name, wholeness and anomalies).
fn read_record(
    msg: &[u8],
    at: usize,
    anomalies: &mut Anomalies,
    lean: bool,
    first_question: Option<&Name>,
) -> Option<(Option<Answer>, usize)> {
    const POINTER_TO_FIRST_QUESTION: [u8; 2] = [0xc0, HEADER_LEN as u8];
    let (name, at, name_whole) = match first_question {
        Some(q) if !lean && msg.get(at..at + 2) == Some(&POINTER_TO_FIRST_QUESTION[..]) => {
            (q.clone(), at + 2, true)
        }
        _ => read_name_as(msg, at, anomalies, !lean),
    };
    let rtype = be16(msg, at)?;
    let ttl = be32(msg, at + 4)?;
    let rdlen = usize::from(be16(msg, at + 8)?);
    let rdata_at = at + 10;
    let rdata = msg.get(rdata_at..rdata_at + rdlen)?;
    let mut whole = name_whole;
    let mut rdata_name = |at: usize, build: bool| {
        let (n, _, w) = read_name_as(msg, at, anomalies, build);
        whole &= w;
        n
    };
    let data = match (rtype, rdata.len()) {
        (TYPE_A, 4) => RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
        (TYPE_AAAA, 16) => {
            let octets: [u8; 16] = rdata.try_into().ok()?;
            RData::Aaaa(Ipv6Addr::from(octets))
        }
        (TYPE_CNAME, _) => RData::Cname(rdata_name(rdata_at, true)),
        (TYPE_PTR, _) => RData::Ptr(rdata_name(rdata_at, !lean)),
        (TYPE_SVCB | TYPE_HTTPS, n) if n >= 3 => {
            let (data, w) = svcb(msg, rdata_at, rdata, anomalies);
            whole &= w;
            data
        }
        _ => RData::Other,
    };
    let answer = whole.then_some(Answer {
        name,
        rtype,
        ttl,
        data,
    });
    Some((answer, rdata_at + rdlen))
}

/// SVCB / HTTPS RDATA, and whether its target name is whole.
fn svcb(msg: &[u8], rdata_at: usize, rdata: &[u8], anomalies: &mut Anomalies) -> (RData, bool) {
    let priority = u16::from_be_bytes([rdata[0], rdata[1]]);
    let (target, after, whole) = read_name(msg, rdata_at + 2, anomalies);
    let mut params = after
        .checked_sub(rdata_at)
        .and_then(|o| rdata.get(o..))
        .unwrap_or_default();
    let (mut alpn, mut ech, mut ech_public_names) = (Vec::new(), false, Vec::new());
    while params.len() >= 4 {
        let key = u16::from_be_bytes([params[0], params[1]]);
        let len = usize::from(u16::from_be_bytes([params[2], params[3]]));
        let Some(value) = params.get(4..4 + len) else {
            break;
        };
        match key {
            SVC_ALPN => {
                let mut v = value;
                while let Some((&n, rest)) = v.split_first() {
                    let Some(id) = rest.get(..usize::from(n)) else {
                        break;
                    };
                    alpn.push(String::from_utf8_lossy(id).into_owned());
                    v = &rest[usize::from(n)..];
                }
            }
            SVC_ECH => {
                ech = true;
                ech_public_names = super::ech::public_names(value);
            }
            _ => {}
        }
        params = &params[4 + len..];
    }
    (
        RData::Svcb {
            priority,
            target,
            alpn,
            ech,
            ech_public_names,
        },
        whole,
    )
}

/// The address a reverse-lookup name stands for: `d.c.b.a.in-addr.arpa` (four decimal
/// octets, reversed) or the 32 reversed hex nibbles of `….ip6.arpa`. `None` for anything
/// else, including partial (classless-delegation or prefix) names, which name no host.
pub fn reverse_name_address(name: &str) -> Option<IpAddr> {
    if let Some(octets) = name.strip_suffix(".in-addr.arpa") {
        let mut out = [0u8; 4];
        let mut parts = octets.split('.');
        for slot in out.iter_mut().rev() {
            let p = parts.next()?;
            // Decimal without leading zeros or signs: "010" or "+1" is not a reverse name.
            if p.is_empty()
                || p.len() > 3
                || (p.len() > 1 && p.starts_with('0'))
                || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            *slot = p.parse().ok()?;
        }
        return parts
            .next()
            .is_none()
            .then_some(IpAddr::V4(Ipv4Addr::from(out)));
    }
    let nibbles = name.strip_suffix(".ip6.arpa")?;
    let mut out = [0u8; 16];
    let mut parts = nibbles.split('.');
    for i in (0..32).rev() {
        let p = parts.next()?;
        let &[c] = p.as_bytes() else {
            return None;
        };
        let v = char::from(c).to_digit(16)? as u8;
        out[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
    }
    parts
        .next()
        .is_none()
        .then_some(IpAddr::V6(Ipv6Addr::from(out)))
}

/// Reads a possibly compressed name at `at`. Returns the name as far as it could be read
/// (lower case, escaped, no trailing dot; `""` for the root), the offset just past the
/// name's bytes at `at` (past the first pointer, if any), and whether the name is whole:
/// `false` when it ran past the message, looped or grew too long (the anomaly says which).
/// A name that is not whole must never be used as a name.
pub fn read_name(msg: &[u8], at: usize, anomalies: &mut Anomalies) -> (Name, usize, bool) {
    read_name_as(msg, at, anomalies, true)
}

/// `read_name`, which builds the name only when `build` (otherwise it returns `""`, with the
/// same offset, wholeness and anomalies).
fn read_name_as(
    msg: &[u8],
    mut at: usize,
    anomalies: &mut Anomalies,
    build: bool,
) -> (Name, usize, bool) {
    let mut name = NameBuf::default();
    let mut wire_len = 0usize;
    // Offsets the pointers of this name led to: a second visit is a loop.
    let mut visited = [0usize; MAX_POINTER_JUMPS];
    let mut jumps = 0usize;
    let mut end_of_name: Option<usize> = None;
    let whole = loop {
        let Some(&len) = msg.get(at) else {
            anomalies.name_out_of_bounds = true;
            break false;
        };
        match len & 0xc0 {
            0x00 if len == 0 => {
                end_of_name.get_or_insert(at + 1);
                break true;
            }
            0x00 => {
                let label_len = usize::from(len);
                let Some(label) = msg.get(at + 1..at + 1 + label_len) else {
                    anomalies.name_out_of_bounds = true;
                    break false;
                };
                wire_len += label_len + 1;
                if wire_len > MAX_NAME_LEN {
                    anomalies.name_too_long = true;
                    break false;
                }
                // A dot in a label is part of it, not a separator: `a.b` as one label is
                // not `a`.`b`, so it is escaped as `\x2e`.
                let dot = if build {
                    if !name.is_empty() {
                        name.push(b'.');
                    }
                    name.escape(label, true)
                } else {
                    label.contains(&b'.')
                };
                if dot {
                    anomalies.label_with_dot = true;
                }
                at += 1 + label_len;
            }
            0xc0 => {
                let Some(&low) = msg.get(at + 1) else {
                    anomalies.name_out_of_bounds = true;
                    break false;
                };
                end_of_name.get_or_insert(at + 2);
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if jumps >= MAX_POINTER_JUMPS || visited[..jumps].contains(&target) {
                    anomalies.name_pointer_loop = true;
                    break false;
                }
                visited[jumps] = target;
                jumps += 1;
                at = target;
            }
            // 0x40 and 0x80 (extended label types, RFC 6891 / 2673) are obsolete.
            _ => {
                anomalies.name_out_of_bounds = true;
                break false;
            }
        }
    };
    // A name broken before its first pointer ends the buffer, so the caller stops reading.
    (name.finish(), end_of_name.unwrap_or(msg.len()), whole)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real answer from unbound: www.example.org CNAME dnl-01.geo.kaspersky.com, A 10.10.2.80,
    /// with compression pointers as unbound emits them.
    pub(crate) fn cname_answer() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        // question at 12: www.example.org
        m.extend_from_slice(b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
        // answer 1: name ptr to 12, CNAME, class IN, ttl 300, rdata dnl-01.geo.kaspersky.com
        let target = b"\x06dnl-01\x03geo\x09kaspersky\x03com\x00";
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, target.len() as u8]);
        let target_at = m.len();
        m.extend_from_slice(target);
        // answer 2: name ptr to target, A, 10.10.2.80
        m.extend_from_slice(&[
            0xc0,
            target_at as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            4,
            10,
            10,
            2,
            80,
        ]);
        m
    }

    /// An answer owner that points to the question is the question's name, whether the
    /// question is written out in full (the name is reused) or itself compressed (read again).
    #[test]
    fn an_owner_pointing_to_the_question_is_the_question_name() {
        let m = parse(&cname_answer()).unwrap();
        assert_eq!(m.answers[0].name, "www.example.org");
        assert!(is_uncompressed(&cname_answer(), 12, 29));
        // The question is `www` and a forward pointer to `example.org` after the answer.
        let mut c = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        c.extend_from_slice(b"\x03www\xc0\x26\x00\x01\x00\x01");
        c.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        assert_eq!(c.len(), 0x26);
        c.extend_from_slice(b"\x07example\x03org\x00");
        let m = parse(&c).unwrap();
        assert_eq!(m.questions[0].name, "www.example.org");
        assert_eq!(m.answers[0].name, "www.example.org");
        assert!(!is_uncompressed(&c, 12, 18));
        // A label with a dot in the question: the reused owner keeps its escape.
        let mut d = cname_answer();
        d[14] = b'.';
        let m = parse(&d).unwrap();
        assert_eq!(m.questions[0].name, "w\\x2ew.example.org");
        assert_eq!(m.answers[0].name, m.questions[0].name);
        assert!(m.anomalies.label_with_dot);
    }

    /// What the roles read: the same message as `parse` gives, with the answers'
    /// owner names and PTR targets left empty and CNAME targets kept; the same anomalies.
    #[test]
    fn parse_for_roles_keeps_questions_and_cname_targets() {
        let msg = cname_answer();
        let (full, lean) = (
            parse(&msg).expect("parses"),
            parse_for_roles(&msg).expect("parses"),
        );
        assert_eq!(lean.questions, full.questions);
        assert_eq!(lean.questions[0].name, "www.example.org");
        assert_eq!(lean.anomalies, full.anomalies);
        assert_eq!(lean.answers.len(), 2);
        assert_eq!(lean.answers[0].name, "");
        assert_eq!(
            lean.answers[0].data,
            RData::Cname("dnl-01.geo.kaspersky.com".into())
        );
        assert_eq!(lean.answers[1].data, full.answers[1].data);
        // A pointer loop in an answer's owner name is found without building the name.
        let mut looped = msg.clone();
        let at = looped.len() - 16;
        looped[at..at + 2].copy_from_slice(&[0xc0, at as u8]);
        let (full, lean) = (
            parse(&looped).expect("parses"),
            parse_for_roles(&looped).expect("parses"),
        );
        assert!(full.anomalies.name_pointer_loop);
        assert_eq!(lean.anomalies, full.anomalies);
        assert_eq!(lean.answers.len(), full.answers.len());
    }

    /// A real PTR answer from dnsmasq 2.90 (pcaps/dhcp-ptr.pcap frame 16): tshark reads
    /// 101.3.10.10.in-addr.arpa PTR ws-alice.lab (dns.resp.name, dns.ptr.domain_name).
    #[test]
    fn reads_a_real_ptr_answer() {
        let hex = "70f28580000100010000000103313031013302313002313007696e2d61646472046172706100000c0001c00c000c000100000000000e0877732d616c696365036c61620000002904d0000000000000";
        let msg: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let m = parse(&msg).expect("parses");
        assert_eq!(m.questions[0].name, "101.3.10.10.in-addr.arpa");
        assert_eq!(m.questions[0].qtype, TYPE_PTR);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name, "101.3.10.10.in-addr.arpa");
        assert_eq!(m.answers[0].data, RData::Ptr("ws-alice.lab".into()));
        assert_eq!(
            reverse_name_address(&m.answers[0].name),
            Some(IpAddr::V4(Ipv4Addr::new(10, 10, 3, 101)))
        );
    }

    #[test]
    fn reverse_names_map_back_to_addresses() {
        let v4 = |s: &str| reverse_name_address(s).map(|a| a.to_string());
        assert_eq!(
            v4("101.3.10.10.in-addr.arpa").as_deref(),
            Some("10.10.3.101")
        );
        assert_eq!(v4("0.0.0.0.in-addr.arpa").as_deref(), Some("0.0.0.0"));
        // Prefixes, RFC 2317 classless names, leading zeros, too many labels: not a host.
        for bad in [
            "3.10.10.in-addr.arpa",
            "0/26.3.10.10.in-addr.arpa",
            "01.3.10.10.in-addr.arpa",
            "256.3.10.10.in-addr.arpa",
            "1.1.3.10.10.in-addr.arpa",
            "x.in-addr.arpa",
            "in-addr.arpa",
        ] {
            assert_eq!(reverse_name_address(bad), None, "{bad}");
        }
        let name = "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa";
        assert_eq!(v4(name).as_deref(), Some("4321:0:1:2:3:4:567:89ab"));
        assert_eq!(reverse_name_address("1.0.0.0.ip6.arpa"), None);
        assert_eq!(reverse_name_address(&format!("0.{name}")), None);
        assert_eq!(reverse_name_address(&name.replace("b.a.", "bb.")), None);
    }

    #[test]
    fn reads_questions_and_cname_chain() {
        let m = parse(&cname_answer()).expect("parses");
        assert!(m.is_response);
        assert_eq!(m.id, 0x1234);
        assert_eq!(m.questions[0].name, "www.example.org");
        assert_eq!(m.answers.len(), 2);
        assert_eq!(
            m.answers[0].data,
            RData::Cname("dnl-01.geo.kaspersky.com".into())
        );
        assert_eq!(m.answers[1].name, "dnl-01.geo.kaspersky.com");
        assert_eq!(m.answers[1].data, RData::A(Ipv4Addr::new(10, 10, 2, 80)));
        assert_eq!(m.answers[1].ttl, 60);
        assert!(!m.anomalies.any());
    }

    #[test]
    fn pointer_loop_is_flagged_and_never_named() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0x01, b'a', 0xc0, 12, 0, 1, 0, 1]); // a -> itself
        let parsed = parse(&m).expect("header and question fit");
        assert!(parsed.anomalies.name_pointer_loop);
        // Not "a.a.a.a…" (a long repeated name that a rule could match): no question at all.
        assert!(parsed.questions.is_empty(), "{:?}", parsed.questions);
        // The loop is found at its first repeat, not after MAX_POINTER_JUMPS labels.
        let (name, _, whole) = read_name(&m, 12, &mut Anomalies::default());
        assert_eq!((name.as_str(), whole), ("a.a", false));
    }

    /// A query for `<60 x>.kaspersky.com.example.net`, as dig sends it.
    fn decoy_query() -> Vec<u8> {
        let mut m = vec![0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
        m.push(60);
        m.extend_from_slice(&[b'x'; 60]);
        m.extend_from_slice(b"\x09kaspersky\x03com\x07example\x03net\x00\x00\x01\x00\x01");
        m
    }

    #[test]
    fn a_name_cut_by_the_snap_length_is_never_a_question() {
        let full = decoy_query();
        let whole = parse(&full).expect("parses");
        assert_eq!(
            whole.questions[0].name,
            format!("{}.kaspersky.com.example.net", "x".repeat(60))
        );
        // Cut right after `.kaspersky.com`, with and without the next label's length byte.
        let after_com = 12 + 1 + 60 + 10 + 4;
        for n in [after_com, after_com + 1, after_com + 3] {
            let cut = parse_cut(&full[..n]).expect("header fits");
            assert!(cut.questions.is_empty(), "{n}: {:?}", cut.questions);
            assert!(cut.anomalies.name_cut && !cut.anomalies.name_out_of_bounds);
            assert_eq!(
                cut.anomalies.reasons().collect::<Vec<_>>(),
                ["dns_name_cut"]
            );
            // The same bytes in a message that was whole on the wire: malformed, not cut.
            let bad = parse(&full[..n]).expect("header fits");
            assert!(bad.questions.is_empty());
            assert!(bad.anomalies.name_out_of_bounds);
        }
        // Cut inside the type: the name is whole and still read.
        let cut = parse_cut(&full[..full.len() - 3]).expect("parses");
        assert_eq!(cut.questions.len(), 1);
        assert!(cut.questions[0].name.ends_with(".example.net"));
    }

    #[test]
    fn whole_questions_before_the_cut_are_kept() {
        let mut m = vec![0, 7, 0x01, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
        m.extend_from_slice(b"\x03dnl\x09kaspersky\x03com\x00\x00\x01\x00\x01");
        let cut = parse_cut(&m[..m.len() - 10]).expect("parses");
        let names: Vec<&str> = cut.questions.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["www.example.org"]);
        assert!(cut.anomalies.name_cut);
    }

    #[test]
    fn a_dot_inside_a_label_is_escaped_and_counted() {
        // `dig 'dnl-01\.geo.kaspersky.com'`: three labels, the first holding a dot.
        let mut m = vec![0, 9, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x0adnl-01.geo\x09kaspersky\x03com\x00\x00\x01\x00\x01");
        let parsed = parse(&m).expect("parses");
        assert_eq!(parsed.questions[0].name, "dnl-01\\x2egeo.kaspersky.com");
        assert!(parsed.anomalies.label_with_dot);
        assert_eq!(
            parsed.anomalies.reasons().collect::<Vec<_>>(),
            ["dns_label_with_dot"]
        );
    }

    #[test]
    fn an_overstated_question_count_keeps_the_real_question() {
        let mut m = vec![0, 3, 0x01, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x06dnl-01\x03geo\x09kaspersky\x03com\x00\x00\x01\x00\x01");
        let parsed = parse(&m).expect("the real question is read");
        assert_eq!(parsed.questions.len(), 1);
        assert_eq!(parsed.questions[0].name, "dnl-01.geo.kaspersky.com");
        assert!(parsed.anomalies.questions_overstated);
        // Bytes that are no DNS at all are still refused.
        let junk = [0u8, 3, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(parse(&junk).is_err());
    }

    #[test]
    fn an_answer_with_a_broken_name_is_skipped_and_the_next_still_read() {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
        // CNAME whose target points at itself (a loop), RDLENGTH 2.
        let at = m.len() + 12;
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 2, 0xc0, at as u8]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 10, 2, 80]);
        let parsed = parse(&m).expect("parses");
        assert!(parsed.anomalies.name_pointer_loop);
        assert_eq!(parsed.answers.len(), 1);
        assert_eq!(
            parsed.answers[0].data,
            RData::A(Ipv4Addr::new(10, 10, 2, 80))
        );
    }

    #[test]
    fn overlong_name_is_flagged_and_never_named() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..10 {
            m.push(63);
            m.extend_from_slice(&[b'x'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        let parsed = parse(&m).expect("parses");
        assert!(parsed.anomalies.name_too_long);
        // Cut at MAX_NAME_LEN it would be a different name: it is not handed on.
        assert!(parsed.questions.is_empty());
    }

    #[test]
    fn https_record_with_alpn_and_ech() {
        // A Cloudflare-style HTTPS answer: priority 1, target ".", alpn h3,h2, ech config.
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x03com\x00\x00\x41\x00\x01");
        let mut rdata = vec![0, 1, 0];
        rdata.extend_from_slice(&[0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2']);
        rdata.extend_from_slice(&[0, 5, 0, 3, 0xfe, 0x0d, 0]);
        m.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 44]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
        let parsed = parse(&m).expect("parses");
        assert_eq!(
            parsed.answers[0].data,
            RData::Svcb {
                priority: 1,
                target: Name::default(),
                alpn: vec!["h3".into(), "h2".into()],
                ech: true,
                ech_public_names: vec![],
            }
        );
    }

    #[test]
    fn every_truncation_is_handled() {
        let full = cname_answer();
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
        assert_eq!(parse(&full[..5]), Err(DnsError::TooShort));
        let cut = parse(&full[..full.len() - 3]).expect("question survives");
        assert!(cut.anomalies.answers_truncated);
        assert_eq!(cut.answers.len(), 1);
    }
}
