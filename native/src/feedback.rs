//! A Feedback record's ARF report as `streamer.feedback` reads it (the reference), for the
//! reports the native path can read exactly: the Feedback-Type in ASCII (Python lower-cases
//! and splits other text by Unicode's rules), every object the report holds without a repeated
//! key. Any other report is the Python path's.

use std::borrow::Cow;

use crate::analytics::python_space;
use crate::json::{array_items, as_str, read_object, FewFields};

/// `feedback.FEEDBACK_TYPES` with each label's canonical type (`feedback.feedback_type`):
/// (normalised Feedback-Type, label, canonical type), handed over by Python.
pub struct Types(pub Vec<(String, String, String)>);

impl Types {
    /// (label, canonical type) of a normalised Feedback-Type: a known one's, else the label
    /// and type of `other` (`FeedbackOther`).
    fn of(&self, normalised: &str) -> Option<(&str, &str)> {
        let known = |name: &str| self.0.iter().find(|(t, _, _)| t == name);
        let (_, label, kind) = known(normalised).or_else(|| known("other"))?;
        Some((label, kind))
    }
}

/// What the analytics and the suppression events read from a report.
#[derive(Debug, PartialEq, Eq)]
pub struct Report<'a> {
    pub label: String,
    /// The canonical Feedback-Type (`feedback.feedback_type`).
    pub kind: String,
    /// `complained_about(record)`: the complainer and the tenant, as far as known.
    pub complainer: Option<Cow<'a, str>>,
    pub tenant: Option<Cow<'a, str>>,
    /// The report's `original_mail_from` when a string (a complaint names its domain).
    pub mail_from: Option<Cow<'a, str>>,
}

/// The report of a Feedback record's `feedback_report` value; Some(None) when the record has
/// no usable Feedback-Type (it is then classified by its response line), None when the
/// Python path must read it.
pub fn report<'a>(value: Option<&'a str>, types: &Types) -> Option<Option<Report<'a>>> {
    let Some(value) = value.filter(|v| v.starts_with('{')) else {
        return Some(None);
    };
    let mut fields = FewFields::new();
    read_object(value, &mut fields)?;
    let field = |name: &str| fields.iter().find(|f| f.key.0 == name).map(|f| f.value);
    let Some(kind) = field("feedback_type").and_then(as_str) else {
        return Some(None);
    };
    if !kind.is_ascii() {
        return None;
    }
    let normalised = normalise(&kind);
    if normalised.is_empty() {
        return Some(None);
    }
    let (label, kind) = types.of(&normalised)?;
    let (complainer, tenant) =
        complained_about(field("supplemental_trace"), field("original_rcpto_to"))?;
    Some(Some(Report {
        label: label.to_owned(),
        kind: kind.to_owned(),
        complainer,
        tenant,
        mail_from: field("original_mail_from").and_then(as_str),
    }))
}

/// `feedback._normalise` of ASCII text: lower case, `_` and `-` as spaces, the words joined
/// by `-`.
fn normalise(kind: &str) -> String {
    let spaced = kind.to_ascii_lowercase().replace(['_', '-'], " ");
    spaced
        .split(python_space)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// `feedback.complained_about` from the report's `supplemental_trace` and
/// `original_rcpto_to`; None when the Python path must read them (a repeated key).
#[allow(clippy::type_complexity)]
fn complained_about<'a>(
    trace: Option<&'a str>,
    listed: Option<&'a str>,
) -> Option<(Option<Cow<'a, str>>, Option<Cow<'a, str>>)> {
    let mut fields = FewFields::new();
    if let Some(trace) = trace.filter(|t| t.starts_with('{')) {
        read_object(trace, &mut fields)?;
    }
    let field = |name: &str| fields.iter().find(|f| f.key.0 == name).map(|f| f.value);
    // a string recipient in the trace, even an empty one, is the answer; else the first listed
    let recipient = match field("recipient").and_then(as_str) {
        Some(named) => Some(named),
        None => match listed.filter(|l| l.starts_with('[')) {
            Some(listed) => array_items(listed)?.first().and_then(|v| as_str(v)),
            None => None,
        },
    };
    let tenant = field("tenant").and_then(as_str);
    Some((
        recipient.filter(|r| !r.is_empty()),
        tenant.filter(|t| !t.is_empty()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> Types {
        let rows = [
            ("abuse", "FeedbackAbuse", "abuse"),
            ("opt-out", "FeedbackOptOut", "opt-out"),
            ("opt-out-list", "FeedbackOptOut", "opt-out"),
            ("other", "FeedbackOther", "other"),
        ];
        Types(
            rows.iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect(),
        )
    }

    #[test]
    fn labels_like_the_feedback_module() {
        let label = |text: &str| report(Some(text), &types()).map(|r| r.map(|r| (r.label, r.kind)));
        let pair = |l: &str, k: &str| Some(Some((l.to_owned(), k.to_owned())));
        assert_eq!(
            label(r#"{"feedback_type":" Abuse "}"#),
            pair("FeedbackAbuse", "abuse")
        );
        assert_eq!(
            label(r#"{"feedback_type":"OPT_OUT list"}"#),
            pair("FeedbackOptOut", "opt-out")
        );
        assert_eq!(
            label(r#"{"feedback_type":"weird\u001fthing"}"#),
            pair("FeedbackOther", "other")
        );
        assert_eq!(label(r#"{"feedback_type":" -_ "}"#), Some(None));
        assert_eq!(label(r#"{"feedback_type":5}"#), Some(None));
        assert_eq!(label(r#"{"feedback_type":"abusé"}"#), None);
        assert_eq!(label(r#"{"feedback_type":"x","feedback_type":"y"}"#), None);
    }

    #[test]
    fn finds_the_complainer_like_the_feedback_module() {
        let who = |text: &str| {
            report(Some(text), &types()).unwrap().map(|r| {
                (
                    r.complainer.map(Cow::into_owned),
                    r.tenant.map(Cow::into_owned),
                )
            })
        };
        let some =
            |r: Option<&str>, t: Option<&str>| Some((r.map(str::to_owned), t.map(str::to_owned)));
        let trace = r#"{"feedback_type":"abuse","supplemental_trace":{"recipient":"a@x","tenant":"t"},"original_rcpto_to":["b@y"]}"#;
        assert_eq!(who(trace), some(Some("a@x"), Some("t")));
        let listed = r#"{"feedback_type":"abuse","supplemental_trace":{"recipient":7,"tenant":""},"original_rcpto_to":["b@y"]}"#;
        assert_eq!(who(listed), some(Some("b@y"), None));
        let empty = r#"{"feedback_type":"abuse","supplemental_trace":{"recipient":""},"original_rcpto_to":["b@y"]}"#;
        assert_eq!(who(empty), some(None, None));
        let none = r#"{"feedback_type":"abuse","original_rcpto_to":[5,"b@y"]}"#;
        assert_eq!(who(none), some(None, None));
    }
}
