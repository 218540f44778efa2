//! Converts the wire model into the typed case a grader receives.

use super::bindings as wit;
use crate::model;
use serde_json::Value;

/// Builds the case handed to graders from an example and the agent run.
pub fn to_case(example: &model::Example, run: &model::AgentRun) -> wit::Case {
    let metadata_text = |key: &str| example.metadata_text(key).map(str::to_owned);
    wit::Case {
        example: wit::Example {
            id: example.id.clone().unwrap_or_default(),
            messages: example.inputs.messages.iter().map(message).collect(),
            tools: example.inputs.tools.iter().map(tool).collect(),
            context: example.inputs.context.as_ref().unwrap_or(&Value::Null).to_string(),
            reference: example.outputs.reference.as_ref().and_then(|reference| match reference {
                Value::Null => None,
                Value::String(text) => Some(wit::Reference::Text(text.clone())),
                other => Some(wit::Reference::Structured(other.to_string())),
            }),
            must_call: example.outputs.must_call.clone(),
            must_not_call: example.outputs.must_not_call.clone(),
            must_not_say: example.outputs.must_not_say.clone(),
            metadata: wit::ExampleMetadata {
                source: metadata_text("source"),
                severity: metadata_text("severity"),
                persona: metadata_text("persona"),
                json: Value::Object(example.metadata.clone()).to_string(),
            },
        },
        run: wit::AgentRun {
            messages: run.outputs.messages.iter().map(message).collect(),
            tool_calls: run.tool_calls().into_iter().map(tool_call).collect(),
            latency_ms: run.latency_ms,
            error: run.error.clone(),
        },
    }
}

/// An upper bound of the bytes a case occupies once copied into a grader.
pub fn case_size_bytes(case: &wit::Case) -> usize {
    let messages = |messages: &[wit::Message]| -> usize {
        messages
            .iter()
            .map(|message| {
                message.role.len()
                    + message.content.len()
                    + message.tool_call_id.as_ref().map_or(0, String::len)
                    + message.name.as_ref().map_or(0, String::len)
                    + calls(&message.tool_calls)
                    + 48
            })
            .sum()
    };
    let strings = |items: &[String]| -> usize { items.iter().map(|item| item.len() + 8).sum() };
    let example = &case.example;
    example.id.len()
        + messages(&example.messages)
        + example
            .tools
            .iter()
            .map(|tool| {
                tool.name.len()
                    + tool.description.as_ref().map_or(0, String::len)
                    + tool.parameters.as_ref().map_or(0, String::len)
            })
            .sum::<usize>()
        + example.context.len()
        + example.reference.as_ref().map_or(0, |reference| match reference {
            wit::Reference::Text(text) | wit::Reference::Structured(text) => text.len(),
        })
        + strings(&example.must_call)
        + strings(&example.must_not_call)
        + strings(&example.must_not_say)
        + example.metadata.json.len()
        + messages(&case.run.messages)
        + calls(&case.run.tool_calls)
        + case.run.error.as_ref().map_or(0, String::len)
}

fn calls(calls: &[wit::ToolCall]) -> usize {
    calls.iter().map(|call| call.name.len() + call.arguments.len() + call.id.as_ref().map_or(0, String::len) + 16).sum()
}

fn message(message: &model::Message) -> wit::Message {
    wit::Message {
        role: message.role.clone(),
        content: message.content.clone(),
        tool_calls: message.tool_calls.iter().map(tool_call).collect(),
        tool_call_id: message.tool_call_id.clone(),
        name: message.name.clone(),
    }
}

fn tool_call(call: &model::ToolCall) -> wit::ToolCall {
    wit::ToolCall { id: call.id.clone(), name: call.name.clone(), arguments: call.args.to_string() }
}

fn tool(tool: &model::ToolSpec) -> wit::Tool {
    match tool {
        model::ToolSpec::Name(name) => wit::Tool { name: name.clone(), description: None, parameters: None },
        model::ToolSpec::Definition { name, description, parameters } => wit::Tool {
            name: name.clone(),
            description: description.clone(),
            parameters: parameters.as_ref().map(Value::to_string),
        },
    }
}
