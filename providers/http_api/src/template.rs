//! `{{var}}` substitution. Values come only from the request's top-level
//! fields; a placeholder naming anything else is an error rather than an empty
//! string, so a typo in a manifest never silently calls the wrong URL.
//!
//! URL rule: a `url_template` that is exactly one placeholder (`{{url}}`) makes
//! the whole URL a request parameter and is passed through unencoded (the host
//! checks it as a sink like any other URL). In every other template each value
//! is one URL component and is percent-encoded, so it cannot change the host,
//! path structure, query or fragment the manifest wrote. The manifest loader
//! (`latchgate_core::manifest::validate::whole_url_placeholder`) uses the same rule.

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

/// The placeholder name when `template` is exactly one `{{name}}` and nothing
/// else (spaces inside the braces allowed, none outside).
pub fn whole_url_placeholder(template: &str) -> Option<&str> {
    let inner = template.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim())
}

/// Fills `template`: a whole-URL template takes its string value verbatim;
/// otherwise every value is percent-encoded as a URL component.
pub fn fill_url(template: &str, params: &Map<String, Value>) -> Result<String, TemplateError> {
    if let Some(name) = whole_url_placeholder(template) {
        check_name(name)?;
        return match params.get(name) {
            Some(Value::String(url)) => Ok(url.clone()),
            Some(_) => Err(TemplateError::NotAUrlValue(name.into())),
            None => Err(TemplateError::UnknownVariable(name.into())),
        };
    }
    fill(template, params, |name, value| match value {
        Value::String(s) => Ok(utf8_percent_encode(s, URL_VALUE).to_string()),
        // `1e+30`: a `+` in a query reads as a space, so numbers are encoded too.
        Value::Number(n) => Ok(utf8_percent_encode(&n.to_string(), URL_VALUE).to_string()),
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
        let name = check_name(after[..end].trim())?;
        let value = params.get(name).ok_or_else(|| TemplateError::UnknownVariable(name.into()))?;
        out.push_str(&render(name, value)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn check_name(name: &str) -> Result<&str, TemplateError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(TemplateError::InvalidName(name.into()));
    }
    Ok(name)
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
    fn every_reserved_character_in_a_component_value_is_encoded() {
        let p = params(json!({"v": "a/b?c#d e&f=g+h%i:j@k;l,m!n'o(p)q*r$s[t]u", "n": -1.5, "t": true}));
        let url = fill_url("https://h/p/{{v}}?x={{v}}&n={{n}}&t={{t}}", &p).unwrap();
        let enc = "a%2Fb%3Fc%23d%20e%26f%3Dg%2Bh%25i%3Aj%40k%3Bl%2Cm%21n%27o%28p%29q%2Ar%24s%5Bt%5Du";
        assert_eq!(url, format!("https://h/p/{enc}?x={enc}&n=-1.5&t=true"));
    }

    #[test]
    fn unicode_values_are_utf8_percent_encoded() {
        let p = params(json!({"city": "Zürich"}));
        assert_eq!(fill_url("https://h/{{city}}", &p).unwrap(), "https://h/Z%C3%BCrich");
    }

    #[test]
    fn a_template_that_is_one_placeholder_passes_the_whole_url_through() {
        let url = "https://api.example.com/a b/c?x=1&y=%2F#frag";
        for template in ["{{url}}", "{{ url }}"] {
            assert_eq!(fill_url(template, &params(json!({ "url": url }))).unwrap(), url, "{template}");
        }
    }

    #[test]
    fn a_placeholder_with_anything_around_it_is_a_component() {
        let p = params(json!({"url": "https://evil.test/"}));
        assert_eq!(fill_url("{{url}}x", &p).unwrap(), "https%3A%2F%2Fevil.test%2Fx");
        assert_eq!(fill_url(" {{url}}", &p).unwrap(), " https%3A%2F%2Fevil.test%2F");
        assert_eq!(fill_url("{{url}}{{url}}", &p).unwrap(), "https%3A%2F%2Fevil.test%2Fhttps%3A%2F%2Fevil.test%2F");
    }

    #[test]
    fn whole_url_placeholder_needs_a_known_string_variable() {
        assert_eq!(fill_url("{{url}}", &params(json!({}))), Err(TemplateError::UnknownVariable("url".into())));
        assert_eq!(fill_url("{{url}}", &params(json!({"url": 1}))), Err(TemplateError::NotAUrlValue("url".into())));
        assert_eq!(fill_url("{{u-rl}}", &params(json!({}))), Err(TemplateError::InvalidName("u-rl".into())));
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
