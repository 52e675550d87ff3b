//! A classifiable record's `response`: the same acceptance test as `records.response_is_valid`
//! and the same single line as `records.response_line` (`"<code> [c.s.d ]content"`).

use std::fmt::Write;

use crate::json::{as_str, nested_fields, read_object, FewFields};

/// The response line, or None when the response is not one the Python path accepts the same
/// way (not an object, a bad field, a repeated key: Python decides and names the reason).
pub fn response_line(response: &str) -> Option<String> {
    let mut fields = FewFields::new();
    read_object(response, &mut fields)?;
    let mut code = None;
    let mut content = None;
    let mut enhanced = None;
    for field in &fields {
        match field.key.0.as_ref() {
            "code" => code = Some(integer(field.value)?),
            "content" => content = Some(as_str(field.value)?),
            "enhanced_code" if field.value != "null" => {
                enhanced = Some(enhanced_code(field.value)?)
            }
            _ => {}
        }
    }
    let mut line = String::with_capacity(24 + content.as_ref().map_or(0, |c| c.len()));
    // writing into a String cannot fail
    let _ = write!(line, "{} ", code?);
    if let Some((class, subject, detail)) = enhanced {
        let _ = write!(line, "{class}.{subject}.{detail} ");
    }
    if let Some(content) = content {
        push_one_line(&mut line, &content);
    }
    Some(line)
}

/// `text` with every line break (`\r\n`, `\r` or `\n`) made one space, as Python's does.
fn push_one_line(line: &mut String, text: &str) {
    if memchr::memchr2(b'\r', b'\n', text.as_bytes()).is_none() {
        line.push_str(text); // the usual case: one line already
        return;
    }
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                line.push(' ');
            }
            '\n' => line.push(' '),
            c => line.push(c),
        }
    }
}

/// An integer as orjson gives Python an `int`: a JSON number without fraction or exponent
/// within 64 bits (orjson reads a larger one as a float, which is no reply code).
fn integer(text: &str) -> Option<i128> {
    if text.contains(['.', 'e', 'E']) {
        return None;
    }
    let parsed = text.parse::<i128>().ok()?;
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&parsed)
        .then_some(parsed)
}

fn enhanced_code(value: &str) -> Option<(i128, i128, i128)> {
    let fields = nested_fields(value)?;
    let find =
        |name: &str| -> Option<i128> { integer(fields.iter().find(|f| f.key.0 == name)?.value) };
    Some((find("class")?, find("subject")?, find("detail")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Option<String> {
        response_line(text)
    }

    #[test]
    fn line_like_python() {
        let text = r#"{"code": 550, "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
            "content": "no\r\nsuch\ruser\nhere", "command": null}"#;
        assert_eq!(line(text).unwrap(), "550 5.1.1 no such user here");
        assert_eq!(line(r#"{"code": 421}"#).unwrap(), "421 ");
        assert_eq!(
            line(r#"{"code": 421, "enhanced_code": null}"#).unwrap(),
            "421 "
        );
    }

    #[test]
    fn refuses_what_python_refuses() {
        assert_eq!(line(r#"{"code": "550"}"#), None);
        assert_eq!(line(r#"{"code": 550.0}"#), None);
        assert_eq!(line(r#"{"code": 18446744073709551616}"#), None);
        assert_eq!(
            line(r#"{"code": 18446744073709551615}"#).unwrap(),
            "18446744073709551615 "
        );
        assert_eq!(line(r#"{"code": true}"#), None);
        assert_eq!(line(r#"{"content": "x"}"#), None);
        assert_eq!(line(r#"{"code": 550, "content": null}"#), None);
        assert_eq!(
            line(r#"{"code": 550, "enhanced_code": {"class": 5}}"#),
            None
        );
        assert_eq!(line(r#"{"code": 550, "enhanced_code": 5}"#), None);
        assert_eq!(line(r#"{"code": 550, "code": 551}"#), None);
        assert_eq!(line("[]"), None);
    }
}
