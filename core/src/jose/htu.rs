//! DPoP `htu` normalisation (RFC 9449 §4.3): the proof's `htu` and the URI the
//! gate expects (`public_base_url` + path, never the Host header) are both put
//! in RFC 3986 §6.2.2/§6.2.3 normal form, query and fragment dropped, then
//! compared as strings.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtuError {
    #[error("htu is not an absolute URI")]
    NotAbsolute,
    #[error("htu scheme must be http or https")]
    Scheme,
    #[error("htu must not carry user information")]
    UserInfo,
    #[error("request path must start with '/'")]
    Path,
}

impl HtuError {
    pub fn code(&self) -> &'static str {
        match self {
            HtuError::NotAbsolute => "htu_not_absolute",
            HtuError::Scheme => "htu_scheme",
            HtuError::UserInfo => "htu_userinfo",
            HtuError::Path => "htu_path",
        }
    }
}

/// Normal form of an `htu`: scheme and host lower-cased, default port
/// removed, dot segments resolved, empty path made `/`, percent-encodings
/// upper-cased and unreserved ones decoded, query and fragment removed.
pub fn normalize_htu(htu: &str) -> Result<String, HtuError> {
    let mut url = url::Url::parse(htu).map_err(|_| HtuError::NotAbsolute)?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(HtuError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HtuError::UserInfo);
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = normalize_percent_encoding(url.path());
    url.set_path(&path);
    Ok(url.into())
}

/// The `htu` a proof must carry for a request to `path` on this gate.
/// `path` may carry a query string; it is not part of `htu`.
pub fn expected_htu(public_base_url: &str, path: &str) -> Result<String, HtuError> {
    if !path.starts_with('/') {
        return Err(HtuError::Path);
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let base = public_base_url.trim_end_matches('/');
    normalize_htu(&format!("{base}{path}"))
}

/// RFC 3986 §6.2.2.1/§6.2.2.2: hex digits of percent-encodings in upper case,
/// percent-encoded unreserved characters decoded.
fn normalize_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = &path[i + 1..i + 3];
            let value = u8::from_str_radix(hex, 16).unwrap_or(0);
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                out.push(value as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}
