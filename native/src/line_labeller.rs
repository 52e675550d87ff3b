//! `LineLabeller`: `streamer classify --lines` one block per call (`streamer.offline.labeller`
//! wraps it). Rows come from `lines::LineRows`; a cache miss calls `resolve(line)`, the Python
//! labeller, which returns the row's bytes.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::lines::LineRows;

#[pyclass(module = "streamer._native")]
pub struct LineLabeller {
    resolve: Py<PyAny>,
    rows: LineRows,
}

#[pymethods]
impl LineLabeller {
    #[new]
    fn new(resolve: Py<PyAny>, cache_size: usize, not_utf8_row: &[u8]) -> Self {
        LineLabeller {
            resolve,
            rows: LineRows::new(cache_size, not_utf8_row),
        }
    }

    /// `(output, lines, indices of the lines that are not UTF-8)` of one block of lines.
    fn label<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, usize, Vec<usize>)> {
        let resolve = self.resolve.bind(py);
        let block = self.rows.label(data, |line| {
            let row = resolve.call1((line,))?;
            Ok::<_, PyErr>(row.cast::<PyBytes>()?.as_bytes().to_vec())
        })?;
        let output = PyBytes::new_with(py, block.len(), |out| {
            block.write(out);
            Ok(())
        })?;
        Ok((output, block.rows.len(), block.not_utf8))
    }

    /// Lines held by the cache.
    fn cached(&self) -> usize {
        self.rows.cached()
    }
}
