//! What the analytics read from one record (`streamer.analytics.analyzer.Analyzer.observe` and
//! `BatchAggregator.add`), for the records the native path can count exactly: the event time,
//! the clues to the mailbox provider, the tenant, the egress pool and source, the reply class,
//! a Delivery's suppression keys, and what a hard bounce's suppression events carry (its
//! recipients and sender domain); of a Feedback record, what its report says (`feedback`).
//! Whatever would need more than these (a log hook's record, an event time in another form,
//! a non-ASCII recipient, sender or command to lower-case or strip) is refused: the Python
//! path counts it.

use std::borrow::Cow;

use crate::feedback::Report;
use crate::json::{array_items, as_str, read_object, FewFields, Field};

/// What one record adds to the tally (its provider is looked up from these clues).
#[derive(Debug, PartialEq, Eq)]
pub struct Clues<'a> {
    /// The event time to the second (epoch ms): what a window and the watermark use.
    pub second_ms: i64,
    /// The event time to the millisecond: a suppression event's `t`.
    pub event_ms: i64,
    /// A non-empty string `site`: the provider of the receiving site comes first.
    pub site: Option<Cow<'a, str>>,
    /// An outbound record's `peer_address.name` (the receiving MX), non-empty.
    pub peer: Option<Cow<'a, str>>,
    /// The (first) recipient's domain: the last clue; None when the record names no recipient
    /// string (the provider is then "other").
    pub domain: Option<String>,
    pub tenant: Cow<'a, str>,
    pub pool: Cow<'a, str>,
    pub source: Cow<'a, str>,
    /// `response.code // 100` when the code is an integer, else 0 (`Analyzer.category`).
    pub reply_class: i128,
    /// A Delivery's recipients as suppression keys (`suppressions.recipient_keys`).
    pub delivery_keys: Vec<String>,
    /// `recipient`'s JSON as the record has it: a hard bounce's suppression keys come from it.
    pub recipient: Option<&'a str>,
    /// `sender`'s JSON as the record has it: a hard bounce's event names its domain.
    pub sender: Option<&'a str>,
}

/// A Feedback record: counted from its report (`report`), the complainer's provider and tenant.
const FEEDBACK: &str = "Feedback";
/// `providers.INBOUND_TYPES`: a peer that is the injecting client, not a receiving MX.
const INBOUND: [&str; 2] = ["Reception", "Rejection"];

/// The clues of a record of type `rtype` (already known not to be a log hook's), or None when
/// the Python path must count it. `oob_meta`: the `meta` key an OOB's tenant is read from
/// (`batch.oob_tenant`); None leaves OOB records to the Python path. A Feedback record is
/// counted from its `report` (none: the Python path's).
pub fn clues<'a>(
    fields: &[Field<'a>],
    rtype: &str,
    oob_meta: Option<&str>,
    report: Option<&Report<'a>>,
) -> Option<Clues<'a>> {
    let report = match rtype == FEEDBACK {
        true => Some(report?),
        false => None,
    };
    let field = |name: &str| fields.iter().find(|f| f.key.0 == name).map(|f| f.value);
    let text_of = |name: &str| field(name).and_then(as_str);
    let (second_ms, event_ms) = event_time(&text_of("event_time")?)?;
    let peer = match field("peer_address") {
        // a Feedback record's provider is the complainer's (`Analyzer.provider`)
        Some(peer) if report.is_none() && !INBOUND.contains(&rtype) && peer.starts_with('{') => {
            let mut fields = FewFields::new();
            read_object(peer, &mut fields)?;
            fields
                .iter()
                .find(|f| f.key.0 == "name")
                .and_then(|f| as_str(f.value))
                .filter(|n| !n.is_empty())
        }
        _ => None,
    };
    let recipient = field("recipient");
    let first = if let Some(report) = report {
        report.complainer.clone()
    } else if rtype == "Rejection" {
        match rejected_recipient(field("response"))? {
            Some(refused) => (!refused.is_empty()).then_some(Cow::Owned(refused)),
            None => first_recipient(recipient, true)?,
        }
    } else {
        first_recipient(recipient, false)?
    };
    let tenant = if let Some(report) = report {
        report.tenant.clone().unwrap_or_default()
    } else if rtype == "OOB" {
        oob_tenant(field("meta"), oob_meta?)?
    } else {
        tenant(field("meta"), text_of("queue"))?
    };
    Some(Clues {
        second_ms,
        event_ms,
        site: text_of("site").filter(|s| !s.is_empty()),
        peer,
        domain: first.map(|r| domain(&r).to_owned()),
        tenant,
        pool: text_of("egress_pool").unwrap_or_default(),
        source: text_of("egress_source").unwrap_or_default(),
        reply_class: reply_class(field("response"))?,
        delivery_keys: if rtype == "Delivery" {
            delivery_keys(recipient)?
        } else {
            Vec::new()
        },
        recipient,
        sender: field("sender"),
    })
}

/// `records.rejected_recipient` of a Rejection: Some(address) when `response.command` is an
/// SMTP `RCPT TO` (the address stripped, "" when it names none), Some(None) when it is no
/// such command; None (the Python path) for a command it would read by Unicode's rules.
fn rejected_recipient(response: Option<&str>) -> Option<Option<String>> {
    let Some(response) = response.filter(|r| r.starts_with('{')) else {
        return Some(None);
    };
    let mut fields = FewFields::new();
    read_object(response, &mut fields)?;
    let Some(command) = fields
        .iter()
        .find(|f| f.key.0 == "command")
        .and_then(|f| as_str(f.value))
    else {
        return Some(None);
    };
    if !command.is_ascii() {
        return None;
    }
    Some(rcpt_path(&command).map(|path| {
        let path = match path.strip_prefix('@').filter(|_| path.contains(':')) {
            Some(_) => path.split_once(':').map_or("", |(_, rest)| rest),
            None => path,
        };
        path.trim_matches(python_space).to_owned()
    }))
}

/// The path of an ASCII `RCPT TO` command as `records._RCPT_COMMAND` matches it (case aside,
/// `\s*RCPT\s+TO\s*:\s*(?:<([^>]*)>?|([^\s<>]*))`): inside angle brackets up to a `>`,
/// else up to white space or a bracket.
fn rcpt_path(command: &str) -> Option<&str> {
    let rest = strip_word(command.trim_start_matches(python_space), "RCPT")?;
    let spaced = rest.trim_start_matches(python_space);
    if spaced.len() == rest.len() {
        return None; // `\s+`
    }
    let rest = strip_word(spaced, "TO")?.trim_start_matches(python_space);
    let rest = rest.strip_prefix(':')?.trim_start_matches(python_space);
    Some(match rest.strip_prefix('<') {
        Some(inner) => &inner[..inner.find('>').unwrap_or(inner.len())],
        None => {
            let end = rest
                .find(|c: char| python_space(c) || c == '<' || c == '>')
                .unwrap_or(rest.len());
            &rest[..end]
        }
    })
}

fn strip_word<'s>(text: &'s str, word: &str) -> Option<&'s str> {
    let head = text.get(..word.len())?;
    head.eq_ignore_ascii_case(word).then(|| &text[word.len()..])
}

/// `batch.oob_tenant`: `meta[key]` when a non-empty string, else "".
fn oob_tenant<'a>(meta: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
    let Some(meta) = meta.filter(|m| m.starts_with('{')) else {
        return Some(Cow::Borrowed(""));
    };
    let mut meta_fields = FewFields::new();
    read_object(meta, &mut meta_fields)?;
    let meta = meta_fields;
    Some(
        meta.iter()
            .find(|f| f.key.0 == key)
            .and_then(|f| as_str(f.value))
            .unwrap_or_default(),
    )
}

/// A hard bounce's suppression keys (`suppressions.recipient_keys` of a record that is no
/// Rejection); None for a non-ASCII recipient (the Python path decides).
pub fn bounce_keys(clues: &Clues<'_>) -> Option<Vec<String>> {
    let Some(text) = clues.recipient else {
        return Some(Vec::new());
    };
    delivery_keys(Some(text))
}

/// `suppressions.sender_domain` of a record that is no Feedback report: Some(None) without a
/// sender domain; None for a non-ASCII sender (Python's rules for white space and case are
/// Unicode's).
pub fn sender_domain(clues: &Clues<'_>) -> Option<Option<String>> {
    domain_of_sender(clues.sender.and_then(as_str).as_deref())
}

/// `suppressions.sender_domain` of a sender address (of a Feedback record: the report's
/// `original_mail_from`), as [`sender_domain`].
pub fn domain_of_sender(sender: Option<&str>) -> Option<Option<String>> {
    let Some(sender) = sender else {
        return Some(None);
    };
    if !sender.contains('@') {
        return Some(None);
    }
    if !sender.is_ascii() {
        return None;
    }
    let address = sender.trim_matches(python_space).trim_matches(['<', '>']);
    let domain = address.rsplit('@').next().unwrap_or(address);
    Some((!domain.is_empty()).then(|| domain.to_ascii_lowercase()))
}

/// `Analyzer.provider`'s recipient: `recipient`, or the first of a non-empty list; Some(None)
/// when that is no string. With `strings_only`, the first string of the list
/// (`records.first_recipient` of a Rejection without a refused address).
fn first_recipient(value: Option<&str>, strings_only: bool) -> Option<Option<Cow<'_, str>>> {
    let Some(value) = value else {
        return Some(None);
    };
    if value.starts_with('[') {
        let items = array_items(value)?;
        return Some(match strings_only {
            true => items.iter().find_map(|v| as_str(v)),
            false => items.first().and_then(|v| as_str(v)),
        });
    }
    Some(as_str(value))
}

/// The domain part as `recipient.rpartition("@")[2]` gives it (all of it without an `@`).
fn domain(recipient: &str) -> &str {
    recipient.rsplit('@').next().unwrap_or(recipient)
}

/// `BatchAggregator._tenant` for a record that is no Feedback report and no OOB: a non-empty
/// string `meta.tenant`, else the tenant part of the queue name (`batch.tenant_of`).
fn tenant<'a>(meta: Option<&'a str>, queue: Option<Cow<'a, str>>) -> Option<Cow<'a, str>> {
    if let Some(meta) = meta.filter(|m| m.starts_with('{')) {
        let mut fields = FewFields::new();
        read_object(meta, &mut fields)?; // a repeated key: Python keeps the last
        let named = fields
            .iter()
            .find(|f| f.key.0 == "tenant")
            .and_then(|f| as_str(f.value))
            .filter(|t| !t.is_empty());
        if let Some(named) = named {
            return Some(named);
        }
    }
    let Some(queue) = queue else {
        return Some(Cow::Borrowed(""));
    };
    let Some(at) = queue.rfind('@') else {
        return Some(Cow::Borrowed(""));
    };
    let start = queue[..at].find(':').map_or(0, |colon| colon + 1);
    Some(part(queue, start..at))
}

/// `text[range]`, borrowed where `text` is.
fn part(text: Cow<'_, str>, range: std::ops::Range<usize>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(text) => Cow::Borrowed(&text[range]),
        Cow::Owned(text) => Cow::Owned(text[range].to_owned()),
    }
}

/// `response.code // 100` for an integer code (64 bits, as orjson reads it), else 0; None
/// for a response the Python path must read (a repeated key).
fn reply_class(response: Option<&str>) -> Option<i128> {
    let Some(response) = response.filter(|r| r.starts_with('{')) else {
        return Some(0);
    };
    let mut fields = FewFields::new();
    read_object(response, &mut fields)?;
    let Some(code) = fields.iter().find(|f| f.key.0 == "code") else {
        return Some(0);
    };
    let text = code.value;
    if text.contains(['.', 'e', 'E'])
        || !text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
    {
        return Some(0);
    }
    let code = text.parse::<i128>().ok()?;
    // beyond 64 bits orjson gives a float, which has no reply class
    if !(i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&code) {
        return Some(0);
    }
    Some(code.div_euclid(100))
}

/// A Delivery's suppression keys: each string recipient stripped of white space and angle
/// brackets, lower-cased (`suppressions._key`); None for a non-ASCII one (Python's rules for
/// white space and case are Unicode's: the Python path decides).
fn delivery_keys(recipient: Option<&str>) -> Option<Vec<String>> {
    let Some(value) = recipient else {
        return Some(Vec::new());
    };
    let texts: Vec<Cow<'_, str>> = if value.starts_with('[') {
        let items = array_items(value)?;
        items.iter().filter_map(|v| as_str(v)).collect()
    } else {
        as_str(value).into_iter().collect()
    };
    let mut keys = Vec::with_capacity(texts.len());
    for address in &texts {
        let key = suppression_key(address)?;
        if !key.is_empty() {
            keys.push(key);
        }
    }
    Some(keys)
}

/// `suppressions._key` of an ASCII address: stripped of white space and angle brackets,
/// lower-cased ("" when nothing is left); None for a non-ASCII one (Python's rules for white
/// space and case are Unicode's: the Python path decides).
pub fn suppression_key(address: &str) -> Option<String> {
    if !address.is_ascii() {
        return None;
    }
    Some(
        address
            .trim_matches(python_space)
            .trim_matches(['<', '>'])
            .to_ascii_lowercase(),
    )
}

/// ASCII white space as Python's `str.strip()` and `str.split()` see it (the file, group,
/// record and unit separators included).
pub fn python_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f'
    )
}

/// (to the second, to the millisecond) in epoch ms of an RFC 3339 UTC time written as KumoMTA
/// writes it, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`; None for any other form (the Python path
/// parses those, and falls back to `timestamp` or its clock).
pub fn event_time(text: &str) -> Option<(i64, i64)> {
    let b = text.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let shape_ok = b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':';
    let num = |at: usize, n: usize| -> Option<i64> {
        b[at..at + n].iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    if !shape_ok {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut millis = 0;
    if b.len() > 20 {
        let fraction = &b[20..b.len() - 1];
        if b[19] != b'.' || fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10 + fraction.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
    }
    let days = days_from_civil(year, month, day);
    let second_ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000;
    Some((second_ms, second_ms + millis))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::object_fields;

    fn of(text: &str, rtype: &str) -> Option<Clues<'static>> {
        let text: &'static str = Box::leak(text.to_owned().into_boxed_str());
        clues(&object_fields(text).unwrap(), rtype, Some("tenant"), None)
    }

    #[test]
    fn event_times_like_python() {
        assert_eq!(event_time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            event_time("2026-12-07T02:00:01.2345Z"),
            Some((1_796_608_801_000, 1_796_608_801_234))
        );
        assert_eq!(event_time("1969-12-31T23:59:59.9Z"), Some((-1000, -100)));
        for odd in [
            "2026-12-07T02:00:60Z",
            "2026-02-29T02:00:00Z",
            "2026-12-07T02:00:00.Z",
            "2026-12-07T02:00:00+00:00",
            "2026-12-07 02:00:00Z",
            "2026-12-07t02:00:00z",
            "0000-12-07T02:00:00Z",
            "2026-12-07T02:00:00,5Z",
            "２026-12-07T02:00:00Z",
        ] {
            assert_eq!(event_time(odd), None, "{odd}");
        }
        assert!(event_time("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn clues_of_a_delivery() {
        let c = of(
            r#"{"type":"Delivery","event_time":"1970-01-01T00:00:01.5Z","site":"",
            "peer_address":{"name":"mx.example","addr":"1"},"recipient":[" <A@Example.COM> ",5],
            "queue":"camp:acme@example.com","egress_pool":"p","egress_source":7}"#,
            "Delivery",
        )
        .unwrap();
        assert_eq!((c.second_ms, c.event_ms), (1000, 1500));
        assert_eq!(c.site, None);
        assert_eq!(c.peer.as_deref(), Some("mx.example"));
        assert_eq!(c.domain.as_deref(), Some("Example.COM> "));
        assert_eq!(c.tenant, "acme");
        assert_eq!((c.pool.as_ref(), c.source.as_ref()), ("p", ""));
        assert_eq!(c.delivery_keys, vec!["a@example.com".to_owned()]);
    }

    #[test]
    fn tenant_and_reply_class() {
        let t = r#"{"type":"Bounce","event_time":"1970-01-01T00:00:00Z","meta":{"tenant":""},
            "queue":"x@y","response":{"code":-550}}"#;
        let c = of(t, "Bounce").unwrap();
        assert_eq!((c.tenant.as_ref(), c.reply_class), ("x", -6));
        assert!(c.delivery_keys.is_empty());
        let t = r#"{"type":"Reception","event_time":"1970-01-01T00:00:00Z","meta":{"tenant":"m"},
            "peer_address":{"name":"client"},"response":{"code":"550"}}"#;
        let c = of(t, "Reception").unwrap();
        assert_eq!((c.tenant.as_ref(), c.reply_class, c.peer), ("m", 0, None));
        assert_eq!(
            of(r#"{"event_time":"1970-01-01T00:00:00Z"}"#, "Feedback"),
            None
        );
        assert_eq!(of(r#"{"event_time":"x"}"#, "Delivery"), None);
        let t = r#"{"event_time":"1970-01-01T00:00:00Z","recipient":"é@x"}"#;
        assert_eq!(of(t, "Delivery"), None);
        assert!(of(t, "Bounce").is_some());
    }

    #[test]
    fn refused_addresses_like_python() {
        let refused = |command: &str| {
            let response = format!(
                "{{\"command\":{}}}",
                serde_json::to_string(command).unwrap()
            );
            rejected_recipient(Some(&response)).map(|r| r.map(|r| r.to_owned()))
        };
        let got = |command: &str| refused(command).unwrap();
        assert_eq!(got("RCPT TO:<a@b.c>").as_deref(), Some("a@b.c"));
        assert_eq!(
            got(" rcpt\tto : < A@B.c  NOTIFY").as_deref(),
            Some("A@B.c  NOTIFY")
        );
        assert_eq!(got("RCPT TO:\x1cx@y z").as_deref(), Some("x@y"));
        assert_eq!(
            got("RCPT TO:<@r.example:d@g.com>").as_deref(),
            Some("d@g.com")
        );
        assert_eq!(got("RCPT TO:<@r.example>").as_deref(), Some("@r.example"));
        assert_eq!(got("RCPT TO:").as_deref(), Some(""));
        assert_eq!(got("RCPTTO:<a@b.c>"), None);
        assert_eq!(got("MAIL FROM:<a@b.c>"), None);
        assert_eq!(refused("RCPT TO:<é@b.c>"), None); // Unicode's rules: Python's
    }

    #[test]
    fn oob_tenant_and_sender_domain() {
        let t = r#"{"type":"OOB","event_time":"1970-01-01T00:00:00Z","meta":{"tenant":"t","vt":"v"},
            "queue":"x@y","sender":" <S@Sender.EXAMPLE> ","recipient":["A@b.c","<d@E.f>"]}"#;
        let fields = object_fields(t).unwrap();
        assert_eq!(clues(&fields, "OOB", Some("vt"), None).unwrap().tenant, "v");
        assert_eq!(
            clues(&fields, "OOB", Some("none"), None).unwrap().tenant,
            ""
        );
        assert_eq!(clues(&fields, "OOB", None, None), None);
        let c = clues(&fields, "OOB", Some("tenant"), None).unwrap();
        assert_eq!(sender_domain(&c), Some(Some("sender.example".to_owned())));
        assert_eq!(
            bounce_keys(&c),
            Some(vec!["a@b.c".to_owned(), "d@e.f".to_owned()])
        );
        let t = r#"{"event_time":"1970-01-01T00:00:00Z","sender":"s@é"}"#;
        assert_eq!(sender_domain(&of(t, "Bounce").unwrap()), None);
        let t = r#"{"event_time":"1970-01-01T00:00:00Z","sender":"x@"}"#;
        assert_eq!(sender_domain(&of(t, "Bounce").unwrap()), Some(None));
    }
}
