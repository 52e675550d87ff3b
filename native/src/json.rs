//! Reading a record's top level without building it: each field's decoded key and the raw
//! bytes of its value (a borrowed `RawValue`, whose position in the input is known).
//!
//! The native path must accept only what the Python path (orjson) accepts with the same
//! meaning, so every value is also walked by [`Checked`], which refuses what orjson might read
//! otherwise (see there). A refusal is never an error of the record: the caller hands it to the
//! Python path, which decides (and names a dead-letter reason) as the reference does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
/// JSON whitespace around it), when a value is refused by [`Checked`], or when a key repeats
/// (orjson keeps the last: the Python path handles such a record).
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
            serde_json::from_str::<Checked>(value.get()).map_err(de::Error::custom)?;
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

/// Any JSON value that orjson reads with the same meaning. Refused (so left to Python):
/// floats that overflow or may have been integers too large for 64 bits (serde_json reads
/// those as floats, orjson may refuse them), a float read as zero (an underflow is read as zero
/// by serde_json), strings with lone surrogate escapes (serde_json refuses them for `str`).
/// Nesting deeper than serde_json's limit (128, below orjson's) fails the parse: Python's way.
pub struct Checked;

/// The largest float magnitude taken as certainly written as a float or a small integer.
const FLOAT_LIMIT: f64 = 1e18;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked, E> {
        if v.is_finite() && v != 0.0 && v.abs() < FLOAT_LIMIT {
            Ok(Checked)
        } else {
            Err(E::custom("a float the native path does not take"))
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        // Keys are decoded (an escape in a key is checked like one in a value).
        while map.next_key_seed(KeySeed)?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = IgnoredAny;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<IgnoredAny, D::Error> {
        Key::deserialize(deserializer).map(|_| IgnoredAny)
    }
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
        assert_eq!(keys(r#"{"a": 1e400}"#), None); // overflow
        assert_eq!(keys(r#"{"a": 123456789012345678901234567890}"#), None); // > 64 bits
        assert_eq!(keys(r#"{"a": 1e-400}"#), None); // underflow
        assert_eq!(keys(r#"{"a": "\ud800"}"#), None); // lone surrogate
        assert_eq!(keys(r#"{"a": 1} x"#), None); // trailing garbage
        assert_eq!(keys("[1]"), None); // not an object
        let deep = format!("{{\"a\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(keys(&deep), None);
        assert_eq!(
            keys(r#"{"a": 1.5, "b": -3}"#),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn strings_decoded() {
        let v: &RawValue = serde_json::from_str(r#""a\nb""#).unwrap();
        assert_eq!(as_str(v).unwrap(), "a\nb");
        let v: &RawValue = serde_json::from_str("12").unwrap();
        assert_eq!(as_str(v), None);
    }
}
