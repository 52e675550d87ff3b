//! `LineLabeller`: `streamer classify --lines` one block per call (`streamer.offline.labeller`
//! wraps it). Rows come from `lines::LineRows`; a cache miss calls `resolve(line)`, the Python
//! labeller, which returns the row's bytes.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::lines::{Block, LineRows};

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

    /// `(output rows, lines, indices of the lines that are not UTF-8)` of one block of lines.
    fn label(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<(Rows, usize, Vec<usize>)> {
        let resolve = self.resolve.bind(py);
        let mut block = self.rows.label(data, |line| {
            let row = resolve.call1((line,))?;
            Ok::<_, PyErr>(row.cast::<PyBytes>()?.as_bytes().to_vec())
        })?;
        let (lines, not_utf8) = (block.rows.len(), std::mem::take(&mut block.not_utf8));
        Ok((Rows { block }, lines, not_utf8))
    }

    /// Lines held by the cache.
    fn cached(&self) -> usize {
        self.rows.cached()
    }
}

/// The output of one block: its rows, shared with the cache, written where they are asked to
/// go (`bytes(rows)` makes one `bytes` of them).
#[pyclass(module = "streamer._native", frozen)]
pub struct Rows {
    block: Block,
}

#[pymethods]
impl Rows {
    /// Bytes of output.
    fn __len__(&self) -> usize {
        self.block.len()
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        PyBytes::new_with(py, self.block.len(), |out| {
            self.block.write(out);
            Ok(())
        })
    }

    /// Write the output to the open file descriptor `fd` (left open), all of it, without
    /// the GIL; an error is Python's `OSError` of it (`BrokenPipeError` for a closed pipe).
    fn write_to(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        if fd < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "a negative file descriptor",
            ));
        }
        // SAFETY: `fd` is an open descriptor the caller owns; ManuallyDrop never closes it.
        let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        py.detach(|| self.block.write_to(&mut *out))
            .map_err(|err| os_error(py, err))
    }
}

/// Python's own `OSError(errno, strerror)` of a failed write (its subclass by errno, e.g.
/// `BrokenPipeError`), as a write by Python would raise it: callers read `errno`.
fn os_error(py: Python<'_>, err: std::io::Error) -> PyErr {
    let Some(code) = err.raw_os_error() else {
        return err.into();
    };
    let strerror = py
        .import("os")
        .and_then(|os| os.getattr("strerror")?.call1((code,))?.extract::<String>());
    match strerror {
        Ok(text) => pyo3::exceptions::PyOSError::new_err((code, text)),
        Err(_) => err.into(),
    }
}
