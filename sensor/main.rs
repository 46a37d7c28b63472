//! The vendorwatch binary: parse the command line, run, exit with the command's code.
#![forbid(unsafe_code)]

fn main() {
    let cli = vendorwatch::cli::parse();
    std::process::exit(vendorwatch::cli::run(cli));
}
