//! The analytics' per-flush tally: records per raw window key, in the order the keys first came
//! (`BatchAggregator._tally`), and the rule-gap lines in record order (`BatchAggregator._gaps`).
//! Both record paths count here while the native path runs, so the fold sees one ordered
//! tally, as if the Python path alone had counted: the bounded dimensions and the gap
//! sketches the fold feeds depend on that order. It is emptied at every fold (the worker folds
//! early when it holds too many keys), so it is bounded like the Python side's.

use std::collections::HashMap;

/// `(window start, provider, egress pool, egress source, tenant, type, label, category)`:
/// `BatchAggregator.add`'s raw key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub start: i64,
    pub provider: String,
    pub pool: String,
    pub source: String,
    pub tenant: String,
    pub rtype: String,
    pub label: Option<String>,
    pub category: Option<String>,
}

/// Records per key, in the order the keys came.
pub type Rows = Vec<(Key, u64)>;
/// (row, line) of each rule-gap line, in record order.
pub type Gaps = Vec<(usize, String)>;
/// (row, Feedback-Type) of each Feedback record, in record order (`BatchAggregator._feedback`).
pub type Feedback = Vec<(usize, String)>;

#[derive(Default)]
pub struct Tally {
    index: HashMap<Key, usize, ahash::RandomState>,
    rows: Rows,
    gaps: Gaps,
    feedback: Feedback,
}

impl Tally {
    /// Count one record under `key`; its row (for [`Tally::gap`]).
    pub fn count(&mut self, key: Key) -> usize {
        if let Some(&row) = self.index.get(&key) {
            self.rows[row].1 += 1;
            return row;
        }
        let row = self.rows.len();
        self.index.insert(key.clone(), row);
        self.rows.push((key, 1));
        row
    }

    /// The row of a key counted since the last [`Tally::take`].
    pub fn row(&self, key: &Key) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// A rule-gap line of a record counted in `row`.
    pub fn gap(&mut self, row: usize, line: String) {
        self.gaps.push((row, line));
    }

    /// The Feedback-Type of a Feedback record counted in `row`.
    pub fn feedback(&mut self, row: usize, kind: String) {
        self.feedback.push((row, kind));
    }

    /// Distinct keys counted since the last [`Tally::take`].
    pub fn pending(&self) -> usize {
        self.rows.len()
    }

    /// The rows, gaps and Feedback-Types so far; the tally starts over.
    pub fn take(&mut self) -> (Rows, Gaps, Feedback) {
        self.index.clear();
        (
            std::mem::take(&mut self.rows),
            std::mem::take(&mut self.gaps),
            std::mem::take(&mut self.feedback),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: i64, label: Option<&str>) -> Key {
        Key {
            start,
            provider: "gmail".into(),
            pool: String::new(),
            source: String::new(),
            tenant: "acme".into(),
            rtype: "Bounce".into(),
            label: label.map(String::from),
            category: None,
        }
    }

    #[test]
    fn counts_in_first_seen_order() {
        let mut tally = Tally::default();
        assert_eq!(tally.count(key(60, None)), 0);
        assert_eq!(tally.count(key(0, Some("x"))), 1);
        assert_eq!(tally.count(key(60, None)), 0);
        tally.gap(1, "550 x".into());
        tally.feedback(0, "abuse".into());
        assert_eq!(tally.pending(), 2);
        let (rows, gaps, feedback) = tally.take();
        assert_eq!(rows, vec![(key(60, None), 2), (key(0, Some("x")), 1)]);
        assert_eq!(gaps, vec![(1, "550 x".to_owned())]);
        assert_eq!(feedback, vec![(0, "abuse".to_owned())]);
        assert_eq!(tally.pending(), 0);
        assert_eq!(tally.count(key(0, Some("x"))), 0);
    }
}
