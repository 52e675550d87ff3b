//! A bounded least-recently-used cache of response line → classification, like the Python
//! side's `streamer.cache.LRUCache` (same sizes; a size of 0 caches nothing).

use std::num::NonZeroUsize;

use lru::LruCache;

pub struct LineCache<V> {
    entries: Option<LruCache<String, V, ahash::RandomState>>,
    /// Lines answered from this cache since the last `take_hits`.
    hits: u64,
}

impl<V> LineCache<V> {
    pub fn new(capacity: usize) -> Self {
        let entries = NonZeroUsize::new(capacity)
            .map(|cap| LruCache::with_hasher(cap, ahash::RandomState::new()));
        LineCache { entries, hits: 0 }
    }

    /// The cached value (now the most recently used), counting a hit.
    pub fn get(&mut self, line: &str) -> Option<&V> {
        let found = self.entries.as_mut()?.get(line);
        if found.is_some() {
            self.hits += 1;
        }
        found
    }

    /// Remember `value` for `line`, evicting the least recently used line when full.
    pub fn put(&mut self, line: String, value: V) {
        if let Some(entries) = self.entries.as_mut() {
            entries.put(line, value);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn take_hits(&mut self) -> u64 {
        std::mem::take(&mut self.hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let mut cache = LineCache::new(2);
        cache.put("a".into(), 1);
        cache.put("b".into(), 2);
        assert_eq!(cache.get("a"), Some(&1));
        cache.put("c".into(), 3);
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.take_hits(), 1);
        assert_eq!(cache.take_hits(), 0);
    }

    #[test]
    fn size_zero_caches_nothing() {
        let mut cache = LineCache::new(0);
        cache.put("a".into(), 1);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.len(), 0);
    }
}
