//! Expansion of the replay command's inputs: files, directories (a rotated capture set,
//! in natural order so `x.pcap9` comes before `x.pcap10`), and `-` for standard input.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn display_name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
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
}

pub fn expand(args: &[String]) -> Expanded {
    let mut out = Expanded {
        inputs: Vec::new(),
        problems: Vec::new(),
        skipped: Vec::new(),
    };
    for arg in args {
        if arg == "-" {
            out.inputs.push(Input::Stdin);
            continue;
        }
        let path = Path::new(arg);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => expand_dir(path, &mut out),
            Ok(_) => out.inputs.push(Input::Path(path.to_path_buf())),
            Err(e) => out.problems.push(InputProblem {
                path: arg.clone(),
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

fn expand_dir(dir: &Path, out: &mut Expanded) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.problems.push(InputProblem {
                path: dir.display().to_string(),
                problem: e.to_string(),
            });
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    files.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    for f in files {
        if has_capture_magic(&f) {
            out.inputs.push(Input::Path(f));
        } else {
            out.skipped.push(f);
        }
    }
}

fn has_capture_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    ok.is_ok() && file::is_capture_magic(magic)
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
