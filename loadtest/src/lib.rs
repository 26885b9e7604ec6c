//! `tandem-loadtest`: a load generator for the Tandem server.
//!
//! * [`client`]: the OT client state machine (one op in flight, buffer,
//!   resume), as the browser client behaves.
//! * [`delivery`]: delivery latency, matching receipts to send instants.
//! * [`lean`]: the lean client of `--full-clients` (the document's length,
//!   not its text), and its message parser.
//! * [`model`]: a load client's document, full or lean, and frames (single
//!   or batched) read into it.
//! * [`workload`]: writers, lurkers, presence over documents; measured
//!   window; quiescence and the convergence check.
//! * [`trace`]: sequential editing-trace replay.
//! * [`history`]: `--write-history`, an export file with a long history
//!   for `tandem import`.
//! * [`join`]: `--join`, timing fresh joins to one document.
//! * [`background`]: `--background-joins`, joiners looping (fresh join,
//!   far resume) beside a load run.
//! * [`cluster`]: several nodes (`--url` repeated, `--owner-url`) and the
//!   resume figures after a node fails.
//! * [`stats`]: histograms, /proc readings, the summary.
//! * [`plot`]: `--plot`, the latency percentile plot as SVG.
//! * [`http`]: the REST calls over a raw TCP stream.

pub mod background;
pub mod client;
pub mod cluster;
pub mod delivery;
pub mod history;
pub mod http;
pub mod join;
pub mod lean;
pub mod model;
pub mod plot;
pub mod stats;
pub mod trace;
pub mod workload;

pub use history::write_history;
pub use join::{JoinConfig, run_join};
pub use trace::{TraceConfig, run_trace};
pub use workload::{LoadConfig, run_load};
