//! streamer's native record path (the Python module `streamer._native`).
//!
//! One module per concern: `json` reads a record's top level without building it, `response`
//! makes the response line, `record` decides what the pipeline does with a message, `splice`
//! writes the enriched record from the original bytes, `cache` bounds the line caches,
//! `partition` places a keyed record as Kafka does, and `path` is the Python-facing
//! `RecordPath`. The Python path (`streamer.pipeline`) stays the reference: whatever this
//! crate cannot decide exactly, it hands back to it.

pub mod analytics;
pub mod cache;
pub mod canonical;
pub mod feedback;
pub mod json;
pub mod lines;
pub mod partition;
pub mod record;
pub mod response;
pub mod splice;
pub mod tally;

#[cfg(feature = "python")]
mod line_labeller;
#[cfg(feature = "python")]
mod path;

#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _native {
    #[pymodule_export]
    use crate::canonical::canonical_or_none;
    #[pymodule_export]
    use crate::line_labeller::{LineLabeller, Rows};
    #[pymodule_export]
    use crate::partition::py_partition_of;
    #[pymodule_export]
    use crate::path::{RecordPath, Tally};
}
