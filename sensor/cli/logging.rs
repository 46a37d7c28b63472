//! The log: diagnostics (warnings, notices such as a reload or a link that went down) go
//! through `tracing`, set up here once per process; what a command prints as its result (the
//! summary, `rules check`, the host table, the progress bar) is written directly and is no
//! log line.
//!
//! `--log-format text` (the default) writes each line as `vendorwatch: message key=value`,
//! as the sensor always has; `json` writes one JSON object per line (journald, a SIEM).
//! `VENDORWATCH_LOG` filters (`info`, `debug`, `vendorwatch::pipeline=debug`, …).

pub use crate::config::settings::LogFormat;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// What is logged unless `VENDORWATCH_LOG` says otherwise: the notices and warnings of the
/// command layer, the configuration, the reloader and live capture, and those of the local
/// inventory's saver, the agency shipper and the metrics endpoint (a save or a shipment that
/// fails and later works again, an endpoint that stopped): they were always shown. Only
/// errors of the rest (its warnings and notices are asked for with `VENDORWATCH_LOG=info`,
/// as is the sandbox line of `replay`, `vendorwatch::sandbox`).
const DEFAULT_FILTER: &str = "error,vendorwatch::cli=info,vendorwatch::config=info,\
                              vendorwatch::reload=info,vendorwatch::capture::live=info,\
                              vendorwatch::hosts::store=info,vendorwatch::hosts::ship=info,\
                              vendorwatch::serve::endpoint=info";

/// The format the log was set up with (the first `init` wins, as the subscriber does).
static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Says why a command cannot go on, or what it lost, in the log's format: a JSON line where
/// the log is JSON (a collector reading the sensor's stderr gets the fatal error too), else
/// `vendorwatch: message`. Written whatever `VENDORWATCH_LOG` filters: the reason a sensor
/// exits must not be filtered away.
pub fn error(message: &str) {
    say(tracing::Level::ERROR, message);
}

/// As [`error`], for what went wrong but was made good (delivered late, retried).
pub fn warning(message: &str) {
    say(tracing::Level::WARN, message);
}

fn say(level: tracing::Level, message: &str) {
    let json = matches!(FORMAT.get(), Some(LogFormat::Json));
    match level {
        tracing::Level::ERROR
            if json && tracing::enabled!(target: "vendorwatch::cli", tracing::Level::ERROR) =>
        {
            tracing::error!(target: "vendorwatch::cli", "{message}")
        }
        tracing::Level::WARN
            if json && tracing::enabled!(target: "vendorwatch::cli", tracing::Level::WARN) =>
        {
            tracing::warn!(target: "vendorwatch::cli", "{message}")
        }
        _ => eprintln!("vendorwatch: {message}"),
    }
}

/// Sets up the log once; a second call (a test, a command that runs another) changes nothing.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_env("VENDORWATCH_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.event_format(Plain).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// The text format: `vendorwatch: ` and the event's fields (message first).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "vendorwatch: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
