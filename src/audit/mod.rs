//! The audit workflow around a run: `diff` (compare two result sets, e.g. a production export
//! against an abacus run), `plot` (unique users over time as a picture) and `explain` (what a config
//! does, and what a run on an input will cost, before starting it). None of it is on the counting
//! path; it only reads result sets and samples of input.

pub mod diff;
pub mod estimate;
pub mod explain;
pub mod plot;
pub mod report;
pub mod sample;
pub mod source;
pub mod tolerance;

pub use diff::{DiffOptions, DiffReport, diff};
pub use tolerance::Tolerance;
