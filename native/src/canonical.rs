//! Whether a record's bytes are already what orjson writes for the value they hold.
//!
//! `streamer classify` writes each record as `orjson.dumps(orjson.loads(line))` with the
//! enrichment set; the native record path splices the enrichment into the original bytes. The
//! two agree byte for byte exactly when the line is orjson's own writing of its value: no white
//! space outside strings, every key once per object, integers without a sign on zero or
//! leading zeros, and strings that decode and encode to the same bytes. [`is_canonical`] says
//! so for the forms it can check exactly and answers false for the rest (floats, `\u` escapes,
//! very long integers, deep nesting): those take the Python path, which stays the reference.

/// Nesting deeper than this is left to the Python path (orjson writes at most 254 levels).
const MAX_DEPTH: usize = 64;
/// Integers with more digits are left to the Python path (every 18-digit one is an `i64`).
const MAX_DIGITS: usize = 18;

/// True when `line` is one JSON object exactly as orjson writes its value (see the module doc).
pub fn is_canonical(line: &[u8]) -> bool {
    if line.first() != Some(&b'{') || has_control(line) || std::str::from_utf8(line).is_err() {
        return false;
    }
    let mut scan = Scan {
        line,
        at: 0,
        keys: Vec::new(),
        seen: Vec::new(),
    };
    scan.value(0) && scan.at == line.len()
}

/// Whether any byte is below 0x20: raw in a string it is not JSON, outside one it is white
/// space orjson does not write. One pass without early exit, so that it runs on whole words.
fn has_control(line: &[u8]) -> bool {
    line.chunks(64)
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | (b < 0x20)))
}

/// A few bits of a key: two keys with different bits differ (see [`Scan::seen`]).
fn key_bit(key: &[u8]) -> (usize, u64) {
    let first = key.first().copied().unwrap_or(0) as usize;
    let last = key.last().copied().unwrap_or(0) as usize;
    let mixed = key.len().wrapping_mul(31) ^ first.wrapping_mul(7) ^ last;
    ((mixed >> 6) & 3, 1 << (mixed & 63))
}

struct Scan<'a> {
    line: &'a [u8],
    at: usize,
    /// The keys of the objects being read, innermost last (each object's from its start).
    keys: Vec<&'a [u8]>,
    /// Per object being read, a 256-bit summary of its keys so far: a key whose bit is not
    /// set is new without comparing it with every earlier key.
    seen: Vec<[u64; 4]>,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => depth < MAX_DEPTH && self.object(depth + 1),
            Some(b'[') => depth < MAX_DEPTH && self.array(depth + 1),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.line[self.at..].starts_with(word);
        self.at += word.len();
        found
    }

    fn object(&mut self, depth: usize) -> bool {
        self.at += 1; // '{'
        let first_key = self.keys.len();
        self.seen.push([0; 4]);
        let mut done = self.peek() == Some(b'}');
        while !done {
            let Some(key) = self.string() else {
                return false;
            };
            let (word, bit) = key_bit(key);
            let seen = self.seen.last_mut().expect("pushed above");
            if seen[word] & bit != 0 && self.keys[first_key..].contains(&key) {
                return false; // orjson keeps one of them: not the same bytes
            }
            seen[word] |= bit;
            self.keys.push(key);
            if self.peek() != Some(b':') {
                return false;
            }
            self.at += 1;
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => done = true,
                _ => return false,
            }
        }
        self.at += 1; // '}'
        self.keys.truncate(first_key);
        self.seen.pop();
        true
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1; // '['
        if self.peek() == Some(b']') {
            self.at += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// A string's bytes (without its quotes) when orjson writes its value alike: escapes only
    /// where orjson writes one, in its form (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`).
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut at = start;
        loop {
            let stop = at + memchr::memchr2(b'"', b'\\', &self.line[at..])?;
            if self.line[stop] == b'"' {
                self.at = stop + 1;
                return Some(&self.line[start..stop]);
            }
            match self.line.get(stop + 1) {
                Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => at = stop + 2,
                _ => return None, // `\/`, `\u....`: orjson writes those characters otherwise
            }
        }
    }

    fn integer(&mut self) -> bool {
        let negative = self.peek() == Some(b'-');
        let start = self.at + usize::from(negative);
        let digits = self.line[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.at = start + digits;
        let fraction = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        let leading_zero = digits > 1 && self.line[start] == b'0';
        let negative_zero = negative && digits == 1 && self.line[start] == b'0';
        digits > 0 && digits <= MAX_DIGITS && !fraction && !leading_zero && !negative_zero
    }
}

/// `values` with every item that is not canonical bytes replaced by None (the record path's
/// "Python decides"): one call per chunk of `streamer classify` records.
#[cfg(feature = "python")]
#[pyo3::pyfunction]
pub fn canonical_or_none<'py>(
    values: &pyo3::Bound<'py, pyo3::types::PyList>,
) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::types::PyList>> {
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyList};

    let py = values.py();
    let kept = values.iter().map(|value| match value.cast::<PyBytes>() {
        Ok(bytes) if is_canonical(bytes.as_bytes()) => value.clone(),
        _ => py.None().into_bound(py),
    });
    PyList::new(py, kept)
}

#[cfg(test)]
mod tests {
    use super::is_canonical;

    #[test]
    fn orjson_writing_is_canonical() {
        for line in [
            r#"{}"#,
            r#"{"a":1,"b":[true,false,null],"c":{"a":-12,"d":[]},"e":"x\"y\\z\n\t"}"#,
            "{\"type\":\"Bounce\",\"response\":{\"code\":550,\"content\":\"caf\u{e9}\"}}",
            "{\"s\":\"caf\u{e9} \u{2028} \u{1f600} \u{7f}\"}",
            r#"{"a":{"a":{"a":0}}}"#,
        ] {
            assert!(is_canonical(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn what_orjson_writes_otherwise_is_not() {
        for line in [
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            "{\"a\":1}\r",
            r#"{"a":1,"a":2}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\/"}"#,
            "{\"a\":\"\x01\"}",
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a"}"#,
            r#"{"a":1"#,
            r#"["a"]"#,
            r#"{"a":"x"#,
            r#"{"a":"x\"#,
            "",
        ] {
            assert!(!is_canonical(line.as_bytes()), "{line}");
        }
        assert!(!is_canonical(b"{\"a\":\"\xff\"}"));
        let deep = format!("{}1{}", "{\"a\":".repeat(70), "}".repeat(70));
        assert!(!is_canonical(deep.as_bytes()));
        let deep_enough = format!("{}1{}", "{\"a\":".repeat(64), "}".repeat(64));
        assert!(is_canonical(deep_enough.as_bytes()));
        assert!(!is_canonical(deep.as_bytes()));
    }

    #[test]
    fn keys_repeat_across_objects_but_not_within_one() {
        assert!(is_canonical(br#"{"a":{"a":1,"b":2},"b":{"a":3}}"#));
        assert!(!is_canonical(br#"{"a":{"b":1},"c":2,"a":3}"#));
        let keys: Vec<String> = (0..300).map(|i| format!("\"k{i}\":{i}")).collect();
        let many = format!("{{{}}}", keys.join(","));
        assert!(is_canonical(many.as_bytes()));
        for again in ["k0", "k5", "k150", "k299"] {
            let twice = format!("{{{},\"{again}\":1}}", keys.join(","));
            assert!(!is_canonical(twice.as_bytes()), "{again}");
        }
    }
}
