//! `RecordPath`: one call per slice of raw message values (`streamer.native` wraps it).
//!
//! For each value it answers one of
//! - `None`: the Python path decides this message (malformed, Feedback, anything odd);
//! - a `str`: the type of a record routed unchanged by `non_classifiable`;
//! - a tuple `(enriched value, type, label, site or None, seconds spent classifying)`.
//!
//! Lines are classified through two bounded LRU caches (categorized / Uncategorized, like the
//! Python classifier's, so a flood of unknown lines cannot evict the useful entries). A miss
//! calls `resolve(line)`, the Python classifier, which returns
//! `(categorized, label, label as JSON, classification object as JSON)`.

use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::cache::LineCache;
use crate::record::{decide, Classifiable, ToClassify, Verdict};
use crate::splice;

/// What a line classifies as, ready to splice (the Python objects are shared, not copied).
struct Entry {
    label: Py<PyString>,
    label_json: Py<PyBytes>,
    classification_json: Py<PyBytes>,
}

#[pyclass(module = "streamer._native")]
pub struct RecordPath {
    resolve: Py<PyAny>,
    max_bytes: usize,
    classifiable: Classifiable,
    categorized: LineCache<Arc<Entry>>,
    uncategorized: LineCache<Arc<Entry>>,
    type_names: Vec<String>,
    types: Vec<Py<PyString>>,
}

#[pymethods]
impl RecordPath {
    #[new]
    fn new(
        py: Python<'_>,
        resolve: Py<PyAny>,
        max_bytes: usize,
        cache_size: usize,
        uncategorized_cache_size: usize,
        record_types: Vec<String>,
        classifiable: Vec<String>,
    ) -> Self {
        RecordPath {
            resolve,
            max_bytes,
            classifiable: Classifiable(classifiable),
            categorized: LineCache::new(cache_size),
            uncategorized: LineCache::new(uncategorized_cache_size),
            // one shared Python string per type KumoMTA logs (and a log hook's records)
            types: record_types
                .iter()
                .map(|t| PyString::intern(py, t).unbind())
                .collect(),
            type_names: record_types,
        }
    }

    /// One answer per value of `values` (a list of `bytes` or `None`), in order.
    fn decide<'py>(
        &mut self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyList>> {
        let answers = PyList::empty(py);
        for value in values.iter() {
            let raw = match value.cast::<PyBytes>() {
                Ok(bytes) => Some(bytes.as_bytes()),
                Err(_) => None, // None, or not bytes: Python's way
            };
            let answer = match decide(raw, self.max_bytes, &self.classifiable) {
                Verdict::Python => py.None().into_bound(py),
                Verdict::Other(rtype) => self.type_name(py, &rtype).into_any(),
                Verdict::Classify(record) => match self.enrich(py, raw.unwrap_or_default(), record)
                {
                    Some(done) => done.into_any(),
                    None => py.None().into_bound(py),
                },
            };
            answers.append(answer)?;
        }
        Ok(answers)
    }

    /// Lines answered from each cache since the last call: (categorized, uncategorized).
    fn take_hits(&mut self) -> (u64, u64) {
        (self.categorized.take_hits(), self.uncategorized.take_hits())
    }

    /// Lines held by each cache: (categorized, uncategorized).
    fn cache_sizes(&self) -> (usize, usize) {
        (self.categorized.len(), self.uncategorized.len())
    }
}

impl RecordPath {
    fn type_name<'py>(&self, py: Python<'py>, rtype: &str) -> Bound<'py, PyString> {
        match self.type_names.iter().position(|t| t == rtype) {
            Some(i) => self.types[i].bind(py).clone(),
            None => PyString::new(py, rtype),
        }
    }

    /// The classified record's answer tuple; None when the classifier raised (Python's way:
    /// it dead-letters the record with the error, as the reference does).
    fn enrich<'py>(
        &mut self,
        py: Python<'py>,
        raw: &[u8],
        record: ToClassify<'_>,
    ) -> Option<Bound<'py, PyTuple>> {
        let started = Instant::now();
        let entry = self.classify(py, record.line).ok()?;
        let seconds = started.elapsed().as_secs_f64();
        let parts = splice::pieces(
            raw,
            &record.splice,
            entry.label_json.as_bytes(py),
            entry.classification_json.as_bytes(py),
        );
        let value = PyBytes::new_with(py, splice::length(&parts), |out| {
            splice::write(&parts, out);
            Ok(())
        })
        .ok()?;
        let site = record.site.map(|s| PyString::new(py, &s).into_any());
        let items: [Bound<'py, PyAny>; 5] = [
            value.into_any(),
            self.type_name(py, &record.rtype).into_any(),
            entry.label.bind(py).clone().into_any(),
            site.unwrap_or_else(|| py.None().into_bound(py)),
            seconds.into_pyobject(py).ok()?.into_any(),
        ];
        PyTuple::new(py, items).ok()
    }

    fn classify(&mut self, py: Python<'_>, line: String) -> PyResult<Arc<Entry>> {
        if let Some(found) = self.categorized.get(&line) {
            return Ok(found.clone());
        }
        if let Some(found) = self.uncategorized.get(&line) {
            return Ok(found.clone());
        }
        let answer = self.resolve.bind(py).call1((line.as_str(),))?;
        let (categorized, label, label_json, classification_json): (
            bool,
            Bound<'_, PyString>,
            Bound<'_, PyBytes>,
            Bound<'_, PyBytes>,
        ) = answer.extract()?;
        let entry = Arc::new(Entry {
            label: label.unbind(),
            label_json: label_json.unbind(),
            classification_json: classification_json.unbind(),
        });
        let cache = if categorized {
            &mut self.categorized
        } else {
            &mut self.uncategorized
        };
        cache.put(line, entry.clone());
        Ok(entry)
    }
}
