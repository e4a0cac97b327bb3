//! Authentication: OIDC ID tokens from CI providers (trusted publishing), the gateway's own
//! upload tokens, and the credential a client presents.

pub mod credentials;
pub mod jwks;
pub mod jwt;
pub mod upload_token;
