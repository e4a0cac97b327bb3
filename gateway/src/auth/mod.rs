//! Authentication: OIDC ID tokens from CI providers (trusted publishing).

pub mod jwt;
