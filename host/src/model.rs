//! The wire formats of SPEC "Wire formats": an example, an agent run.
//!
//! Parsing is strict about types and names the offending field; it is lenient
//! about the shapes agent frameworks already emit (tool call `args` or
//! `arguments`, OpenAI's `function` wrapper, content as a list of text parts).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The roles a conversation turn may have.
pub const ROLES: &[&str] = &["system", "user", "assistant", "tool", "developer"];
/// The allowed values of `metadata.severity`.
pub const SEVERITIES: &[&str] = &["p0", "p1", "p2"];
/// The usual values of `metadata.source`; others (e.g. `red_team`) are accepted.
pub const SOURCES: &[&str] = &["production", "synthetic", "adversarial", "regression"];

/// One golden example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub inputs: Inputs,
    #[serde(default)]
    pub outputs: Outputs,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// What the agent saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Any other input keys, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What the SME says the agent should do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_call: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not_call: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not_say: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default, deserialize_with = "content_text", skip_serializing_if = "String::is_empty")]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A tool call, read from `{"name", "args"}`, `{"name", "arguments"}` (object
/// or JSON text) or OpenAI's `{"id", "function": {"name", "arguments"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub args: Value,
}

/// A tool the agent may call: a bare name or a JSON-schema definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolSpec {
    Name(String),
    Definition {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameters: Option<Value>,
    },
}

/// What the agent produced for one example.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_id: Option<String>,
    #[serde(default)]
    pub outputs: RunOutputs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, deserialize_with = "error_text", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The agent's messages and tool calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOutputs {
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The calls in order; when absent they are read from the messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A refused field: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `inputs.messages[2].role`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.reason)
    }
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("{0}")]
    Field(FieldError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl ParseError {
    /// Every field error this parse error carries (one for syntax errors, at `$`).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ParseError::Syntax { .. } => vec![FieldError { field: "$".into(), reason: self.to_string() }],
            ParseError::Field(error) => vec![error.clone()],
            ParseError::Invalid(errors) => errors.clone(),
        }
    }
}

impl Example {
    /// Parses and validates one example from JSON text.
    pub fn from_json(text: &str) -> Result<Example, ParseError> {
        let example: Example = parse(text)?;
        example.validate().map_err(ParseError::Invalid)?;
        Ok(example)
    }

    /// Checks the rules of SPEC "The example" that types alone do not express.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut refuse = |field: String, reason: String| errors.push(FieldError { field, reason });
        if self.inputs.messages.is_empty() {
            refuse("inputs.messages".into(), "must hold at least one message".into());
        }
        for (index, message) in self.inputs.messages.iter().enumerate() {
            if !ROLES.contains(&message.role.as_str()) {
                refuse(
                    format!("inputs.messages[{index}].role"),
                    format!("unknown role {:?}; expected one of {}", message.role, ROLES.join(", ")),
                );
            }
        }
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > 256)
        {
            refuse("id".into(), "must be 1 to 256 characters".into());
        }
        let tool_names: Vec<&str> = self.inputs.tools.iter().map(ToolSpec::name).collect();
        for (index, name) in tool_names.iter().enumerate() {
            if name.trim().is_empty() {
                refuse(format!("inputs.tools[{index}].name"), "must not be empty".into());
            }
        }
        for (list, names) in [("must_call", &self.outputs.must_call), ("must_not_call", &self.outputs.must_not_call)] {
            for (index, name) in names.iter().enumerate() {
                if name.trim().is_empty() {
                    refuse(format!("outputs.{list}[{index}]"), "must not be empty".into());
                } else if !tool_names.is_empty() && !tool_names.contains(&name.as_str()) {
                    refuse(
                        format!("outputs.{list}[{index}]"),
                        format!("names tool {name:?}, which is not in inputs.tools ({})", tool_names.join(", ")),
                    );
                }
            }
        }
        for (index, phrase) in self.outputs.must_not_say.iter().enumerate() {
            if phrase.trim().is_empty() {
                refuse(format!("outputs.must_not_say[{index}]"), "must not be empty".into());
            }
        }
        match self.metadata.get("severity") {
            None | Some(Value::Null) => {}
            Some(Value::String(value)) if SEVERITIES.contains(&value.as_str()) => {}
            Some(other) => refuse(
                "metadata.severity".into(),
                format!("unknown severity {other}; expected one of {}", SEVERITIES.join(", ")),
            ),
        }
        // Slicing keys must be non-empty text; their vocabulary is the team's own.
        for key in ["source", "persona"] {
            match self.metadata.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(value)) if !value.trim().is_empty() && value.len() <= 128 => {}
                Some(_) => refuse(format!("metadata.{key}"), "must be a non-empty string of at most 128 bytes".into()),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// `metadata[key]` when it is a string.
    pub fn metadata_text(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

impl AgentRun {
    /// Parses one agent run from JSON text.
    pub fn from_json(text: &str) -> Result<AgentRun, ParseError> {
        parse(text)
    }

    /// The tool calls in order: `outputs.tool_calls`, or those in the messages.
    pub fn tool_calls(&self) -> Vec<&ToolCall> {
        match &self.outputs.tool_calls {
            Some(calls) => calls.iter().collect(),
            None => self.outputs.messages.iter().flat_map(|message| &message.tool_calls).collect(),
        }
    }
}

impl ToolSpec {
    /// The tool's name.
    pub fn name(&self) -> &str {
        match self {
            ToolSpec::Name(name) => name,
            ToolSpec::Definition { name, .. } => name,
        }
    }
}

/// Parses JSON text into `T`, naming the field on a type error.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ParseError::Syntax { line: inner.line(), column: inner.column(), message: strip_position(&inner) }
        } else {
            ParseError::Field(FieldError {
                field: if path == "." { "$".into() } else { path },
                reason: strip_position(&inner),
            })
        }
    })?;
    deserializer.end().map_err(|error| ParseError::Syntax {
        line: error.line(),
        column: error.column(),
        message: strip_position(&error),
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C" to its messages; the position is reported apart.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    }
}

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        struct Function {
            name: String,
            #[serde(default)]
            arguments: Option<Value>,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            args: Option<Value>,
            #[serde(default)]
            arguments: Option<Value>,
            #[serde(default)]
            function: Option<Function>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let (name, arguments) = match raw.function {
            Some(function) => (function.name, function.arguments),
            None => (raw.name.ok_or_else(|| D::Error::missing_field("name"))?, raw.args.or(raw.arguments)),
        };
        if name.trim().is_empty() {
            return Err(D::Error::custom("tool call name must not be empty"));
        }
        let args = match arguments {
            None | Some(Value::Null) => Value::Object(Map::new()),
            // OpenAI sends arguments as JSON text; keep unparsable text as a string.
            Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Some(other) => other,
        };
        Ok(ToolCall { id: raw.id, name, args })
    }
}

/// Reads `content` as text: a string, `null`, or a list of `{"type": "text", "text"}` parts.
fn content_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match part {
                    Value::String(piece) => text.push_str(&piece),
                    Value::Object(object) => {
                        if let Some(Value::String(piece)) = object.get("text") {
                            text.push_str(piece);
                        }
                    }
                    _ => return Err(D::Error::custom("content parts must be strings or objects")),
                }
            }
            Ok(text)
        }
        other => Err(D::Error::custom(format!("content must be a string or a list of parts, got {other}"))),
    }
}

/// Reads `error` as text: a string, `null`, `false`, or any other JSON kept as text.
pub(crate) fn error_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null | Value::Bool(false) => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIAGE: &str = r#"{"id": "triage-1",
     "inputs":  {"messages": [{"role": "system", "content": "You are an after-hours triage agent."},
                              {"role": "user", "content": "My 4-year-old has had a fever for 3 days."}],
                 "tools": ["lookup_clinic_hours", "page_on_call", "schedule_callback"],
                 "context": {"clinic_id": "clinic_482", "patient_age": 4}},
     "outputs": {"reference": "I'm going to page the on-call physician now.",
                 "must_call": ["page_on_call"], "must_not_say": ["I'm not a doctor", "call 911"]},
     "metadata": {"source": "production", "severity": "p0", "persona": "worried_parent"}}"#;

    #[test]
    fn spec_example_parses() {
        let example = Example::from_json(TRIAGE).expect("the SPEC example is valid");
        assert_eq!(example.outputs.must_call, vec!["page_on_call"]);
        assert_eq!(example.metadata_text("severity"), Some("p0"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"inputs": {"messages": []}}"#, "inputs.messages", "at least one"),
            (
                r#"{"inputs": {"messages": [{"role": "robot", "content": "x"}]}}"#,
                "inputs.messages[0].role",
                "unknown role",
            ),
            (
                r#"{"inputs": {"messages": [{"role": "user", "content": 5}]}}"#,
                "inputs.messages[0].content",
                "content must be",
            ),
            (r#"{"inputs": {"messages": "hi"}}"#, "inputs.messages", "invalid type"),
            (r#"{"outputs": {}}"#, "$", "missing field `inputs`"),
            (
                r#"{"inputs": {"messages": [{"role": "user", "content": "x"}], "tools": ["a"]}, "outputs": {"must_call": ["b"]}}"#,
                "outputs.must_call[0]",
                "not in inputs.tools",
            ),
            (
                r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}, "metadata": {"severity": "p9"}}"#,
                "metadata.severity",
                "unknown severity",
            ),
            (
                r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}, "colour": 1}"#,
                "colour",
                "unknown field `colour`",
            ),
            (r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}"#, "$", "EOF"),
            (r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}} trailing"#, "$", "trailing"),
        ];
        for (text, field, reason) in cases {
            let errors = Example::from_json(text).expect_err(text).field_errors();
            assert!(
                errors.iter().any(|error| error.field == *field && error.reason.contains(reason)),
                "{text}: expected {field} / {reason}, got {errors:?}"
            );
        }
    }

    #[test]
    fn tool_call_shapes_agree() {
        let run = AgentRun::from_json(
            r#"{"outputs": {"messages": [{"role": "assistant", "content": [{"type": "text", "text": "ok"}],
                 "tool_calls": [{"id": "c1", "function": {"name": "page_on_call", "arguments": "{\"clinic_id\": \"c\"}"}},
                                {"name": "lookup", "arguments": {"a": 1}},
                                {"name": "schedule", "args": null}]}]}, "error": null}"#,
        )
        .expect("run parses");
        let calls = run.tool_calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].args, serde_json::json!({"clinic_id": "c"}));
        assert_eq!(calls[1].args, serde_json::json!({"a": 1}));
        assert_eq!(calls[2].args, serde_json::json!({}));
        assert_eq!(run.outputs.messages[0].content, "ok");
        assert_eq!(run.error, None);
    }
}
