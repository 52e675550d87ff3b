//! What the pipeline does with one raw message value, decided as `records.accept` and
//! `Pipeline.process` decide it, for the records the native path can take exactly.

use std::borrow::Cow;

use crate::analytics::{clues, Clues};
use crate::feedback::{self, Report};
use crate::json::{as_str, read_object, span, Field, Fields};
use crate::response::response_line;

/// The types KumoMTA's bounce classifier looks at, as Python names them
/// (`records.CLASSIFIABLE_TYPES`, handed over when the record path is made), and the
/// Feedback-Types a Feedback record's report is labelled by (none: such records take the
/// Python path).
pub struct Classifiable(pub Vec<String>, pub feedback::Types);

impl Classifiable {
    pub fn contains(&self, rtype: &str) -> bool {
        self.0.iter().any(|t| t == rtype)
    }
}

/// `records.LOG_RECORD_PROTOCOL`: a log hook's bookkeeping record.
pub const LOG_RECORD_PROTOCOL: &str = "LogRecord";
/// `records.LOG_HOOK_TYPE`: the type such a record is counted and routed as.
pub const LOG_HOOK_TYPE: &str = "log_hook";
/// The fields the enrichment sets.
pub const LABEL_FIELD: &str = "bounce_classification";
pub const CLASSIFICATION_FIELD: &str = "classification";

/// A decided record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Left to the Python path (a malformed message, anything the native path does not take
    /// exactly): it decides, and names a dead-letter reason.
    Python,
    /// Not classified: routed by `non_classifiable`, unchanged (the type as counted).
    Other(Cow<'a, str>),
    /// The same, with analytics on: what the record adds to them.
    Counted(Cow<'a, str>, Clues<'a>),
    /// To be classified by `line` and enriched.
    Classify(ToClassify<'a>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct ToClassify<'a> {
    pub rtype: Cow<'a, str>,
    /// The response line (a Feedback record's report, when it has one, labels it instead).
    pub line: String,
    /// A Feedback record's report: its label, not the line's, is the record's.
    pub report: Option<Box<Report<'a>>>,
    /// A non-empty string `site` (counted per site and label).
    pub site: Option<Cow<'a, str>>,
    pub splice: Splice,
    /// What the record adds to the analytics (with analytics on).
    pub clues: Option<Clues<'a>>,
}

/// Where the enrichment goes in the input: the values it replaces, and the closing brace
/// before which it adds the fields the record lacks.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Splice {
    pub label: Option<(usize, usize)>,
    pub classification: Option<(usize, usize)>,
    pub closing_brace: usize,
}

/// The verdict on one message value (`None`: a message without a value); with `analytics`,
/// a record whose analytics only the Python path counts exactly is left to it (`oob_meta`:
/// the `meta` key of an OOB's tenant, see `analytics::clues`).
pub fn decide<'a>(
    raw: Option<&'a [u8]>,
    max_bytes: usize,
    types: &Classifiable,
    analytics: bool,
    oob_meta: Option<&str>,
) -> Verdict<'a> {
    let Some(raw) = raw else {
        return Verdict::Python;
    };
    if raw.len() > max_bytes {
        return Verdict::Python;
    }
    // SIMD-checked: the whole value, as orjson checks it
    let Ok(text) = simdutf8::basic::from_utf8(raw) else {
        return Verdict::Python;
    };
    decide_text(text, types, analytics, oob_meta).unwrap_or(Verdict::Python)
}

fn decide_text<'a>(
    text: &'a str,
    types: &Classifiable,
    analytics: bool,
    oob_meta: Option<&str>,
) -> Option<Verdict<'a>> {
    let mut fields = Fields::new();
    read_object(text, &mut fields)?;
    let field = |name: &str| fields.iter().find(|f| f.key.0 == name).map(|f| f.value);
    let rtype = as_str(field("type")?)?;
    let log_hook = field("reception_protocol")
        .and_then(as_str)
        .is_some_and(|p| p == LOG_RECORD_PROTOCOL);
    if log_hook {
        // counted as a log hook's record, with no recipient: the Python path's analytics
        return (!analytics).then_some(Verdict::Other(Cow::Borrowed(LOG_HOOK_TYPE)));
    }
    if !types.contains(&rtype) {
        if analytics {
            let counted = clues(&fields, &rtype, oob_meta, None)?;
            return Some(Verdict::Counted(rtype, counted));
        }
        return Some(Verdict::Other(rtype));
    }
    // a Feedback record is labelled by its ARF report when it has a usable one
    let report = match rtype == "Feedback" {
        true => feedback::report(field("feedback_report"), &types.1)?.map(Box::new),
        false => None,
    };
    // checked even when the report labels the record: `records.accept` refuses a bad one
    let line = response_line(field("response")?)?;
    let site = field("site").and_then(as_str).filter(|s| !s.is_empty());
    let splice = splice_points(text, &fields)?;
    let clues = match analytics {
        true => Some(clues(&fields, &rtype, oob_meta, report.as_deref())?),
        false => None,
    };
    Some(Verdict::Classify(ToClassify {
        rtype,
        line,
        report,
        site,
        splice,
        clues,
    }))
}

fn splice_points(text: &str, fields: &[Field<'_>]) -> Option<Splice> {
    let at = |name: &str| {
        fields
            .iter()
            .find(|f| f.key.0 == name)
            .map(|f| span(text, f.value))
    };
    let closing_brace = text
        .trim_end_matches([' ', '\t', '\n', '\r'])
        .len()
        .checked_sub(1)?;
    (text.as_bytes()[closing_brace] == b'}').then_some(Splice {
        label: at(LABEL_FIELD),
        classification: at(CLASSIFICATION_FIELD),
        closing_brace,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Some of KumoMTA's classifiable types (the whole list is Python's).
    pub fn types() -> Classifiable {
        let labels = [("abuse", "FeedbackAbuse"), ("other", "FeedbackOther")]
            .map(|(t, l)| (t.to_owned(), l.to_owned(), t.to_owned()))
            .to_vec();
        Classifiable(
            ["Bounce", "Feedback"].map(String::from).to_vec(),
            feedback::Types(labels),
        )
    }

    fn verdict(text: &str) -> Verdict<'_> {
        decide(Some(text.as_bytes()), 1 << 20, &types(), false, None)
    }

    #[test]
    fn routes_like_the_pipeline() {
        assert_eq!(
            verdict(r#"{"type": "Delivery"}"#),
            Verdict::Other("Delivery".into())
        );
        let hook = r#"{"type": "Bounce", "reception_protocol": "LogRecord"}"#;
        assert_eq!(verdict(hook), Verdict::Other(LOG_HOOK_TYPE.into()));
        // a Feedback record without a usable report is classified by its line, as others
        assert_eq!(verdict(r#"{"type": "Feedback"}"#), Verdict::Python);
        let report = r#""feedback_report":{"feedback_type":"Abuse"}"#;
        let text = format!(r#"{{"type":"Feedback",{report},"response":{{"code":5}}}}"#);
        let Verdict::Classify(c) = verdict(&text) else {
            panic!("not classifiable")
        };
        assert_eq!(
            (c.line.as_str(), c.report.unwrap().label.as_str()),
            ("5 ", "FeedbackAbuse")
        );
        let text = format!(r#"{{"type":"Feedback",{report},"response":5}}"#);
        assert_eq!(verdict(&text), Verdict::Python); // records.accept refuses it
        let Verdict::Classify(c) = verdict(
            r#"{"type":"Feedback","feedback_report":{"feedback_type":""},"response":{"code":550,"content":"x"}}"#,
        ) else {
            panic!("not classifiable")
        };
        assert_eq!((c.line.as_str(), c.report), ("550 x", None));
        assert_eq!(verdict(r#"{"type": "Bounce"}"#), Verdict::Python);
        assert_eq!(verdict(r#"{"type": 5}"#), Verdict::Python);
        assert_eq!(decide(None, 10, &types(), false, None), Verdict::Python);
        assert_eq!(
            decide(Some(b"{\"type\": \"X\"}"), 5, &types(), false, None),
            Verdict::Python
        );
        assert_eq!(
            decide(Some(b"{\"type\": \"\xff\"}"), 100, &types(), false, None),
            Verdict::Python
        );
        assert_eq!(verdict("\u{feff}{\"type\": \"X\"}"), Verdict::Python);
        assert_eq!(verdict(r#"{"type": "X", "n": 1e400}"#), Verdict::Python);
    }

    #[test]
    fn classifiable_with_splice_points() {
        let text = r#"{"type":"Bounce","site":"mx","response":{"code":550,"content":"x"},"bounce_classification":"Uncategorized"} "#;
        let Verdict::Classify(c) = verdict(text) else {
            panic!("not classifiable")
        };
        assert_eq!(c.line, "550 x");
        assert_eq!(c.site.as_deref(), Some("mx"));
        let (start, end) = c.splice.label.unwrap();
        assert_eq!(&text[start..end], r#""Uncategorized""#);
        assert_eq!(c.splice.classification, None);
        assert_eq!(c.splice.closing_brace, text.len() - 2);
    }
}
