//! Host bindings of the `assay:grader` world, generated from the one WIT folder.
//! The generated module is also called `assay`, like this crate, so it is
//! named through `self::` (rustdoc passes the crate itself as `--extern assay`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "grader",
});

pub use self::assay::grader::types::{AgentRun, Example, ExampleMetadata, Message, Reference, Tool, ToolCall};
