//! `{{var}}` substitution. Values come only from the request's top-level
//! fields; a placeholder naming anything else is an error rather than an empty
//! string, so a typo in a manifest never silently calls the wrong URL.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};
use std::fmt;

/// Everything except RFC 3986 unreserved characters is encoded, so a value can
/// never introduce a path segment, query parameter, fragment or authority.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[derive(Debug, PartialEq)]
pub enum TemplateError {
    UnknownVariable(String),
    Unterminated,
    InvalidName(String),
    /// Objects, arrays and null have no URL form.
    NotAUrlValue(String),
    /// The filled body is not valid JSON.
    InvalidBody(String),
}

impl TemplateError {
    pub fn code(&self) -> &'static str {
        match self {
            TemplateError::UnknownVariable(_) => "unknown_template_variable",
            TemplateError::Unterminated => "unterminated_placeholder",
            TemplateError::InvalidName(_) => "invalid_placeholder_name",
            TemplateError::NotAUrlValue(_) => "unsupported_url_value",
            TemplateError::InvalidBody(_) => "invalid_body_template",
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::UnknownVariable(n) => write!(f, "unknown template variable `{n}`"),
            TemplateError::Unterminated => write!(f, "`{{{{` without a closing `}}}}`"),
            TemplateError::InvalidName(n) => write!(f, "invalid placeholder name `{n}`"),
            TemplateError::NotAUrlValue(n) => write!(f, "variable `{n}` is not a string, number or boolean"),
            TemplateError::InvalidBody(m) => write!(f, "filled body is not JSON: {m}"),
        }
    }
}

/// Fills `template`, percent-encoding every value.
pub fn fill_url(template: &str, params: &Map<String, Value>) -> Result<String, TemplateError> {
    fill(template, params, |name, value| match value {
        Value::String(s) => Ok(utf8_percent_encode(s, URL_VALUE).to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(TemplateError::NotAUrlValue(name.into())),
    })
}

/// Fills `template` with JSON-encoded values and checks that the result is JSON.
pub fn fill_json_body(template: &str, params: &Map<String, Value>) -> Result<String, TemplateError> {
    let filled = fill(template, params, |_, value| Ok(value.to_string()))?;
    serde_json::from_str::<Value>(&filled).map_err(|e| TemplateError::InvalidBody(e.to_string()))?;
    Ok(filled)
}

fn fill(
    template: &str,
    params: &Map<String, Value>,
    render: impl Fn(&str, &Value) -> Result<String, TemplateError>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
        let name = after[..end].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(TemplateError::InvalidName(name.into()));
        }
        let value = params.get(name).ok_or_else(|| TemplateError::UnknownVariable(name.into()))?;
        out.push_str(&render(name, value)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn url_values_cannot_inject_path_query_or_authority() {
        let p = params(json!({"q": "a/../b?x=1#f @evil.com", "n": 5}));
        let url = fill_url("https://api.example.com/search/{{q}}?n={{ n }}", &p).unwrap();
        assert_eq!(url, "https://api.example.com/search/a%2F..%2Fb%3Fx%3D1%23f%20%40evil.com?n=5");
    }

    #[test]
    fn unknown_variable_is_an_error_not_an_empty_string() {
        let p = params(json!({"q": "x"}));
        assert_eq!(fill_url("https://h/{{qq}}", &p), Err(TemplateError::UnknownVariable("qq".into())));
    }

    #[test]
    fn objects_have_no_url_form() {
        let p = params(json!({"q": {"a": 1}}));
        assert_eq!(fill_url("https://h/{{q}}", &p), Err(TemplateError::NotAUrlValue("q".into())));
    }

    #[test]
    fn unterminated_placeholder_is_an_error() {
        let p = params(json!({"q": "x"}));
        assert_eq!(fill_url("https://h/{{q", &p), Err(TemplateError::Unterminated));
    }

    #[test]
    fn body_values_are_json_encoded_so_quotes_cannot_break_out() {
        let p = params(json!({"text": "\", \"admin\": true, \"x\": \""}));
        let body = fill_json_body(r#"{"message": {{text}}}"#, &p).unwrap();
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 1);
        assert_eq!(parsed["message"], p["text"]);
    }
}
