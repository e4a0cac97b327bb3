//! Pure policy for Portcullis.
//!
//! The flow is one-way: raw rules text is deserialized into [`schema`] types, validated and
//! compiled by [`mod@compile`] into an immutable [`CompiledRules`] value, and the hot path asks
//! [`CompiledRules::decide_write`] for a [`Decision`] about the [`facts`] of one request, and
//! [`CompiledRules::decide_provenance`] for a [`ProvenanceDecision`] about an upload's
//! verified attestations, and [`CompiledRules::decide_deletion`] for a [`DeletionDecision`]
//! about a deletion, yank or un-yank.
//! Nothing here performs I/O, spawns tasks or reads the clock: the gateway owns those edges.

pub mod compile;
pub mod decide;
pub mod deletion;
pub mod duration;
pub mod facts;
pub mod name;
pub mod provenance;
pub mod publishers;
pub mod schema;

pub use compile::{compile, CompiledRules, KnownRegistry, RuleSource, RulesError};
pub use decide::{Decision, Outcome, RefusalKind, RuleId};
pub use deletion::{
    name_still_reserved, DeleteAction, DeletionDecision, DeletionFacts, DeletionMode, DeletionOutcome, DeletionRefusal,
    NameReservation,
};
pub use facts::{WriteAction, WriteFacts};
pub use name::{ProjectName, Protocol};
pub use provenance::{
    AttestationFacts, Evidence, ProvenanceDecision, ProvenanceFacts, ProvenanceMode, ProvenanceOutcome,
    ProvenanceRefusal,
};
pub use publishers::{Claims, Issuer, IssuerKind, Mismatch, Publisher, SignerIdentity};
