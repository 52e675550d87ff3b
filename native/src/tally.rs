//! The analytics' per-flush tally: records per raw window key, in the order the keys first came
//! (`BatchAggregator._tally`), and the rule-gap lines in record order (`BatchAggregator._gaps`).
//! Both record paths count here while the native path runs, so the fold sees one ordered
//! tally, as if the Python path alone had counted: the bounded dimensions and the gap
//! sketches the fold feeds depend on that order. Only a new key's row and the gap lines depend
//! on it: a record under a key counted already is counted at once, looked up by a borrowed
//! [`KeyRef`] (no string copied). It is emptied at every fold (the worker folds early when it
//! holds too many keys), so it is bounded like the Python side's.

use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};

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

/// A [`Key`] borrowed from a record: the tally is asked with it, so that a record whose key is
/// counted already (most records) copies no string.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub start: i64,
    pub provider: &'a str,
    pub pool: &'a str,
    pub source: &'a str,
    pub tenant: &'a str,
    pub rtype: &'a str,
    pub label: Option<&'a str>,
    pub category: Option<&'a str>,
}

impl KeyRef<'_> {
    pub fn to_key(&self) -> Key {
        Key {
            start: self.start,
            provider: self.provider.to_owned(),
            pool: self.pool.to_owned(),
            source: self.source.to_owned(),
            tenant: self.tenant.to_owned(),
            rtype: self.rtype.to_owned(),
            label: self.label.map(str::to_owned),
            category: self.category.map(str::to_owned),
        }
    }
}

// Hashes exactly as `Key`'s derived `Hash` (a `String` hashes as its `str`, an
// `Option<String>` as an `Option<&str>`): a lookup by `KeyRef` finds the `Key`.
impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.start.hash(state);
        self.provider.hash(state);
        self.pool.hash(state);
        self.source.hash(state);
        self.tenant.hash(state);
        self.rtype.hash(state);
        self.label.hash(state);
        self.category.hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.start == key.start
            && self.provider == key.provider
            && self.pool == key.pool
            && self.source == key.source
            && self.tenant == key.tenant
            && self.rtype == key.rtype
            && self.label == key.label.as_deref()
            && self.category == key.category.as_deref()
    }
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

    /// Count one more record under `key` when it is counted already (its row), else None.
    pub fn count_known(&mut self, key: &KeyRef<'_>) -> Option<usize> {
        let row = *self.index.get(key)?;
        self.rows[row].1 += 1;
        Some(row)
    }

    /// Take back one record counted in `row` (by [`Tally::count_known`]: the row stays).
    pub fn uncount(&mut self, row: usize) {
        if let Some((_, n)) = self.rows.get_mut(row) {
            *n = n.saturating_sub(1);
        }
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

    #[test]
    fn a_borrowed_key_finds_its_row_and_only_its_own() {
        let mut tally = Tally::default();
        let known = key(60, Some("x"));
        let row = tally.count(known.clone());
        let mut asked = KeyRef {
            start: 60,
            provider: "gmail",
            pool: "",
            source: "",
            tenant: "acme",
            rtype: "Bounce",
            label: Some("x"),
            category: None,
        };
        assert_eq!(asked.to_key(), known);
        assert_eq!(tally.count_known(&asked), Some(row));
        asked.label = None;
        assert_eq!(tally.count_known(&asked), None);
        asked.label = Some("x");
        asked.category = Some("");
        assert_eq!(tally.count_known(&asked), None);
        tally.uncount(row);
        assert_eq!(tally.take().0, vec![(known, 1)]);
    }
}
