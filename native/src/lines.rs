//! `streamer classify --lines`: a block of response lines to its JSONL output in one pass.
//!
//! A block is split into lines as `streamer.offline.labeller` splits a chunk (on `\n` only; a
//! block ending with `\n` has no empty last line). Each line's output row comes from a bounded
//! LRU cache keyed by the line; a miss asks `resolve`, the Python labeller, for the row, so
//! every byte of a row is the Python path's. A line that is not UTF-8 gets the fixed
//! `not_utf8_row` and is reported by its index (the caller names it skipped).

use crate::cache::LineCache;

/// The lines of `data` as the Python path splits a chunk: `data.split(b"\n")` without the
/// empty piece after a final newline (an empty block is one empty line, as in Python).
pub fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|&b| b == b'\n')
}

/// Labels blocks of response lines through one cache of output rows.
pub struct LineRows {
    cache: LineCache<Box<[u8]>>,
    not_utf8_row: Box<[u8]>,
}

/// The output of one block.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Block {
    pub output: Vec<u8>,
    pub lines: usize,
    /// Indices (from 0) of the lines that are not UTF-8.
    pub not_utf8: Vec<usize>,
}

impl LineRows {
    pub fn new(cache_size: usize, not_utf8_row: &[u8]) -> Self {
        LineRows {
            cache: LineCache::new(cache_size),
            not_utf8_row: not_utf8_row.into(),
        }
    }

    /// The rows of every line of `data`, in order; `resolve(line)` makes a row the cache
    /// lacks (its error stops the block and is returned).
    pub fn label<E>(
        &mut self,
        data: &[u8],
        mut resolve: impl FnMut(&str) -> Result<Vec<u8>, E>,
    ) -> Result<Block, E> {
        // rows are at least as long as their line: the input's size is a good first guess
        let mut block = Block {
            output: Vec::with_capacity(data.len() * 2 + 64),
            ..Block::default()
        };
        for (i, raw) in split_lines(data).enumerate() {
            block.lines += 1;
            let Ok(line) = std::str::from_utf8(raw) else {
                block.not_utf8.push(i);
                block.output.extend_from_slice(&self.not_utf8_row);
                continue;
            };
            if let Some(row) = self.cache.get(line) {
                block.output.extend_from_slice(row);
                continue;
            }
            let row = resolve(line)?;
            block.output.extend_from_slice(&row);
            self.cache.put(line.to_owned(), row.into_boxed_slice());
        }
        Ok(block)
    }

    /// Lines held by the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8]) -> Vec<&[u8]> {
        split_lines(data).collect()
    }

    #[test]
    fn splits_like_python() {
        assert_eq!(lines(b"a\nb\n"), [b"a".as_slice(), b"b"]);
        assert_eq!(lines(b"a\nb"), [b"a".as_slice(), b"b"]);
        assert_eq!(lines(b"a\n\n"), [b"a".as_slice(), b""]);
        assert_eq!(lines(b"\n"), [b"".as_slice()]);
        assert_eq!(lines(b""), [b"".as_slice()]);
        assert_eq!(lines(b"a\r\n"), [b"a\r".as_slice()]);
    }

    fn row(line: &str) -> Result<Vec<u8>, ()> {
        Ok(format!("<{line}>\n").into_bytes())
    }

    #[test]
    fn rows_in_order_resolved_once_per_distinct_line() {
        let mut rows = LineRows::new(8, b"?\n");
        let mut asked = Vec::new();
        let block = rows
            .label(b"x\ny\nx\n\xff\nx", |line| {
                asked.push(line.to_owned());
                row(line)
            })
            .unwrap();
        assert_eq!(block.output, b"<x>\n<y>\n<x>\n?\n<x>\n");
        assert_eq!(block.lines, 5);
        assert_eq!(block.not_utf8, [3]);
        assert_eq!(asked, ["x", "y"]);
        let again = rows.label(b"y\n", |_| Err(())).unwrap();
        assert_eq!(again.output, b"<y>\n");
        assert_eq!(rows.cached(), 2);
    }

    #[test]
    fn a_resolve_error_stops_the_block() {
        let mut rows = LineRows::new(0, b"?\n");
        assert_eq!(rows.label(b"a\nb\n", |_| Err("boom")), Err("boom"));
    }
}
