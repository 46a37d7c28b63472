//! Files an operator names (rule packs, the configuration file, a host report for `report
//! --from`): read whole, but only regular files and only up to a cap, so that `/dev/zero`, a
//! FIFO named `*.toml` or a runaway file is refused with a clear error instead of growing the
//! process without bound or blocking it where no signal can end it.
//!
//! A file is opened with `O_NONBLOCK` (a FIFO then opens at once instead of waiting for a
//! writer) and judged by `fstat` on that open descriptor, so what is checked is what is read.
//! The flag changes nothing for a regular file. Also here: [`shown`], how a path is printed
//! on a terminal (control characters escaped, so a hostile file name cannot move the cursor
//! or change the terminal's title).

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// One rule pack file. The shipped packs are tens of KiB; a pack generated from a feed of a
/// million names is some 50 MiB.
pub const MAX_RULE_FILE: u64 = 256 << 20;
/// The configuration file: a few KiB, or some MiB with thousands of `[[suppress]]` entries.
pub const MAX_CONFIG_FILE: u64 = 16 << 20;
/// A host report (`--report`, `/api/hosts`) for `report --from`: 100,000 hosts with their
/// evidence stay well under it.
pub const MAX_HOST_REPORT: u64 = 2 << 30;

/// Why an operator's file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputFileError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("is a {0}, not a regular file: give the path of a file")]
    NotRegular(&'static str),
    #[error("is larger than {} MiB, the most vendorwatch reads for {what}", limit >> 20)]
    TooLarge { limit: u64, what: &'static str },
    #[error("is not UTF-8 text: an invalid byte at line {line}, column {column}")]
    NotUtf8 { line: usize, column: usize },
}

impl InputFileError {
    /// A short label for metrics and tests.
    pub fn reason(&self) -> &'static str {
        match self {
            InputFileError::Io(_) => "io",
            InputFileError::NotRegular(_) => "not_regular",
            InputFileError::TooLarge { .. } => "too_large",
            InputFileError::NotUtf8 { .. } => "not_utf8",
        }
    }

    /// The line the problem is on, when it is in the text.
    pub fn line(&self) -> Option<usize> {
        match self {
            InputFileError::NotUtf8 { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// What kind of file this is, in words, for one that is not regular.
pub fn kind_of(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("directory")
    } else if t.is_fifo() {
        Some("named pipe (FIFO)")
    } else if t.is_char_device() {
        Some("character device")
    } else if t.is_block_device() {
        Some("block device")
    } else if t.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    }
}

/// Reads a regular file of at most `limit` bytes; `what` names it in the error ("a rule pack").
pub fn read_bytes(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, InputFileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(InputFileError::NotRegular(kind));
    }
    if meta.len() > limit {
        return Err(InputFileError::TooLarge { limit, what });
    }
    // The size can change after fstat (a file still being written): the cap holds anyway.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputFileError::TooLarge { limit, what });
    }
    Ok(bytes)
}

/// Reads a regular UTF-8 text file of at most `limit` bytes; invalid UTF-8 is reported at
/// its line and column (1-based; the column counts bytes).
pub fn read_text(path: &Path, limit: u64, what: &'static str) -> Result<String, InputFileError> {
    String::from_utf8(read_bytes(path, limit, what)?).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to().min(bytes.len());
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        InputFileError::NotUtf8 {
            line,
            column: at - line_start + 1,
        }
    })
}

/// The directory a file at `path` is (or would be) created in: its parent, or the current
/// directory for a bare name (`Path::parent` gives an empty path there).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A path as printed for a person: control characters (ESC, CR, BEL, …) escaped as `\u{1b}`,
/// so a file name cannot act on the terminal that shows it.
pub fn shown(path: &Path) -> String {
    escape_controls(&path.display().to_string())
}

/// Escapes the control characters of `text` (see [`shown`]).
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = dir.path().join("pack.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        // Opening a FIFO with no writer would block for good without O_NONBLOCK.
        let e = read_text(&fifo, MAX_RULE_FILE, "a rule pack").expect_err("refused");
        assert_eq!(e.reason(), "not_regular");
        assert!(e.to_string().contains("named pipe (FIFO)"), "{e}");
        let e = read_bytes(Path::new("/dev/zero"), 10, "x").expect_err("refused");
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_bytes(dir.path(), 10, "x").expect_err("refused");
        assert_eq!(e.reason(), "not_regular");
    }

    #[test]
    fn the_cap_holds_and_bad_utf8_names_its_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, b"a = 1\nb = \"x\xffy\"\n").expect("write");
        let e = read_bytes(&p, 5, "a configuration").expect_err("too large");
        assert_eq!(e.reason(), "too_large");
        match read_text(&p, 100, "x") {
            Err(InputFileError::NotUtf8 { line, column }) => assert_eq!((line, column), (2, 7)),
            other => panic!("{other:?}"),
        }
        std::fs::write(&p, b"ok\n").expect("write");
        assert_eq!(read_text(&p, 3, "x").expect("fits"), "ok\n");
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(
            shown(Path::new("/tmp/a\u{1b}]0;pwned\u{7}.pcap")),
            "/tmp/a\\u{1b}]0;pwned\\u{7}.pcap"
        );
        assert_eq!(shown(Path::new("/tmp/ok é.pcap")), "/tmp/ok é.pcap");
    }
}
