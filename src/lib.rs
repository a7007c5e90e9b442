//! abacus: exact event-time unique counting over NDJSON event logs.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! input (files → decoded blocks) → parse (line → Event) → watermark (stream order)
//!       → partition (route by user hash) → state (dedup, panes, windows) → sink (Parquet, side files)
//! ```
//!
//! [`run::run`] wires the stages together; `docs/SEMANTICS.md` is the contract they implement and
//! `ARCHITECTURE.md` says where each clause lives.

pub mod audit;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod dedup;
pub mod entries;
pub mod error;
pub mod failpoint;
pub mod generate;
pub mod input;
pub mod memory;
pub mod metrics;
pub mod outdir;
pub mod parse;
pub mod prefix_hash;
pub mod run;
pub mod sink;
pub mod state;
pub mod summary;
pub mod timefmt;
pub mod watermark;
pub mod window;

pub use error::{Error, Result};
