//! The enriched record written from the original bytes: `bounce_classification` and
//! `classification` replaced where they stand, the missing ones added before the closing brace
//! in that order (as `records.set_classification` leaves a dict), every other byte kept.

use crate::record::{Splice, CLASSIFICATION_FIELD, LABEL_FIELD};

/// The pieces of the output in order: slices of the input and of the two encoded values.
pub fn pieces<'a>(
    input: &'a [u8],
    splice: &Splice,
    label_json: &'a [u8],
    classification_json: &'a [u8],
) -> Vec<&'a [u8]> {
    let mut replaced: Vec<((usize, usize), &'a [u8])> = Vec::with_capacity(2);
    if let Some(at) = splice.label {
        replaced.push((at, label_json));
    }
    if let Some(at) = splice.classification {
        replaced.push((at, classification_json));
    }
    replaced.sort_by_key(|(at, _)| at.0);
    let mut out = Vec::with_capacity(12);
    let mut done = 0;
    for ((start, end), value) in replaced {
        out.push(&input[done..start]);
        out.push(value);
        done = end;
    }
    out.push(&input[done..splice.closing_brace]);
    if splice.label.is_none() {
        out.extend([
            b",\"".as_slice(),
            LABEL_FIELD.as_bytes(),
            b"\":",
            label_json,
        ]);
    }
    if splice.classification.is_none() {
        out.extend([b",\"".as_slice(), CLASSIFICATION_FIELD.as_bytes(), b"\":"]);
        out.push(classification_json);
    }
    out.push(&input[splice.closing_brace..]);
    out
}

/// Total length of `pieces`.
pub fn length(pieces: &[&[u8]]) -> usize {
    pieces.iter().map(|p| p.len()).sum()
}

/// Write `pieces` into `out` (exactly `length(pieces)` bytes long).
pub fn write(pieces: &[&[u8]], out: &mut [u8]) {
    let mut at = 0;
    for piece in pieces {
        out[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::types;
    use crate::record::{decide, Verdict};

    fn enriched(text: &str) -> String {
        let Verdict::Classify(c) = decide(Some(text.as_bytes()), 1 << 20, &types(), false, None)
        else {
            panic!("not classifiable")
        };
        let parts = pieces(text.as_bytes(), &c.splice, b"\"L\"", b"{\"c\":1}");
        let mut out = vec![0; length(&parts)];
        write(&parts, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn adds_missing_fields_before_the_brace() {
        assert_eq!(
            enriched(r#"{"type":"Bounce","response":{"code":550}}"#),
            r#"{"type":"Bounce","response":{"code":550},"bounce_classification":"L","classification":{"c":1}}"#
        );
    }

    #[test]
    fn replaces_present_fields_in_place() {
        assert_eq!(
            enriched(
                r#"{"classification":null,"type":"Bounce","bounce_classification":"X","response":{"code":550}} "#
            ),
            r#"{"classification":{"c":1},"type":"Bounce","bounce_classification":"L","response":{"code":550}} "#
        );
        assert_eq!(
            enriched(r#"{"type":"Bounce","classification":7,"response":{"code":550}}"#),
            r#"{"type":"Bounce","classification":{"c":1},"response":{"code":550},"bounce_classification":"L"}"#
        );
    }
}
