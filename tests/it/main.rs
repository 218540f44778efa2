//! End-to-end tests of Assay: real components built from `plugins/` and
//! `tests/graders/`, the real runtime, the real `assay` binary.

mod cli;
mod durability;
mod eval;
mod experiments;
mod loading;
mod reference_graders;
mod sandbox;
mod server;
mod support;
