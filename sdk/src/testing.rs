//! Helpers for native unit tests of a grader: build a [`Case`] from the
//! wire-format JSON (SPEC "Wire formats"), and answer
//! [`judge::complete`](crate::judge::complete) with a test double.
//!
//! The host does its own, validating, conversion of cases; this one is
//! lenient and panics on shapes it cannot read.

use crate::judge::{JudgeRequest, JudgeResponse};
use crate::{AgentRun, Case, Example, ExampleMetadata, Message, Reference, Tool, ToolCall};
use serde_json::Value;
use std::cell::RefCell;

type JudgeDouble = Box<dyn FnMut(&JudgeRequest) -> Result<JudgeResponse, String>>;

thread_local! {
    static JUDGE_DOUBLE: RefCell<Option<JudgeDouble>> = RefCell::new(None);
}

/// Runs `body` with `judge` answering every [`judge::complete`](crate::judge::complete)
/// made on this thread, then restores what answered before (also on panic).
///
/// ```
/// use assay_sdk::judge::{self, ChatMessage, JudgeRequest};
/// use assay_sdk::testing::{judge_response, with_judge};
///
/// let answer = with_judge(
///     |request| Ok(judge_response(&format!("you said {}", request.messages[0].content))),
///     || judge::complete(&JudgeRequest::new(vec![ChatMessage::user("hi")])),
/// );
/// assert_eq!(answer.unwrap().content, "you said hi");
/// ```
pub fn with_judge<R>(
    judge: impl FnMut(&JudgeRequest) -> Result<JudgeResponse, String> + 'static,
    body: impl FnOnce() -> R,
) -> R {
    struct Restore(Option<JudgeDouble>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            JUDGE_DOUBLE.with(|double| *double.borrow_mut() = previous);
        }
    }
    let previous = JUDGE_DOUBLE.with(|double| double.borrow_mut().replace(Box::new(judge)));
    let _restore = Restore(previous);
    body()
}

/// A judge answer with `content`, from a model called `test-model`, with token counts of 0.
pub fn judge_response(content: &str) -> JudgeResponse {
    JudgeResponse { content: content.to_owned(), model: "test-model".to_owned(), input_tokens: 0, output_tokens: 0 }
}

/// Natively, `judge::complete` asks the double installed by [`with_judge`].
#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn judge_double(request: &JudgeRequest) -> Result<JudgeResponse, String> {
    // Taken out while it runs, so a double may itself call `with_judge`.
    let Some(mut double) = JUDGE_DOUBLE.with(|double| double.borrow_mut().take()) else {
        return Err("no judge in this test: answer judge::complete with assay_sdk::testing::with_judge".into());
    };
    let answer = double(request);
    JUDGE_DOUBLE.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(double);
        }
    });
    answer
}

/// Builds a case from an example and an agent run, both in the wire format.
///
/// # Panics
/// When either text is not JSON.
pub fn case(example_json: &str, run_json: &str) -> Case {
    let example: Value = serde_json::from_str(example_json).expect("example is JSON");
    let run: Value = serde_json::from_str(run_json).expect("run is JSON");
    case_from_values(&example, &run)
}

/// Same as [`case`], from parsed values.
pub fn case_from_values(example: &Value, run: &Value) -> Case {
    let inputs = &example["inputs"];
    let outputs = &example["outputs"];
    let metadata = &example["metadata"];
    let text_field = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
    let reference = match &outputs["reference"] {
        Value::Null => None,
        Value::String(text) => Some(Reference::Text(text.clone())),
        other => Some(Reference::Structured(other.to_string())),
    };
    let example = Example {
        id: example["id"].as_str().unwrap_or_default().to_owned(),
        messages: messages(&inputs["messages"]),
        tools: inputs["tools"].as_array().map(|tools| tools.iter().map(tool).collect()).unwrap_or_default(),
        context: inputs.get("context").cloned().unwrap_or(Value::Null).to_string(),
        reference,
        must_call: strings(&outputs["must_call"]),
        must_not_call: strings(&outputs["must_not_call"]),
        must_not_say: strings(&outputs["must_not_say"]),
        metadata: ExampleMetadata {
            source: text_field("source"),
            severity: text_field("severity"),
            persona: text_field("persona"),
            json: if metadata.is_object() { metadata.to_string() } else { "{}".to_owned() },
        },
    };
    let run_outputs = &run["outputs"];
    let run_messages = messages(&run_outputs["messages"]);
    let tool_calls = match run_outputs["tool_calls"].as_array() {
        Some(calls) => calls.iter().map(tool_call).collect(),
        None => run_messages.iter().flat_map(|message| message.tool_calls.clone()).collect(),
    };
    Case {
        example,
        run: AgentRun {
            messages: run_messages,
            tool_calls,
            latency_ms: run["latency_ms"].as_u64(),
            error: match &run["error"] {
                Value::Null => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            },
        },
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn messages(value: &Value) -> Vec<Message> {
    let Some(items) = value.as_array() else { return Vec::new() };
    items
        .iter()
        .map(|message| Message {
            role: message["role"].as_str().unwrap_or_default().to_owned(),
            content: match &message["content"] {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            tool_calls: message["tool_calls"]
                .as_array()
                .map(|calls| calls.iter().map(tool_call).collect())
                .unwrap_or_default(),
            tool_call_id: message["tool_call_id"].as_str().map(str::to_owned),
            name: message["name"].as_str().map(str::to_owned),
        })
        .collect()
}

fn tool_call(call: &Value) -> ToolCall {
    let function = call.get("function").unwrap_or(call);
    let arguments = function.get("args").or_else(|| function.get("arguments"));
    ToolCall {
        id: call["id"].as_str().map(str::to_owned),
        name: function["name"].as_str().unwrap_or_default().to_owned(),
        arguments: match arguments {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        },
    }
}

fn tool(tool: &Value) -> Tool {
    match tool {
        Value::String(name) => Tool { name: name.clone(), description: None, parameters: None },
        other => Tool {
            name: other["name"].as_str().unwrap_or_default().to_owned(),
            description: other["description"].as_str().map(str::to_owned),
            parameters: other.get("parameters").map(Value::to_string),
        },
    }
}
