//! `RecordPath`: one call per slice of messages (`streamer.native` wraps it).
//!
//! `route(messages)` (see `outputs`) makes the outputs of a slice and its counts, handing back
//! to the Python path the messages it cannot decide exactly. `decide(values)` answers per raw
//! value, one of
//! - `None`: the Python path decides this message (malformed, Feedback, anything odd);
//! - a `str`: the type of a record routed unchanged by `non_classifiable`;
//! - `(type, suppression events)`: the same, a Delivery with analytics on;
//! - `(enriched value, type, label, site or None, seconds spent classifying, a hard bounce's
//!   suppression events or None)`.
//!
//! Lines are classified through two bounded LRU caches (categorized / Uncategorized, like the
//! Python classifier's, so a flood of unknown lines cannot evict the useful entries). A miss
//! calls `resolve(line)`, the Python classifier, which returns
//! `(categorized, label, label as JSON, classification object as JSON, countable, rule as JSON)`.
//!
//! With analytics on (`count_into`), each record the native path decides is also counted
//! into a [`Tally`] (see `crate::tally`), its classification gains `category` and `provider`,
//! and a Delivery and a hard Bounce or OOB make their suppression events. Whatever the native
//! path cannot count exactly (see `crate::analytics`), or a label resting on evidence that is
//! not `countable`, it hands back: the Python path decides and counts it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::analytics::{self, Clues};
use crate::cache::LineCache;
use crate::feedback::{self, Report};
use crate::json;
use crate::record::{decide, Classifiable, ToClassify, Verdict};
use crate::splice;
use crate::tally;

mod outputs;

/// What a line classifies as, ready to splice (the Python objects are shared, not copied).
struct Entry {
    label: Py<PyString>,
    label_text: String,
    label_json: Py<PyBytes>,
    classification_json: Py<PyBytes>,
    /// Whether the analytics may count the record natively (its evidence allows it).
    countable: bool,
    /// The rule as a hard bounce's suppression event names it (`suppressions.rule_object`).
    rule_json: Vec<u8>,
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
    analytics: Option<Analytics>,
    routes: Option<outputs::Routes>,
    /// A Feedback label's classification, asked of `resolve_feedback` once per label.
    resolve_feedback: Option<Py<PyAny>>,
    feedback_entries: HashMap<String, Arc<Entry>>,
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
            classifiable: Classifiable(classifiable, feedback::Types(Vec::new())),
            categorized: LineCache::new(cache_size),
            uncategorized: LineCache::new(uncategorized_cache_size),
            // one shared Python string per type KumoMTA logs (and a log hook's records)
            types: record_types
                .iter()
                .map(|t| PyString::intern(py, t).unbind())
                .collect(),
            type_names: record_types,
            analytics: None,
            routes: None,
            resolve_feedback: None,
            feedback_entries: HashMap::new(),
        }
    }

    /// Label Feedback records by their ARF report from now on (`streamer.feedback`): `types`
    /// are `(normalised Feedback-Type, label, canonical type)`, `resolve(label)` answers as
    /// the line resolver does, for a label.
    fn label_feedback(&mut self, types: Vec<(String, String, String)>, resolve: Py<PyAny>) {
        self.classifiable.1 = feedback::Types(types);
        self.resolve_feedback = Some(resolve);
        self.feedback_entries.clear();
    }

    /// Count the analytics into `tally` from now on (see the module doc). `site`, `peer` and
    /// `domain` give the provider of such a clue, `category(label, code)` a category, each as
    /// `(name, name as JSON)`; answers are remembered, at most `cache_size` per kind.
    /// `oob_meta`: the `meta` key an OOB's tenant is read from (None: OOBs take Python's way);
    /// `suppress_feedback`: the Feedback-Types whose reports suppress the complainer.
    #[allow(clippy::too_many_arguments)]
    fn count_into(
        &mut self,
        tally: Py<Tally>,
        window_ms: i64,
        cache_size: usize,
        names: (String, String, String),
        site: Py<PyAny>,
        peer: Py<PyAny>,
        domain: Py<PyAny>,
        category: Py<PyAny>,
        oob_meta: Option<String>,
        suppress_feedback: Vec<String>,
    ) -> PyResult<()> {
        if window_ms <= 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "window_ms must be positive",
            ));
        }
        let (other, hard, uncategorized) = names;
        self.analytics = Some(Analytics {
            tally,
            window_ms,
            other,
            hard,
            uncategorized,
            lookups: [site, peer, domain, category],
            providers: std::array::from_fn(|_| Lookups::new(cache_size)),
            categories: Categories::new(cache_size),
            oob_meta,
            suppress_feedback,
            watermark: None,
            pending: VecDeque::new(),
            counted_now: Vec::new(),
            at: 0,
        });
        Ok(())
    }

    /// Count the records decided natively before the `until`-th value of the last slice
    /// (all of them without `until`): the Python path counts the `until`-th next.
    #[pyo3(signature = (until=None))]
    fn count_until(&mut self, py: Python<'_>, until: Option<usize>) {
        if let Some(analytics) = self.analytics.as_mut() {
            analytics.count_until(py, until.unwrap_or(usize::MAX));
        }
    }

    /// The largest event time (ms, to the second) counted since the last call, if any.
    fn take_watermark(&mut self) -> Option<i64> {
        self.analytics.as_mut().and_then(|a| a.watermark.take())
    }

    /// One answer per value of `values` (a list of `bytes` or `None`), in order.
    fn decide<'py>(
        &mut self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyList>> {
        let answers = PyList::empty(py);
        self.begin_slice(py);
        for (at, value) in values.iter().enumerate() {
            let answer = match self.answer(py, at, &value)? {
                Answer::Python => py.None().into_bound(py),
                Answer::Other(rtype) => self.type_name(py, &rtype).into_any(),
                Answer::Counted(rtype, keys, t) => {
                    let events = event_tuple(py, delivery_events(keys, t))?;
                    PyTuple::new(
                        py,
                        [self.type_name(py, &rtype).into_any(), events.into_any()],
                    )?
                    .into_any()
                }
                Answer::Enriched(enriched) => {
                    let site = match &enriched.site {
                        Some(site) => PyString::new(py, site).into_any(),
                        None => py.None().into_bound(py),
                    };
                    let events = match enriched.events {
                        Some(events) => event_tuple(py, events)?.into_any(),
                        None => py.None().into_bound(py),
                    };
                    let items: [Bound<'py, PyAny>; 6] = [
                        enriched.value.into_any(),
                        self.type_name(py, &enriched.rtype).into_any(),
                        enriched.entry.label.bind(py).clone().into_any(),
                        site,
                        enriched.seconds.into_pyobject(py)?.into_any(),
                        events,
                    ];
                    PyTuple::new(py, items)?.into_any()
                }
            };
            answers.append(answer)?;
        }
        Ok(answers)
    }

    /// Where the outputs of [`RecordPath::route`] go: the output topic, the topic of the
    /// records routed unchanged (None: dropped), the suppression events topic, the class of
    /// an output (`pipeline.Output`), the label counted for an unclassified output, and the
    /// events topic's partitions to place deliveries for (0: an event per delivery).
    #[allow(clippy::too_many_arguments)] // `native.Routes`, spread
    fn routes(
        &mut self,
        py: Python<'_>,
        output_topic: Py<PyString>,
        other_topic: Option<Py<PyString>>,
        events_topic: Py<PyString>,
        output: Py<PyType>,
        unclassified: String,
        events_partitions: u32,
    ) -> PyResult<()> {
        let make = py.get_type::<PyTuple>().getattr("__new__")?.unbind();
        self.routes = Some(outputs::Routes {
            output_topic,
            other_topic,
            events_topic,
            output,
            make,
            unclassified,
            events_partitions,
        });
        Ok(())
    }

    /// Route a slice of messages (`pipeline.RawMessage`s) as `Pipeline.process` does: see
    /// `outputs::route` for the answer.
    fn route<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        outputs::route(self, py, messages)
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
    /// Drop what the last slice left to count: it failed, and takes the Python path whole.
    fn forget_slice(&mut self, py: Python<'_>) {
        if let Some(analytics) = self.analytics.as_mut() {
            analytics.pending.clear();
            let mut tally = analytics.tally.borrow_mut(py);
            for row in analytics.counted_now.drain(..) {
                tally.tally.uncount(row);
            }
        }
    }

    /// A new slice: count what an interrupted one left; its records stay counted.
    fn begin_slice(&mut self, py: Python<'_>) {
        self.count_until(py, None);
        if let Some(analytics) = self.analytics.as_mut() {
            analytics.counted_now.clear();
        }
    }

    fn type_name<'py>(&self, py: Python<'py>, rtype: &str) -> Bound<'py, PyString> {
        match self.type_names.iter().position(|t| t == rtype) {
            Some(i) => self.types[i].bind(py).clone(),
            None => PyString::new(py, rtype),
        }
    }

    /// The classified record's answer; None when the classifier raised (Python's way:
    /// it dead-letters the record with the error, as the reference does) or when the Python
    /// path must count it (see the module doc).
    fn enrich<'py>(
        &mut self,
        py: Python<'py>,
        raw: &[u8],
        record: ToClassify<'_>,
    ) -> Option<Enriched<'py>> {
        let started = Instant::now();
        let entry = match &record.report {
            Some(report) => self.feedback_entry(py, &report.label).ok()?,
            None => self.classify(py, &record.line).ok()?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let mut classification = entry.classification_json.as_bytes(py);
        let with_analytics;
        let mut events = None;
        if let Some(clues) = &record.clues {
            let analytics = self.analytics.as_mut()?;
            if !entry.countable {
                return None;
            }
            let (category, provider) =
                analytics.dimensions(py, clues, Some(entry.as_ref())).ok()?;
            let category = category?; // a labelled record always has one
            let hard = category.name == analytics.hard;
            if let Some(report) = &record.report {
                if hard {
                    return None; // a report labelled hard: Python's rules for it
                }
                if analytics.suppress_feedback.contains(&report.kind) {
                    events = Some(complaint_events(clues, report, &entry, &provider, py)?);
                }
            } else if hard && SUPPRESSING.contains(&record.rtype.as_ref()) {
                let made = hard_events(clues, &record, &entry, &provider, py)?;
                events = Some(made);
            }
            let gap = (entry.label_text == analytics.uncategorized && !record.line.is_empty())
                .then(|| record.line.clone());
            analytics.count(
                py,
                clues,
                &record.rtype,
                Some(&entry.label_text),
                Some(&category.name),
                &provider.name,
                gap,
                record.report.as_ref().map(|r| r.kind.clone()),
            );
            with_analytics = with_dimensions(classification, &category.json, &provider.json);
            classification = &with_analytics;
        }
        let parts = splice::pieces(
            raw,
            &record.splice,
            entry.label_json.as_bytes(py),
            classification,
        );
        let value = PyBytes::new_with(py, splice::length(&parts), |out| {
            splice::write(&parts, out);
            Ok(())
        })
        .ok()?;
        Some(Enriched {
            value,
            rtype: record.rtype.into_owned(),
            entry,
            site: record.site.map(Cow::into_owned),
            seconds,
            events,
        })
    }

    /// The answer on the `at`-th value of a slice.
    fn answer<'py>(
        &mut self,
        py: Python<'py>,
        at: usize,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Answer<'py>> {
        if let Some(analytics) = self.analytics.as_mut() {
            analytics.at = at;
        }
        let oob_meta = self.analytics.as_ref().and_then(|a| a.oob_meta.as_deref());
        let raw = match value.cast::<PyBytes>() {
            Ok(bytes) => Some(bytes.as_bytes()),
            Err(_) => None, // None, or not bytes: Python's way
        };
        let analytics = self.analytics.is_some();
        let verdict = decide(raw, self.max_bytes, &self.classifiable, analytics, oob_meta);
        Ok(match verdict {
            Verdict::Python => Answer::Python,
            Verdict::Other(rtype) => Answer::Other(rtype.into_owned()),
            Verdict::Counted(rtype, clues) => self.counted(py, rtype.into_owned(), clues)?,
            Verdict::Classify(record) => match self.enrich(py, raw.unwrap_or_default(), record) {
                Some(enriched) => Answer::Enriched(enriched),
                None => Answer::Python,
            },
        })
    }

    /// A record routed unchanged, counted (with a Delivery's suppression events); Python's
    /// way when a lookup failed.
    fn counted<'py>(
        &mut self,
        py: Python<'py>,
        rtype: String,
        clues: Clues<'_>,
    ) -> PyResult<Answer<'py>> {
        let Some(analytics) = self.analytics.as_mut() else {
            return Ok(Answer::Python);
        };
        let Ok((_, provider)) = analytics.dimensions(py, &clues, None) else {
            return Ok(Answer::Python);
        };
        analytics.count(py, &clues, &rtype, None, None, &provider.name, None, None);
        if clues.delivery_keys.is_empty() {
            return Ok(Answer::Other(rtype));
        }
        Ok(Answer::Counted(rtype, clues.delivery_keys, clues.event_ms))
    }

    /// The entry of a Feedback label (`resolve_feedback`'s answer, kept per label: a few).
    fn feedback_entry(&mut self, py: Python<'_>, label: &str) -> PyResult<Arc<Entry>> {
        if let Some(found) = self.feedback_entries.get(label) {
            return Ok(found.clone());
        }
        let Some(resolve) = &self.resolve_feedback else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "RecordPath.label_feedback was never called",
            ));
        };
        let entry = Arc::new(entry_of(resolve.bind(py).call1((label,))?)?.1);
        self.feedback_entries
            .insert(label.to_owned(), entry.clone());
        Ok(entry)
    }

    fn classify(&mut self, py: Python<'_>, line: &str) -> PyResult<Arc<Entry>> {
        if let Some(found) = self.categorized.get(line) {
            return Ok(found.clone());
        }
        if let Some(found) = self.uncategorized.get(line) {
            return Ok(found.clone());
        }
        let (categorized, entry) = entry_of(self.resolve.bind(py).call1((line,))?)?;
        let entry = Arc::new(entry);
        let cache = if categorized {
            &mut self.categorized
        } else {
            &mut self.uncategorized
        };
        cache.put(line.to_owned(), entry.clone());
        Ok(entry)
    }
}

/// A resolver's answer `(categorized, label, label as JSON, classification object as JSON,
/// countable, rule as JSON)` as (categorized, its entry).
fn entry_of(answer: Bound<'_, PyAny>) -> PyResult<(bool, Entry)> {
    let (categorized, label, label_json, classification_json, countable, rule_json): (
        bool,
        Bound<'_, PyString>,
        Bound<'_, PyBytes>,
        Bound<'_, PyBytes>,
        bool,
        Vec<u8>,
    ) = answer.extract()?;
    let entry = Entry {
        label_text: label.to_str()?.to_owned(),
        label: label.unbind(),
        label_json: label_json.unbind(),
        classification_json: classification_json.unbind(),
        countable,
        rule_json,
    };
    Ok((categorized, entry))
}

/// What the native path says of one message value.
enum Answer<'py> {
    /// The Python path decides it.
    Python,
    /// Routed unchanged (its type as counted).
    Other(String),
    /// A Delivery routed unchanged: its suppression events' keys and time.
    Counted(String, Vec<String>, i64),
    /// Classified and enriched.
    Enriched(Enriched<'py>),
}

struct Enriched<'py> {
    value: Bound<'py, PyBytes>,
    rtype: String,
    entry: Arc<Entry>,
    site: Option<String>,
    seconds: f64,
    /// A hard bounce's suppression events (key, value without its source).
    events: Option<Vec<(String, Vec<u8>)>>,
}

/// A Delivery's suppression events as `SuppressionEvents.update` makes them (key, value
/// without its source).
fn delivery_events(keys: Vec<String>, t: i64) -> Vec<(String, Vec<u8>)> {
    let value = format!("{{\"t\":{t}}}").into_bytes();
    keys.into_iter().map(|key| (key, value.clone())).collect()
}

/// `suppressions.SUPPRESSING_TYPES`: the types whose hard category suppresses the recipients.
const SUPPRESSING: [&str; 2] = ["Bounce", "OOB"];

/// A hard bounce's suppression events as `SuppressionEvents.update` makes them (key, value
/// without its source); None when the Python path must make them (a non-ASCII recipient or
/// sender).
fn hard_events(
    clues: &Clues<'_>,
    record: &ToClassify<'_>,
    entry: &Entry,
    provider: &Named,
    py: Python<'_>,
) -> Option<Vec<(String, Vec<u8>)>> {
    let keys = analytics::bounce_keys(clues)?;
    let sender_domain = analytics::sender_domain(clues)?;
    if keys.is_empty() {
        return Some(Vec::new());
    }
    let value = EventValue {
        t: clues.event_ms,
        label: entry.label_json.as_bytes(py),
        rule: &entry.rule_json,
        response: Some(&record.line),
        provider: &provider.json,
        tenant: Some(clues.tenant.as_ref()).filter(|t| !t.is_empty()),
        sender_domain: sender_domain.as_deref(),
        feedback_type: None,
        kind: (record.rtype == "OOB").then_some("oob"),
    }
    .write();
    Some(keys.into_iter().map(|key| (key, value.clone())).collect())
}

/// A suppressing Feedback report's event as `SuppressionEvents.update` makes it (key,
/// value without its source): the complainer, with the report's tenant and the complained-of
/// sender's domain; None when the Python path must make it (a non-ASCII address).
fn complaint_events(
    clues: &Clues<'_>,
    report: &Report<'_>,
    entry: &Entry,
    provider: &Named,
    py: Python<'_>,
) -> Option<Vec<(String, Vec<u8>)>> {
    let Some(complainer) = &report.complainer else {
        return Some(Vec::new());
    };
    let key = analytics::suppression_key(complainer)?;
    if key.is_empty() {
        return Some(Vec::new());
    }
    let sender_domain = analytics::domain_of_sender(report.mail_from.as_deref())?;
    let value = EventValue {
        t: clues.event_ms,
        label: entry.label_json.as_bytes(py),
        rule: b"null",
        response: None,
        provider: &provider.json,
        tenant: report.tenant.as_deref(),
        sender_domain: sender_domain.as_deref(),
        feedback_type: Some(&report.kind),
        kind: Some("complaint"),
    }
    .write();
    Some(vec![(key, value)])
}

/// A suppression event's value with its details, as `SuppressionEvents.update` writes it
/// with orjson: `{"t":..,"h":{label, rule, response, provider, tenant, sender_domain[,
/// feedback_type]}[,"k":..]}` (the JSON pieces as given, the texts escaped; None: null).
struct EventValue<'a> {
    t: i64,
    label: &'a [u8],
    rule: &'a [u8],
    response: Option<&'a str>,
    provider: &'a [u8],
    tenant: Option<&'a str>,
    sender_domain: Option<&'a str>,
    feedback_type: Option<&'a str>,
    kind: Option<&'a str>,
}

impl EventValue<'_> {
    fn write(&self) -> Vec<u8> {
        let text = |out: &mut Vec<u8>, name: &[u8], value: Option<&str>| {
            out.extend_from_slice(name);
            match value {
                Some(value) => json::write_string(out, value),
                None => out.extend_from_slice(b"null"),
            }
        };
        let mut out = format!("{{\"t\":{},\"h\":{{\"label\":", self.t).into_bytes();
        out.extend_from_slice(self.label);
        out.extend_from_slice(b",\"rule\":");
        out.extend_from_slice(self.rule);
        text(&mut out, b",\"response\":", self.response);
        out.extend_from_slice(b",\"provider\":");
        out.extend_from_slice(self.provider);
        text(&mut out, b",\"tenant\":", self.tenant);
        text(&mut out, b",\"sender_domain\":", self.sender_domain);
        if let Some(feedback_type) = self.feedback_type {
            text(&mut out, b",\"feedback_type\":", Some(feedback_type));
        }
        out.push(b'}');
        if let Some(kind) = self.kind {
            text(&mut out, b",\"k\":", Some(kind));
        }
        out.push(b'}');
        out
    }
}

/// Suppression events as Python holds them: a tuple of `(key, value)` bytes pairs.
fn event_tuple<'py>(
    py: Python<'py>,
    events: Vec<(String, Vec<u8>)>,
) -> PyResult<Bound<'py, PyTuple>> {
    let pairs = events
        .iter()
        .map(|(key, value)| {
            PyTuple::new(
                py,
                [PyBytes::new(py, key.as_bytes()), PyBytes::new(py, value)],
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, pairs)
}

/// The classification object's JSON with `category` and `provider` added last (as
/// `records.with_analytics` adds them to the dict).
fn with_dimensions(classification: &[u8], category: &[u8], provider: &[u8]) -> Vec<u8> {
    let body = &classification[..classification.len() - 1]; // without its closing brace
    let mut out = Vec::with_capacity(classification.len() + category.len() + provider.len() + 28);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"category\":");
    out.extend_from_slice(category);
    out.extend_from_slice(b",\"provider\":");
    out.extend_from_slice(provider);
    out.push(b'}');
    out
}

/// A provider or category name, and its JSON (as orjson writes it).
struct Named {
    name: String,
    json: Vec<u8>,
}

/// Answers of one Python lookup, remembered (emptied when full, like the analyzer's caches).
struct Lookups<K> {
    answers: HashMap<K, Arc<Named>, ahash::RandomState>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq> Lookups<K> {
    fn new(capacity: usize) -> Self {
        Lookups {
            answers: HashMap::default(),
            capacity,
        }
    }

    /// The remembered answer for `key`, else `ask`'s (remembered): a hit copies nothing.
    fn get_or<Q>(
        &mut self,
        key: &Q,
        ask: impl FnOnce() -> PyResult<(String, Vec<u8>)>,
    ) -> PyResult<Arc<Named>>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(found) = self.answers.get(key) {
            return Ok(found.clone());
        }
        let (name, json) = ask()?;
        let named = Arc::new(Named { name, json });
        if self.answers.len() >= self.capacity {
            self.answers.clear();
        }
        self.answers.insert(key.to_owned(), named.clone());
        Ok(named)
    }
}

/// The category lookups' answers, per reply class (a handful: `code // 100`), each keyed by
/// label, so that a lookup copies no label.
struct Categories {
    classes: Vec<(i128, Lookups<String>)>,
    capacity: usize,
}

impl Categories {
    /// Reply classes remembered at most (any integer code is one: forgotten all at once).
    const MAX_CLASSES: usize = 16;

    fn new(capacity: usize) -> Self {
        Categories {
            classes: Vec::new(),
            capacity,
        }
    }

    fn of_class(&mut self, class: i128) -> &mut Lookups<String> {
        let at = match self.classes.iter().position(|(c, _)| *c == class) {
            Some(at) => at,
            None => {
                if self.classes.len() >= Self::MAX_CLASSES {
                    self.classes.clear();
                }
                self.classes.push((class, Lookups::new(self.capacity)));
                self.classes.len() - 1
            }
        };
        &mut self.classes[at].1
    }
}

/// The analytics' part of the record path (see the module doc).
struct Analytics {
    tally: Py<Tally>,
    window_ms: i64,
    other: String,
    hard: String,
    uncategorized: String,
    /// The Python lookups: the provider of a site, of a peer name, of a recipient domain;
    /// the category of (label, reply code).
    lookups: [Py<PyAny>; 4],
    providers: [Lookups<String>; 3],
    categories: Categories,
    oob_meta: Option<String>,
    /// The Feedback-Types whose reports suppress the complainer (`suppress_feedback_types`).
    suppress_feedback: Vec<String>,
    watermark: Option<i64>,
    /// The records of the last slice counted natively, not yet in the tally: (index in the
    /// slice, key, rule-gap line, a Feedback report's type). The records handed back are
    /// counted by the Python path between them (`count_until`), so that the tally keeps the
    /// records' order.
    pending: VecDeque<Pending>,
    /// The rows of the slice's records counted at once (their key was counted before, and
    /// they carry no gap line or report type): taken back if the slice fails.
    counted_now: Vec<usize>,
    /// The index in the slice of the record being decided.
    at: usize,
}

/// A record counted natively, waiting for its turn in the tally (`Analytics::pending`).
type Pending = (usize, tally::Key, Option<String>, Option<String>);

const SITE: usize = 0;
const PEER: usize = 1;
const DOMAIN: usize = 2;
const CATEGORY: usize = 3;

impl Analytics {
    fn ask<'py>(
        py: Python<'py>,
        lookup: &Py<PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<(String, Vec<u8>)> {
        let answer = lookup.bind(py).call1(args)?;
        let (name, json): (String, Vec<u8>) = answer.extract()?;
        Ok((name, json))
    }

    /// (category of a labelled record, provider): `Analyzer.category` and `Analyzer.provider`.
    fn dimensions(
        &mut self,
        py: Python<'_>,
        clues: &Clues<'_>,
        entry: Option<&Entry>,
    ) -> PyResult<(Option<Arc<Named>>, Arc<Named>)> {
        let category = match entry {
            Some(entry) => {
                let lookup = &self.lookups[CATEGORY];
                let code = clues.reply_class * 100;
                let of_class = self.categories.of_class(clues.reply_class);
                Some(of_class.get_or(entry.label_text.as_str(), || {
                    Self::ask(py, lookup, (entry.label.bind(py), code).into_pyobject(py)?)
                })?)
            }
            None => None,
        };
        Ok((category, self.provider(py, clues)?))
    }

    fn provider(&mut self, py: Python<'_>, clues: &Clues<'_>) -> PyResult<Arc<Named>> {
        let clues = [
            (SITE, clues.site.as_deref()),
            (PEER, clues.peer.as_deref()),
            (DOMAIN, clues.domain.as_deref()),
        ];
        for (kind, clue) in clues {
            let Some(clue) = clue else {
                if kind == DOMAIN {
                    break;
                }
                continue;
            };
            let lookup = &self.lookups[kind];
            let found = self.providers[kind]
                .get_or(clue, || Self::ask(py, lookup, (clue,).into_pyobject(py)?))?;
            if found.name != self.other || kind == DOMAIN {
                return Ok(found);
            }
        }
        Ok(Arc::new(Named {
            json: format!("\"{}\"", self.other).into_bytes(),
            name: self.other.clone(),
        }))
    }

    /// Count one record (with its rule-gap line, or a Feedback report's type), once the
    /// records before it are counted. A record under a key counted already, with neither, is
    /// counted at once: only a new key's row and the gap lines depend on the records' order.
    #[allow(clippy::too_many_arguments)]
    fn count(
        &mut self,
        py: Python<'_>,
        clues: &Clues<'_>,
        rtype: &str,
        label: Option<&str>,
        category: Option<&str>,
        provider: &str,
        gap: Option<String>,
        feedback: Option<String>,
    ) {
        let t = clues.second_ms;
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
        let key = tally::KeyRef {
            start: t - t.rem_euclid(self.window_ms),
            provider,
            pool: &clues.pool,
            source: &clues.source,
            tenant: &clues.tenant,
            rtype,
            label,
            category,
        };
        if gap.is_none() && feedback.is_none() {
            if let Some(row) = self.tally.borrow_mut(py).tally.count_known(&key) {
                self.counted_now.push(row);
                return;
            }
        }
        self.pending
            .push_back((self.at, key.to_key(), gap, feedback));
    }

    /// Count the records decided natively before the `until`-th value of the last slice.
    fn count_until(&mut self, py: Python<'_>, until: usize) {
        let mut tally = self.tally.borrow_mut(py);
        while self.pending.front().is_some_and(|(at, ..)| *at < until) {
            let Some((_, key, gap, feedback)) = self.pending.pop_front() else {
                break;
            };
            let row = tally.tally.count(key);
            if let Some(line) = gap {
                tally.tally.gap(row, line);
            }
            if let Some(kind) = feedback {
                tally.tally.feedback(row, kind);
            }
        }
    }
}

/// The analytics' tally of one aggregator (`BatchAggregator.elsewhere`), counted by both
/// record paths while the native one runs (see `crate::tally`).
#[pyclass(module = "streamer._native")]
#[derive(Default)]
pub struct Tally {
    tally: tally::Tally,
}

#[pymethods]
impl Tally {
    #[new]
    fn new() -> Self {
        Tally::default()
    }

    /// Count a record the Python path decided under `key` (`BatchAggregator.add`'s raw key);
    /// False when the key is none the native tally holds (a window start beyond 64 bits):
    /// the caller counts it itself.
    fn count(&mut self, key: &Bound<'_, PyTuple>) -> bool {
        match raw_key(key) {
            Some(key) => {
                self.tally.count(key);
                true
            }
            None => false,
        }
    }

    /// A rule-gap line of a record counted under `key`; False as for [`Tally::count`].
    fn gap(&mut self, key: &Bound<'_, PyTuple>, line: String) -> bool {
        self.with_row(key, |tally, row| tally.gap(row, line))
    }

    /// A Feedback record counted under `key` with its report's type; False as for
    /// [`Tally::count`].
    fn feedback(&mut self, key: &Bound<'_, PyTuple>, kind: String) -> bool {
        self.with_row(key, |tally, row| tally.feedback(row, kind))
    }

    /// Distinct keys counted since the last drain.
    #[getter]
    fn pending(&self) -> usize {
        self.tally.pending()
    }

    /// Add the counts into `tally` (raw key -> records) in the order the keys came, the
    /// rule-gap lines to `gaps` as `(raw key, line)` and the Feedback reports' types to
    /// `feedback` as `(raw key, type)`, in record order; start over.
    fn drain_into(
        &mut self,
        tally: &Bound<'_, PyDict>,
        gaps: &Bound<'_, PyList>,
        feedback: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        let py = tally.py();
        let (rows, lines, kinds) = self.tally.take();
        let mut keys = Vec::with_capacity(rows.len());
        for (key, n) in rows {
            let key = PyTuple::new(
                py,
                [
                    key.start.into_pyobject(py)?.into_any(),
                    PyString::new(py, &key.provider).into_any(),
                    PyString::new(py, &key.pool).into_any(),
                    PyString::new(py, &key.source).into_any(),
                    PyString::new(py, &key.tenant).into_any(),
                    PyString::new(py, &key.rtype).into_any(),
                    key.label.as_deref().into_pyobject(py)?.into_any(),
                    key.category.as_deref().into_pyobject(py)?.into_any(),
                ],
            )?;
            let before: u64 = match tally.get_item(&key)? {
                Some(v) => v.extract()?,
                None => 0,
            };
            tally.set_item(&key, before + n)?;
            keys.push(key);
        }
        for (row, line) in lines {
            gaps.append((&keys[row], line))?;
        }
        for (row, kind) in kinds {
            feedback.append((&keys[row], kind))?;
        }
        Ok(())
    }
}

impl Tally {
    /// `add(tally, row)` on the row of a key counted since the last drain; False when there
    /// is none (or the key is none the tally can hold).
    fn with_row(
        &mut self,
        key: &Bound<'_, PyTuple>,
        add: impl FnOnce(&mut tally::Tally, usize),
    ) -> bool {
        let Some(row) = raw_key(key).and_then(|key| self.tally.row(&key)) else {
            return false;
        };
        add(&mut self.tally, row);
        true
    }
}

/// A Python raw key as the native tally holds it.
fn raw_key(key: &Bound<'_, PyTuple>) -> Option<tally::Key> {
    let (start, provider, pool, source, tenant, rtype, label, category): (
        i64,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    ) = key.extract().ok()?;
    Some(tally::Key {
        start,
        provider,
        pool,
        source,
        tenant,
        rtype,
        label,
        category,
    })
}
