//! Host bindings of the `assay:grader` worlds, generated from the one WIT folder.
//! The generated module is also called `assay`, like this crate, so it is
//! named through `self::` (rustdoc passes the crate itself as `--extern assay`).
//!
//! Only `judge-grader` is bound: it is the `grader` world plus the `judge`
//! import, so its pre-instance type serves components of either world (a
//! `grader` component simply does not import what the linker offers).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "judge-grader",
});

pub use self::assay::grader::judge;
pub use self::assay::grader::types::{AgentRun, Example, ExampleMetadata, Message, Reference, Tool, ToolCall};
