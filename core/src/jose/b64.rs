//! base64url without padding (RFC 7515 §2), strict: padding, characters from
//! the standard alphabet and non-canonical trailing bits are all refused, so a
//! token has exactly one accepted spelling.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64url (unpadded) encoding")]
pub struct Base64UrlError;

pub fn b64url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Result<Vec<u8>, Base64UrlError> {
    // The engine already refuses '=' and non-zero trailing bits; the explicit
    // alphabet check keeps that guarantee independent of engine defaults.
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Base64UrlError);
    }
    URL_SAFE_NO_PAD.decode(text).map_err(|_| Base64UrlError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_padding() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let text = b64url_encode(&data);
            assert!(!text.contains('='));
            assert_eq!(b64url_decode(&text).unwrap(), data);
        }
    }

    #[test]
    fn padded_or_standard_alphabet_input_is_refused() {
        assert!(b64url_decode("YQ==").is_err());
        assert!(b64url_decode("YQ").is_ok());
        assert!(b64url_decode("+/8").is_err());
        assert!(b64url_decode("-_8").is_ok());
        assert!(b64url_decode("YQ ").is_err());
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // "YQ" is canonical for b"a"; "YR" decodes to the same byte with stray bits.
        assert!(b64url_decode("YR").is_err());
    }
}
