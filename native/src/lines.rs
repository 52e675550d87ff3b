//! `streamer classify --lines`: a block of response lines to its JSONL output in one pass.
//!
//! A block is split into lines as `streamer.offline.labeller` splits a chunk (on `\n` only; a
//! block ending with `\n` has no empty last line). Each line's output row comes from a bounded
//! LRU cache keyed by the line; a miss asks `resolve`, the Python labeller, for the row, so
//! every byte of a row is the Python path's. A line that is not UTF-8 gets the fixed
//! `not_utf8_row` and is reported by its index (the caller names it skipped).

use std::io::{IoSlice, Write};
use std::sync::Arc;

use crate::cache::LineCache;

/// Rows handed to one `writev` call at most (Linux's `IOV_MAX`).
const ROWS_PER_WRITE: usize = 1024;

/// The lines of `data` as the Python path splits a chunk: `data.split(b"\n")` without the
/// empty piece after a final newline (an empty block is one empty line, as in Python).
pub fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    let mut start = 0;
    std::iter::from_fn(move || {
        let end = ends.next()?;
        let line = &body[start..end];
        start = end + 1;
        Some(line)
    })
}

/// Labels blocks of response lines through one cache of output rows.
pub struct LineRows {
    cache: LineCache<Arc<[u8]>>,
    not_utf8_row: Arc<[u8]>,
}

/// The rows of one block, in order (shared with the cache: the output is written once, into
/// memory of its exact size, by [`Block::write`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Block {
    pub rows: Vec<Arc<[u8]>>,
    /// Indices (from 0) of the lines that are not UTF-8.
    pub not_utf8: Vec<usize>,
}

impl Block {
    /// Bytes of the output.
    pub fn len(&self) -> usize {
        self.rows.iter().map(|r| r.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the output into `out` (exactly [`Block::len`] bytes long).
    pub fn write(&self, out: &mut [u8]) {
        let mut at = 0;
        for row in &self.rows {
            out[at..at + row.len()].copy_from_slice(row);
            at += row.len();
        }
    }

    /// Write the output to `out` straight from the rows (`writev`), without copying them into
    /// one buffer first: a block's output is ~3 times its input, and a buffer that size is
    /// fresh pages from the kernel for every block.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        for rows in self.rows.chunks(ROWS_PER_WRITE) {
            let mut slices: Vec<IoSlice<'_>> = rows.iter().map(|r| IoSlice::new(r)).collect();
            let mut pending = &mut slices[..];
            while !pending.is_empty() {
                match out.write_vectored(pending) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => IoSlice::advance_slices(&mut pending, n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
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
        let mut block = Block {
            rows: Vec::with_capacity(data.len() / 64 + 1),
            ..Block::default()
        };
        for (i, raw) in split_lines(data).enumerate() {
            let Ok(line) = simdutf8::basic::from_utf8(raw) else {
                block.not_utf8.push(i);
                block.rows.push(self.not_utf8_row.clone());
                continue;
            };
            if let Some(row) = self.cache.get(line) {
                block.rows.push(row.clone());
                continue;
            }
            let row: Arc<[u8]> = resolve(line)?.into();
            block.rows.push(row.clone());
            self.cache.put(line.to_owned(), row);
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

    fn output(block: &Block) -> Vec<u8> {
        let mut out = vec![0; block.len()];
        block.write(&mut out);
        let mut written = Vec::new();
        block.write_to(&mut written).unwrap();
        assert_eq!(written, out);
        out
    }

    /// Takes a few bytes per call, and is interrupted once.
    struct Trickle(Vec<u8>, bool);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.1 {
                self.1 = true;
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut rows = LineRows::new(8, b"?\n");
        let lines: Vec<String> = (0..2500).map(|i| format!("line {i}")).collect();
        let block = rows.label(lines.join("\n").as_bytes(), row).unwrap();
        let mut out = Trickle(Vec::new(), false);
        block.write_to(&mut out).unwrap();
        assert_eq!(out.0, output(&block));
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
        assert_eq!(output(&block), b"<x>\n<y>\n<x>\n?\n<x>\n");
        assert_eq!(block.rows.len(), 5);
        assert_eq!(block.not_utf8, [3]);
        assert_eq!(asked, ["x", "y"]);
        let again = rows.label(b"y\n", |_| Err(())).unwrap();
        assert_eq!(output(&again), b"<y>\n");
        assert_eq!(rows.cached(), 2);
    }

    #[test]
    fn a_resolve_error_stops_the_block() {
        let mut rows = LineRows::new(0, b"?\n");
        assert_eq!(rows.label(b"a\nb\n", |_| Err("boom")), Err("boom"));
    }
}
