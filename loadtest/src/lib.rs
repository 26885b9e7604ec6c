//! `tandem-loadtest`: a load generator for the Tandem server.
//!
//! * [`client`]: the OT client state machine (one op in flight, buffer,
//!   resume), as the browser client behaves.
//! * [`workload`]: writers, lurkers, presence over documents; measured
//!   window; quiescence and the convergence check.
//! * [`trace`]: sequential editing-trace replay.
//! * [`stats`]: histograms, /proc readings, the summary.
//! * [`plot`]: `--plot`, the latency percentile plot as SVG.
//! * [`http`]: the two REST calls over a raw TCP stream.

pub mod client;
pub mod http;
pub mod plot;
pub mod stats;
pub mod trace;
pub mod workload;

pub use trace::{TraceConfig, run_trace};
pub use workload::{LoadConfig, run_load};
