//! End-to-end tests of Assay: real components built from `plugins/` and
//! `tests/graders/`, the real runtime, the real `assay` binary.

mod browser;
mod cli;
mod durability;
mod eval;
mod experiments;
mod judge;
mod loading;
mod queues;
mod reference_graders;
mod registry;
mod sandbox;
mod server;
mod support;
mod targets;
mod traces;
mod webdriver;
