//! 440hz core: content ids (SHA-256 over canonical JSON), the operator's configuration types
//! and the error types shared by every layer.
//!
//! This crate is pure: it performs no I/O (no files, sockets, clocks or environment
//! variables). Anything that touches the outside world lives in an adapter crate.

pub mod config;
pub mod id;

pub use config::{NetworkPolicy, OverseerConfig};
pub use id::{canonical_json, ContentId, IdError};
