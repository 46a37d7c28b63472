//! Expansion of the replay command's inputs: files, directories (a rotated capture set,
//! in natural order so `x.pcap9` comes before `x.pcap10`, and their subdirectories, depth
//! first: `/captures/2026-11/<day>/*.pcap`), and `-` for standard input.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn display_name(&self) -> String {
        match self {
            Input::Path(p) => crate::operator_input::shown(p),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}

/// What could not be turned into an input, with the reason said plainly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    pub path: String,
    pub problem: String,
}

/// Expands the command-line inputs. Directory members that do not start with a pcap or
/// pcapng magic number are skipped and listed in `skipped`, so a README or checksum file
/// next to a rotated set is no error.
pub struct Expanded {
    pub inputs: Vec<Input>,
    pub problems: Vec<InputProblem>,
    pub skipped: Vec<PathBuf>,
    /// What each directory argument held, in the order given.
    pub dirs: Vec<DirSummary>,
}

/// The captures found under one directory argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSummary {
    pub path: String,
    /// Capture files found, subdirectories included.
    pub captures: usize,
    /// Directories that held at least one of them (the argument included).
    pub folders: usize,
    /// Files that are not captures (and special files: FIFOs, sockets, devices).
    pub skipped: usize,
}

impl DirSummary {
    /// `DIR: 31 capture file(s) in 3 folder(s); 2 other file(s) skipped`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}: {} capture file(s) in {} folder(s)",
            self.path, self.captures, self.folders
        );
        if self.skipped > 0 {
            s.push_str(&format!(
                "; {} other file(s) skipped (not pcap or pcapng)",
                self.skipped
            ));
        }
        s
    }
}

/// How deep subdirectories are followed (a symbolic link loop ends here at the latest).
pub const MAX_DEPTH: usize = 32;

pub fn expand(args: &[String]) -> Expanded {
    let mut out = Expanded {
        inputs: Vec::new(),
        problems: Vec::new(),
        skipped: Vec::new(),
        dirs: Vec::new(),
    };
    for arg in args {
        if arg == "-" {
            out.inputs.push(Input::Stdin);
            continue;
        }
        let path = Path::new(arg);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let (inputs, skipped) = (out.inputs.len(), out.skipped.len());
                let mut walk = Walk::default();
                expand_dir(path, 0, &mut walk, &mut out);
                out.dirs.push(DirSummary {
                    path: crate::operator_input::escape_controls(arg),
                    captures: out.inputs.len() - inputs,
                    folders: walk.folders_with_captures,
                    skipped: out.skipped.len() - skipped,
                });
            }
            Ok(_) => out.inputs.push(Input::Path(path.to_path_buf())),
            Err(e) => out.problems.push(InputProblem {
                path: crate::operator_input::escape_controls(arg),
                problem: match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied (run as a user who can read it)".to_string()
                    }
                    _ => e.to_string(),
                },
            }),
        }
    }
    out
}

/// State of one directory walk.
#[derive(Default)]
struct Walk {
    /// Directories entered (device, inode): a symbolic link back up is not followed twice.
    seen: std::collections::HashSet<(u64, u64)>,
    folders_with_captures: usize,
}

/// Adds the captures under `dir`: its entries in natural order, each subdirectory read where
/// it falls in that order (depth first). Hidden entries (`.name`) are left out.
fn expand_dir(dir: &Path, depth: usize, walk: &mut Walk, out: &mut Expanded) {
    use std::os::unix::fs::MetadataExt;
    let problem = |out: &mut Expanded, p: String| {
        out.problems.push(InputProblem {
            path: crate::operator_input::shown(dir),
            problem: p,
        })
    };
    if depth > MAX_DEPTH {
        problem(
            out,
            format!("more than {MAX_DEPTH} directories deep: not read further"),
        );
        return;
    }
    match std::fs::metadata(dir) {
        Ok(m) if !walk.seen.insert((m.dev(), m.ino())) => return,
        _ => {}
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problem(out, e.to_string());
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    paths.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    let mut here = 0;
    for p in paths {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => expand_dir(&p, depth + 1, walk, out),
            // Only regular files are opened: a FIFO would wait for a writer.
            Ok(m) if m.is_file() && file::starts_like_capture(&p) => {
                out.inputs.push(Input::Path(p));
                here += 1;
            }
            _ => out.skipped.push(p),
        }
    }
    if here > 0 {
        walk.folders_with_captures += 1;
    }
}

use super::file;

/// Compares strings so that runs of digits compare by value: `a2` < `a10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let ta = trim_zeros(na);
                let tb = trim_zeros(nb);
                let ord = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then(da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_naturally() {
        let mut v = vec!["cap.pcap10", "cap.pcap2", "cap.pcap", "cap.pcap1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["cap.pcap", "cap.pcap1", "cap.pcap2", "cap.pcap10"]);
        let mut t = [
            "2026-11-27_10.pcap",
            "2026-11-27_09.pcap",
            "2026-11-26_23.pcap",
        ];
        t.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(t[0], "2026-11-26_23.pcap");
    }

    #[test]
    fn missing_paths_are_named() {
        let e = expand(&["/nonexistent/x.pcap".to_string()]);
        assert!(e.inputs.is_empty());
        assert_eq!(e.problems[0].problem, "no such file or directory");
    }
}
