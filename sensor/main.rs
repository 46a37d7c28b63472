//! The vendorwatch binary: parse the command line, run, exit with the command's code.
#![forbid(unsafe_code)]

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("VENDORWATCH_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = vendorwatch::cli::parse();
    std::process::exit(vendorwatch::cli::run(cli));
}
