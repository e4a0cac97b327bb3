//! Pure policy for Portcullis.
//!
//! The flow is one-way: raw rules text is deserialized into [`schema`] types, validated and
//! compiled by [`compile`] into an immutable [`CompiledRules`] value, and the hot path asks
//! [`CompiledRules::decide`] for a [`Decision`] about the [`facts`] of one request.
//! Nothing here performs I/O, spawns tasks or reads the clock: the gateway owns those edges.

pub mod compile;
pub mod decide;
pub mod facts;
pub mod name;
pub mod publishers;
pub mod schema;

pub use compile::{compile, CompiledRules, KnownRegistry, RuleSource, RulesError};
pub use decide::{Decision, Outcome, RefusalKind, RuleId};
pub use facts::{WriteAction, WriteFacts};
pub use name::{ProjectName, Protocol};
pub use publishers::{Claims, Issuer, IssuerKind, Mismatch, Publisher};
