//! Reading a record's top level without building it: each field's decoded key and the raw
//! bytes of its value (a borrowed `RawValue`, whose position in the input is known).
//!
//! The native path must accept only what the Python path (orjson) accepts with the same
//! meaning: [`plain`] tells the texts where serde_json's skipping and orjson may differ. A refusal is never an error of the record: the caller hands it to the
//! Python path, which decides (and names a dead-letter reason) as the reference does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A decoded object key: borrowed from the input unless it had escapes.
#[derive(Debug, PartialEq, Eq)]
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
}

/// One top-level field: its key and the raw text of its value.
pub struct Field<'a> {
    pub key: Key<'a>,
    pub value: &'a RawValue,
}

/// The fields of a JSON object, in input order; None when `text` is not one object (with only
/// JSON whitespace around it) or when a key repeats (orjson keeps the last value at the first
/// key's place: the Python path handles such a record). Values are only skipped: check the
/// text with [`plain`] first.
pub fn object_fields(text: &str) -> Option<Vec<Field<'_>>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de.deserialize_map(FieldsVisitor).ok()?;
    de.end().ok()?;
    for (i, field) in fields.iter().enumerate() {
        if fields[..i].iter().any(|f| f.key == field.key) {
            return None;
        }
    }
    Some(fields)
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<Field<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(32);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push(Field { key, value });
        }
        Ok(fields)
    }
}

/// Where `value` starts and ends in `text` (it must be a slice of it).
pub fn span(text: &str, value: &RawValue) -> (usize, usize) {
    let start = value.get().as_ptr() as usize - text.as_ptr() as usize;
    (start, start + value.get().len())
}

/// Deeper nesting than this is left to Python (serde_json's recursion limit, below orjson's).
const MAX_DEPTH: u32 = 128;
/// Longer digit runs are left to Python (a number orjson may read as infinity and refuse).
const MAX_DIGITS: u32 = 300;

/// Whether `text` holds nothing that serde_json (which only skips the values it does not
/// read) and orjson could take differently: nesting deeper than [`MAX_DEPTH`], a number with an
/// exponent or more than [`MAX_DIGITS`] digits (orjson refuses what overflows a double), a
/// surrogate escape (orjson refuses a lone one). One pass over the bytes, strings tracked;
/// a `false` only sends the record the Python way.
pub fn plain(text: &[u8]) -> bool {
    let mut depth = 0u32;
    let mut digits = 0u32;
    let mut in_string = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if in_string {
            if b == b'"' {
                in_string = false;
            } else if b == b'\\' {
                if text[i + 1..].starts_with(b"u") && surrogate(&text[i + 2..]) {
                    return false;
                }
                i += 1; // the escaped byte
            } else {
                // most bytes are in strings: skip to the next quote or backslash at once
                match memchr::memchr2(b'"', b'\\', &text[i..]) {
                    Some(at) => i += at,
                    None => return false, // an unterminated string: not JSON anyway
                }
                continue;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return false;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'e' | b'E' if digits > 0 => return false,
                _ => {}
            }
            digits = if b.is_ascii_digit() { digits + 1 } else { 0 };
            if digits > MAX_DIGITS {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// Whether the four hex digits at the start of `hex` name a UTF-16 surrogate (D800-DFFF).
fn surrogate(hex: &[u8]) -> bool {
    matches!(
        hex,
        [b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F', ..]
    )
}

/// The decoded string `value` holds, or None when it is not a string.
pub fn as_str(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get();
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
        assert_eq!(keys(r#"{"a": 1} x"#), None); // trailing garbage
        assert_eq!(keys("[1]"), None); // not an object
        assert_eq!(
            keys(r#"{"a": 1.5, "b": -3}"#),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn plain_tells_what_orjson_may_read_otherwise() {
        let plain = |t: &str| plain(t.as_bytes());
        assert!(plain(
            r#"{"a": [true, false, 1.5, -3, "1e400 [[[ \\ud800"], "e": null}"#
        ));
        assert!(plain(r#"{"a": "\\", "b": "\"{", "c": "\ue000"}"#));
        assert!(!plain(r#"{"a": 1e400}"#));
        assert!(!plain(r#"{"a": 1.5E-3}"#));
        assert!(!plain(r#"{"a": "\ud800"}"#));
        assert!(!plain(r#"{"a": "\uDC00"}"#));
        assert!(!plain(&format!("{{\"a\": {}}}", "9".repeat(301))));
        assert!(plain(&format!("{{\"a\": {}}}", "9".repeat(300))));
        let nested = |n: usize| format!("{{\"a\": {}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(plain(&nested(127)));
        assert!(!plain(&nested(128)));
    }

    #[test]
    fn strings_written_like_orjson() {
        let mut out = Vec::new();
        write_string(&mut out, "a\"b\\c\n\u{1}\u{1f}\u{7f}é/");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\\u001f\u{7f}é/\"".as_bytes());
    }

    #[test]
    fn strings_decoded() {
        let v: &RawValue = serde_json::from_str(r#""a\nb""#).unwrap();
        assert_eq!(as_str(v).unwrap(), "a\nb");
        let v: &RawValue = serde_json::from_str("12").unwrap();
        assert_eq!(as_str(v), None);
    }
}
