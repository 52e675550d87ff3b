//! Reading a record's top level without building it: each field's decoded key and the raw
//! text of its value (a slice of the input, so its position is known), in one pass over the
//! bytes that also checks the whole text is JSON.
//!
//! The native path must accept only what the Python path (orjson) accepts with the same
//! meaning: besides JSON's grammar (RFC 8259, as serde_json and orjson read it), the scanner
//! refuses the texts where orjson may read a value otherwise than the native path does (see
//! [`object_fields`]). A refusal is never an error of the record: the caller hands it to the
//! Python path, which decides (and names a dead-letter reason) as the reference does.
//!
//! Hand-written rather than serde_json's skipping: the values are only stepped over, and most
//! bytes are in strings, which are skipped eight bytes at a time.

use std::borrow::Cow;

use smallvec::SmallVec;

/// A decoded object key: borrowed from the input unless it had escapes.
#[derive(Debug, PartialEq, Eq)]
pub struct Key<'a>(pub Cow<'a, str>);

/// One field of an object: its key and the raw text of its value.
pub struct Field<'a> {
    pub key: Key<'a>,
    pub value: &'a str,
}

/// A record's fields: it has some thirty, held without a heap allocation.
pub type Fields<'a> = SmallVec<[Field<'a>; 32]>;
/// A nested object's fields (a response, `meta`...): a few.
pub type FewFields<'a> = SmallVec<[Field<'a>; 8]>;

/// Deeper nesting than this is left to Python.
const MAX_DEPTH: u32 = 128;
/// Longer digit runs are left to Python (a number orjson may read as infinity and refuse).
const MAX_DIGITS: usize = 300;

/// The fields of a JSON object, in input order; None when `text` is not one object (with only
/// JSON whitespace around it), when a key repeats (orjson keeps the last value at the first
/// key's place: the Python path handles such a record) or when it holds anything orjson could
/// take otherwise: nesting deeper than [`MAX_DEPTH`], a number with an exponent or a digit run
/// longer than [`MAX_DIGITS`] (orjson refuses what overflows a double), a surrogate escape
/// (orjson refuses a lone one).
pub fn object_fields(text: &str) -> Option<Fields<'_>> {
    let mut fields = Fields::new();
    read_object(text, &mut fields)?;
    Some(fields)
}

/// [`object_fields`] for an object of a few fields (one a record holds).
pub fn nested_fields(text: &str) -> Option<FewFields<'_>> {
    let mut fields = FewFields::new();
    read_object(text, &mut fields)?;
    Some(fields)
}

/// [`object_fields`] into the caller's (empty) `fields`, which are not moved afterwards: the
/// hot callers keep them in their own frame.
pub fn read_object<'a, A: smallvec::Array<Item = Field<'a>>>(
    text: &'a str,
    fields: &mut SmallVec<A>,
) -> Option<()> {
    let mut scan = Scanner::new(text);
    scan.whitespace();
    scan.object_fields(fields)?;
    scan.whitespace();
    (scan.at == scan.bytes.len() && !repeated_key(fields)).then_some(())
}

/// The raw texts of the items of `text`, a JSON array (a value [`object_fields`] gave).
pub fn array_items(text: &str) -> Option<Vec<&str>> {
    let mut scan = Scanner::new(text);
    scan.whitespace();
    if scan.peek() != Some(b'[') {
        return None;
    }
    scan.at += 1;
    let mut items = Vec::new();
    scan.whitespace();
    if scan.peek() == Some(b']') {
        scan.at += 1;
    } else {
        loop {
            scan.whitespace();
            items.push(scan.value_text()?);
            scan.whitespace();
            match scan.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
    }
    scan.whitespace();
    (scan.at == scan.bytes.len()).then_some(items)
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..].starts_with(word).then(|| {
            self.at += word.len();
        })
    }

    /// An object's fields, from its opening brace on.
    fn object_fields<A: smallvec::Array<Item = Field<'a>>>(
        &mut self,
        fields: &mut SmallVec<A>,
    ) -> Option<()> {
        self.open(b'{')?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            self.whitespace();
            let key = self.key()?;
            self.whitespace();
            if self.next()? != b':' {
                return None;
            }
            self.whitespace();
            let value = self.value_text()?;
            fields.push(Field { key, value });
            self.whitespace();
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn open(&mut self, bracket: u8) -> Option<()> {
        if self.next()? != bracket {
            return None;
        }
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn key(&mut self) -> Option<Key<'a>> {
        let start = self.at;
        let escaped = self.string()?;
        let raw = &self.text[start..self.at];
        Some(Key(if escaped {
            Cow::Owned(serde_json::from_str::<String>(raw).ok()?)
        } else {
            Cow::Borrowed(&raw[1..raw.len() - 1])
        }))
    }

    /// The raw text of the value starting here.
    fn value_text(&mut self) -> Option<&'a str> {
        let start = self.at;
        self.value()?;
        Some(&self.text[start..self.at])
    }

    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.skip_container(b'{', b'}'),
            b'[' => self.skip_container(b'[', b']'),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object or an array, checked but not kept.
    fn skip_container(&mut self, open: u8, close: u8) -> Option<()> {
        self.open(open)?;
        self.whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            self.whitespace();
            if open == b'{' {
                self.string()?;
                self.whitespace();
                if self.next()? != b':' {
                    return None;
                }
                self.whitespace();
            }
            self.value()?;
            self.whitespace();
            match self.next()? {
                b',' => {}
                b if b == close => break,
                _ => return None,
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A number as JSON spells it, without an exponent (see [`object_fields`]).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => {
                self.at -= 1;
                self.digits()?;
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits()? == 0 {
                return None;
            }
        }
        match self.peek() {
            Some(b'e' | b'E' | b'0'..=b'9') => None,
            _ => Some(()),
        }
    }

    fn digits(&mut self) -> Option<usize> {
        let run = self.bytes[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.at += run;
        (run <= MAX_DIGITS).then_some(run)
    }

    /// A string from its opening quote to past its closing one; whether it had escapes.
    fn string(&mut self) -> Option<bool> {
        if self.next()? != b'"' {
            return None;
        }
        let mut escaped = false;
        loop {
            self.at += plain_run(&self.bytes[self.at..]);
            match self.next()? {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None, // a control character
            }
        }
    }

    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.bytes.get(self.at..self.at + 4)?;
                if surrogate(hex) || !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                self.at += 4;
                Some(())
            }
            _ => None,
        }
    }
}

/// How many bytes at the start of `bytes` need nothing done in a string: no quote, no
/// backslash, no control character. Eight bytes at a time (most bytes are in strings).
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // the high bit of each byte that is zero; exact up to the first such byte (the lowest)
    let zeros = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let special = zeros(word ^ (ONES * u64::from(b'"')))
            | zeros(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH); // a byte below 0x20
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .take_while(|&&b| b != b'"' && b != b'\\' && b >= 0x20)
        .count()
}

/// Whether two fields have the same key. A record has some thirty fields: past a few, keys
/// go into a small open-addressing table on the stack, compared only where their hashes agree.
fn repeated_key(fields: &[Field<'_>]) -> bool {
    const SLOTS: usize = 128; // a power of two, at least twice `MOST`
    const MOST: usize = 48;
    if fields.len() <= 8 || fields.len() > MOST {
        return fields
            .iter()
            .enumerate()
            .any(|(i, field)| fields[..i].iter().any(|f| f.key == field.key));
    }
    // (hash, index + 1) per slot; 0 marks an empty one
    let mut slots = [(0u64, 0u8); SLOTS];
    for (i, field) in fields.iter().enumerate() {
        let hash = key_hash(field.key.0.as_bytes());
        let mut slot = (hash >> 57) as usize;
        loop {
            let (h, at) = slots[slot];
            if at == 0 {
                slots[slot] = (hash, i as u8 + 1);
                break;
            }
            if h == hash && fields[usize::from(at) - 1].key == field.key {
                return true;
            }
            slot = (slot + 1) % SLOTS;
        }
    }
    false
}

/// A quick hash of a key (not for adversaries: a collision only costs a comparison).
fn key_hash(key: &[u8]) -> u64 {
    let word = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(bytes) {
            *w = *b;
        }
        u64::from_le_bytes(word)
    };
    let (head, tail) = if key.len() >= 8 {
        (word(&key[..8]), word(&key[key.len() - 8..]))
    } else {
        (word(key), 0)
    };
    (head ^ tail.rotate_left(29) ^ key.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Whether the four hex digits at the start of `hex` name a UTF-16 surrogate (D800-DFFF).
fn surrogate(hex: &[u8]) -> bool {
    matches!(
        hex,
        [b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F', ..]
    )
}

/// Where `value` starts and ends in `text` (it must be a slice of it).
pub fn span(text: &str, value: &str) -> (usize, usize) {
    let start = value.as_ptr() as usize - text.as_ptr() as usize;
    (start, start + value.len())
}

/// The decoded string `value` (a raw value) holds, or None when it is not a string.
pub fn as_str(text: &str) -> Option<Cow<'_, str>> {
    if !text.starts_with('"') {
        return None;
    }
    if !text[1..text.len() - 1].contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// `text` as a JSON string, escaped as orjson escapes it (`"`, `\\` and control characters;
/// the rest as it is, UTF-8).
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Option<Vec<String>> {
        object_fields(text).map(|f| f.iter().map(|f| f.key.0.to_string()).collect())
    }

    #[test]
    fn fields_in_order_with_spans() {
        let text = r#" {"a": 1, "b\u0063": [1, {"x": "y"}]} "#;
        let fields = object_fields(text).unwrap();
        assert_eq!(fields[1].key.0, "bc");
        let (start, end) = span(text, fields[1].value);
        assert_eq!(&text[start..end], r#"[1, {"x": "y"}]"#);
    }

    #[test]
    fn refuses_what_python_must_decide() {
        assert_eq!(keys(r#"{"a": 1, "a": 2}"#), None); // duplicate key
                                                       // past a few fields, keys are compared through a table
        let many = |extra: &str| {
            let body: Vec<String> = (0..30).map(|i| format!("\"key_{i:02}\": {i}")).collect();
            format!("{{{}{extra}}}", body.join(", "))
        };
        assert_eq!(keys(&many("")).map(|k| k.len()), Some(30));
        assert_eq!(keys(&many(r#", "key_07": 0"#)), None);
        assert_eq!(keys(&many(r#", "key_\u0030\u0037": 0"#)), None); // the same, escaped
        assert_eq!(
            keys(&many(r#", "key_7": 0, "": 1"#)).map(|k| k.len()),
            Some(32)
        );
        assert_eq!(keys(r#"{"a": 1} x"#), None); // trailing garbage
        assert_eq!(keys("[1]"), None); // not an object
        assert_eq!(
            keys(r#"{"a": 1.5, "b": -3}"#),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn refuses_what_orjson_may_read_otherwise() {
        let plain = |t: &str| object_fields(t).is_some();
        assert!(plain(
            r#"{"a": [true, false, 1.5, -3, 0, -0.25, "1e400 [[[ \\ud800"], "e": null}"#
        ));
        assert!(plain(
            r#"{"a": "\\", "b": "\"{", "c": "\ue000", "d": "\u00e9\/"}"#
        ));
        assert!(!plain(r#"{"a": 1e400}"#));
        assert!(!plain(r#"{"a": 1.5E-3}"#));
        assert!(!plain(r#"{"a": 0e1}"#));
        assert!(!plain(r#"{"a": "\ud800"}"#));
        assert!(!plain(r#"{"a": "\uDC00"}"#));
        assert!(!plain(&format!("{{\"a\": {}}}", "9".repeat(301))));
        assert!(plain(&format!("{{\"a\": {}}}", "9".repeat(300))));
        assert!(!plain(&format!("{{\"a\": 1.{}}}", "9".repeat(301))));
        let nested = |n: usize| format!("{{\"a\": {}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(plain(&nested(127)));
        assert!(!plain(&nested(128)));
    }

    #[test]
    fn refuses_what_is_not_json() {
        let bad = [
            r#"{"a": 01}"#,
            r#"{"a": -}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": +1}"#,
            r#"{"a": tru}"#,
            r#"{"a": [1,]}"#,
            r#"{"a": 1,}"#,
            r#"{"a" 1}"#,
            r#"{a: 1}"#,
            r#"{"a": "x\qy"}"#,
            r#"{"a": "\u12g4"}"#,
            "{\"a\": \"tab\there\"}",
            r#"{"a": {"b": 1 "c": 2}}"#,
            r#"{"a": "unterminated}"#,
            r#"{"a": 1"#,
            "",
            "{\"a\": 1}\u{a0}",
        ];
        for text in bad {
            assert!(object_fields(text).is_none(), "{text}");
        }
        assert_eq!(keys("\t{ }\r\n"), Some(vec![]));
        assert_eq!(
            keys(r#"{"a\"b": {"x": [{}, []]}, "é": "\u00e9 long enough to be skipped in words"}"#),
            Some(vec!["a\"b".into(), "é".into()])
        );
    }

    #[test]
    fn items_of_an_array() {
        assert_eq!(
            array_items(r#"[ "a" , {"b": [1]}, 2 ]"#),
            Some(vec![r#""a""#, r#"{"b": [1]}"#, "2"])
        );
        assert_eq!(array_items("[]"), Some(vec![]));
        assert_eq!(array_items("[1,]"), None);
    }

    #[test]
    fn strings_written_like_orjson() {
        let mut out = Vec::new();
        write_string(&mut out, "a\"b\\c\n\u{1}\u{1f}\u{7f}é/");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\\u001f\u{7f}é/\"".as_bytes());
    }

    #[test]
    fn strings_decoded() {
        assert_eq!(as_str(r#""a\nb""#).unwrap(), "a\nb");
        assert_eq!(as_str("12"), None);
    }
}
