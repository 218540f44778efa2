//! Assay: a self-hosted platform for an AI agent's golden dataset and its
//! WebAssembly graders. See ARCHITECTURE.md for the map of this crate.

pub mod agent;
pub mod api;
pub mod cli;
pub mod demo;
pub mod eval;
pub mod graders;
pub mod mining;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod traces;
