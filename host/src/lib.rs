//! Assay: a self-hosted platform for an AI agent's golden dataset and its
//! WebAssembly graders. See ARCHITECTURE.md for the map of this crate.

pub mod api;
pub mod cli;
pub mod eval;
pub mod graders;
pub mod model;
pub mod runtime;
pub mod store;
