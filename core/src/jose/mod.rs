//! JOSE for LatchGate: strict base64url, P-256 JWKs and RFC 7638 thumbprints,
//! ES256 compact JWS (`ring`), leases, DPoP proofs (RFC 9449), JWKS documents.
//! Only ES256 is ever accepted; there is no algorithm negotiation to confuse.

pub mod b64;
pub mod dpop;
pub mod htu;
pub mod jwk;
pub mod jwks;
pub mod jws;
pub mod lease;
pub mod operator_auth;
pub mod request_auth;

pub use b64::{Base64UrlError, b64url_decode, b64url_encode};
pub use dpop::{DpopClaims, DpopError, DpopVerifier, access_token_hash, verify_dpop_proof};
pub use htu::{HtuError, expected_htu, normalize_htu};
pub use jwk::{EcPublicJwk, JwkError, ec_kid, ed25519_kid, jwk_thumbprint};
pub use jwks::{EcSigningJwk, Jwks, LeaseJwks, OkpSigningJwk, ReceiptJwks};
pub use jws::{EcdsaKeyPair, SignError, es256_key_from_pkcs8, es256_public_jwk, generate_es256_pkcs8, sign_es256_jws};
pub use lease::{
    Audience, Confirmation, LEASE_AUDIENCE, LEASE_DEFAULT_TTL_SECONDS, LEASE_ISSUER, LEASE_MAX_TTL_SECONDS,
    LeaseBudgets, LeaseClaims, LeaseError, LeaseParams, LeaseVerifier, clamp_lease_ttl,
};
pub use operator_auth::{OperatorAuthenticated, authenticate_operator};
pub use request_auth::{AuthHeaders, Authenticated, authenticate, dpop_access_token};
