//! `RecordPath.route`: a whole slice of messages to their outputs, with the slice's counts, so
//! that Python touches only the messages the native path hands back (`Pipeline._process_native`).

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use super::{delivery_events, Answer, RecordPath};
use crate::partition::partition_of;

/// Where the outputs go (`RecordPath.routes`).
pub struct Routes {
    pub output_topic: Py<PyString>,
    pub other_topic: Option<Py<PyString>>,
    pub events_topic: Py<PyString>,
    /// `pipeline.Output`, a named tuple, made by `tuple.__new__` (`make`): no Python frame.
    pub output: Py<PyType>,
    pub make: Py<PyAny>,
    /// `pipeline.UNCLASSIFIED_LABEL`.
    pub unclassified: String,
    /// The events topic's partitions: a slice's deliveries are gathered per partition for
    /// `delivery_batches.DeliveryBatches` (0: an event per delivery, in its record's place).
    pub events_partitions: u32,
}

/// A slice's deliveries: partition -> recipient -> latest delivery time.
type Deliveries = HashMap<u32, HashMap<String, i64, ahash::RandomState>, ahash::RandomState>;

/// The counts of one slice, as `pipeline.BatchStats` holds them.
#[derive(Default)]
struct Counts {
    events_in: HashMap<String, u64, ahash::RandomState>,
    events_out: HashMap<(String, String), u64, ahash::RandomState>,
    sites: HashMap<(String, String), u64, ahash::RandomState>,
    dropped: u64,
    seconds: Vec<f64>,
}

/// `(outputs, handed back, events_in, events_out, sites, dropped, classify seconds,
/// deliveries)`: the outputs of the messages decided natively, in order; `(index, position)`
/// of each message the Python path decides (its outputs go before `outputs[position]`); the
/// counts of the messages decided natively (dicts like `BatchStats`' counters, the seconds a
/// list); with `events_partitions`, their deliveries (`{partition: {recipient: time}}`, the
/// latest time of each), else `{}`. With analytics, the records decided natively are in the
/// tally unless some were handed back: then the caller counts them around those
/// (`count_until`).
pub fn route<'py>(
    path: &mut RecordPath,
    py: Python<'py>,
    messages: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyTuple>> {
    let Some(routes) = path.routes.take() else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "RecordPath.routes was never called",
        ));
    };
    let routed = route_with(path, &routes, py, messages);
    path.routes = Some(routes);
    if routed.is_err() {
        // the whole slice takes the Python path, which counts every record of it
        path.forget_slice(py);
    }
    routed
}

fn route_with<'py>(
    path: &mut RecordPath,
    routes: &Routes,
    py: Python<'py>,
    messages: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyTuple>> {
    let outputs = PyList::empty(py);
    let mut handed: Vec<(usize, usize)> = Vec::new();
    let mut counts = Counts::default();
    let mut deliveries = Deliveries::default();
    let out = Out {
        routes,
        py,
        list: &outputs,
    };
    path.begin_slice(py);
    for (at, msg) in messages.iter().enumerate() {
        let value = msg.call_method0(intern!(py, "value"))?;
        match path.answer(py, at, &value)? {
            Answer::Python => handed.push((at, outputs.len())),
            Answer::Other(rtype) => out.other(&msg, &value, rtype, &mut counts)?,
            Answer::Counted(rtype, keys, t) => {
                out.other(&msg, &value, rtype, &mut counts)?;
                if routes.events_partitions == 0 {
                    out.events(&msg, delivery_events(keys, t))?;
                } else {
                    for key in keys {
                        let p = partition_of(key.as_bytes(), routes.events_partitions);
                        let latest = deliveries.entry(p).or_default().entry(key).or_insert(t);
                        *latest = (*latest).max(t);
                    }
                }
            }
            Answer::Enriched(enriched) => {
                let label = &enriched.entry.label_text;
                counts.seconds.push(enriched.seconds);
                *counts.events_in.entry(enriched.rtype.clone()).or_default() += 1;
                if let Some(site) = enriched.site {
                    *counts.sites.entry((site, label.clone())).or_default() += 1;
                }
                *counts
                    .events_out
                    .entry((enriched.rtype, label.clone()))
                    .or_default() += 1;
                let topic = routes.output_topic.bind(py).as_any();
                out.push(&msg, topic, enriched.value.as_any())?;
                if let Some(events) = enriched.events {
                    out.events(&msg, events)?;
                }
            }
        }
    }
    if handed.is_empty() {
        path.count_until(py, None); // else the Python path counts between them
    }
    let events_in = PyDict::new(py);
    for (rtype, n) in counts.events_in {
        events_in.set_item(rtype, n)?;
    }
    let pairs = |counted: HashMap<(String, String), u64, ahash::RandomState>| {
        let dict = PyDict::new(py);
        for ((a, b), n) in counted {
            dict.set_item((a, b), n)?;
        }
        PyResult::Ok(dict)
    };
    let placed = PyDict::new(py);
    for (p, latest) in deliveries {
        let group = PyDict::new(py);
        for (recipient, t) in latest {
            group.set_item(recipient, t)?;
        }
        placed.set_item(p, group)?;
    }
    let items: [Bound<'py, PyAny>; 8] = [
        outputs.into_any(),
        handed.into_pyobject(py)?.into_any(),
        events_in.into_any(),
        pairs(counts.events_out)?.into_any(),
        pairs(counts.sites)?.into_any(),
        counts.dropped.into_pyobject(py)?.into_any(),
        counts.seconds.into_pyobject(py)?.into_any(),
        placed.into_any(),
    ];
    PyTuple::new(py, items)
}

/// Appends outputs to the slice's list.
struct Out<'a, 'py> {
    routes: &'a Routes,
    py: Python<'py>,
    list: &'a Bound<'py, PyList>,
}

impl<'py> Out<'_, 'py> {
    /// `Output(topic, msg.key(), value, msg.headers())`.
    fn push(
        &self,
        msg: &Bound<'py, PyAny>,
        topic: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let py = self.py;
        let key = msg.call_method0(intern!(py, "key"))?;
        let headers = msg.call_method0(intern!(py, "headers"))?;
        self.append(topic, &key, value, &headers)
    }

    fn append(
        &self,
        topic: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let fields = PyTuple::new(self.py, [topic, key, value, headers])?;
        let output = self
            .routes
            .make
            .bind(self.py)
            .call1((self.routes.output.bind(self.py), fields))?;
        self.list.append(output)
    }

    /// `Pipeline._other`: a record routed unchanged by `non_classifiable`.
    fn other(
        &self,
        msg: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        rtype: String,
        counts: &mut Counts,
    ) -> PyResult<()> {
        match &self.routes.other_topic {
            None => counts.dropped += 1,
            Some(topic) => {
                let label = self.routes.unclassified.clone();
                *counts.events_out.entry((rtype.clone(), label)).or_default() += 1;
                self.push(msg, topic.bind(self.py).as_any(), value)?;
            }
        }
        *counts.events_in.entry(rtype).or_default() += 1;
        Ok(())
    }

    /// `Pipeline._suppress`: the events, each value with the message's partition and offset
    /// (`suppressions.with_source`), without headers.
    fn events(&self, msg: &Bound<'py, PyAny>, events: Vec<(String, Vec<u8>)>) -> PyResult<()> {
        let py = self.py;
        let number = |name: &Bound<'py, PyString>| -> PyResult<i64> {
            let n = msg.call_method0(name)?;
            Ok(if n.is_none() { 0 } else { n.extract()? })
        };
        let partition = number(intern!(py, "partition"))?;
        let offset = number(intern!(py, "offset"))?;
        let source = format!("{{\"p\":{partition},\"o\":{offset},");
        let topic = self.routes.events_topic.bind(py).as_any();
        let none = py.None().into_bound(py);
        for (key, value) in events {
            let value = PyBytes::new_with(py, source.len() + value.len() - 1, |out| {
                out[..source.len()].copy_from_slice(source.as_bytes());
                out[source.len()..].copy_from_slice(&value[1..]);
                Ok(())
            })?;
            let key = PyBytes::new(py, key.as_bytes());
            self.append(topic, key.as_any(), value.as_any(), &none)?;
        }
        Ok(())
    }
}
