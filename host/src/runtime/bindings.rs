//! Host bindings of the `assay:grader` world, generated from the one WIT folder.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "grader",
});

pub use assay::grader::types::{AgentRun, Example, ExampleMetadata, Message, Reference, Tool, ToolCall};
