//! What the sensor serves while it runs: the Prometheus exposition of every component's
//! counters (`exporter`) and the HTTP endpoint that answers `/metrics`, `/healthz` and
//! `/api/hosts` (`endpoint`). It sits at the top of the stack, above the pipeline it reports
//! on, so the stages below never import it: they count into `metrics` and the exporter reads
//! those counters at scrape time.

pub mod endpoint;
pub mod exporter;
