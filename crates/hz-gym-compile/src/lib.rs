//! 440hz gym compilers: turn a gym bundle into its other faces — a pip-installable Python
//! Gymnasium package (`python`) and an OCI image layout (`oci`). Data in, files out: this
//! crate never runs a gym and never talks to a network or a container engine.

pub mod oci;
pub mod python;
