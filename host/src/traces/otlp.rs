//! OpenTelemetry GenAI spans, as OTLP/HTTP JSON, mapped to production traces.
//!
//! A pure mapping: an `ExportTraceServiceRequest` in, traces and refusals out.
//! The spans of one `traceId` (hex) become one trace whose id is that trace
//! id. What is read (the GenAI semantic conventions, with the older event
//! form still emitted by many instrumentations):
//!
//! | Trace field | Read from |
//! |---|---|
//! | `project` | resource attribute `assay.project`, else `service.name` (not the SDK's `unknown_service:*` default), else the request's default project |
//! | `id` | the span's `traceId` |
//! | `start_time`, `end_time` | the root span's (no `parentSpanId`) `startTimeUnixNano`, `endTimeUnixNano` (strings or numbers) |
//! | `name` | the root span's `gen_ai.agent.name`, else its span name |
//! | `inputs.messages` | the root span's `gen_ai.input.messages` (JSON text or structured, parts `text`, `tool_call`, `tool_call_response`), else those of the earliest span carrying them; `gen_ai.system_instructions` becomes a leading system message; else span events `gen_ai.system.message`, `gen_ai.user.message`, `gen_ai.assistant.message`, `gen_ai.tool.message` (their body in the attribute `gen_ai.event.content` as JSON, or as attributes `content`, `role`, `tool_calls`, `id`) |
//! | `outputs.messages` | the root span's `gen_ai.output.messages`, else, in time order, every other span's `gen_ai.output.messages` or `gen_ai.choice` events (body `message: {content, tool_calls}`), interleaved with the results of tool spans as `tool` messages |
//! | `outputs.tool_calls` | spans with `gen_ai.operation.name = execute_tool`, in start order: `gen_ai.tool.name`, `gen_ai.tool.call.id`, `gen_ai.tool.call.arguments` (a result is `gen_ai.tool.call.result`) |
//! | `total_tokens` | `gen_ai.usage.input_tokens` + `gen_ai.usage.output_tokens` of the root span, else summed over the other spans |
//! | `error` | the root span's status code 2 (`STATUS_CODE_ERROR`): its message, else `error.type`, else the `exception` event's `exception.message` |
//! | `tags` | `assay.tags` or `langsmith.tags` on the root span or the resource (a list, JSON list text, or comma-separated text) |
//! | `metadata` | `assay.metadata.KEY` attributes of the resource and the root span (the span wins), and `gen_ai.conversation.id` as `conversation_id` |
//!
//! Feedback is not mapped (send it to the feedback route). The spans of a
//! trace may arrive in several requests (a batching exporter sends children
//! before their root): [`group_spans`] and [`group_to_trace`] let the caller
//! hold a group that has no root span yet and map it once the root arrives.

use super::{Trace, format_rfc3339_ms};
use crate::model::{Inputs, Message, RunOutputs, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The spans of one trace id from one or more requests, as they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanGroup {
    /// The trace id, lowercase hex.
    pub trace_id: String,
    /// The resource attributes of the first resource these spans came with.
    pub resource: Map<String, Value>,
    /// OTLP JSON span objects.
    pub spans: Vec<Value>,
}

/// Why a group of spans did not become a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingError {
    /// No span of the group is a root (every span names a parent): the root
    /// may still be on its way.
    NoRootSpan,
    /// The spans cannot make a valid trace; the reason names what is wrong.
    Invalid(String),
}

/// A group of spans refused by [`otlp_to_traces`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub trace_id: String,
    /// How many spans it held (the OTLP answer counts rejected spans).
    pub spans: usize,
    pub reason: String,
}

/// Maps a whole request. Groups without a root span are refused here; a
/// caller that can wait for the root uses [`group_spans`] and
/// [`group_to_trace`] instead. The traces are validated.
pub fn otlp_to_traces(request: &Value, default_project: Option<&str>) -> (Vec<Trace>, Vec<Rejection>) {
    let groups = match group_spans(request) {
        Ok(groups) => groups,
        Err(reason) => return (Vec::new(), vec![Rejection { trace_id: String::new(), spans: 0, reason }]),
    };
    let mut traces = Vec::new();
    let mut rejections = Vec::new();
    for group in groups {
        match group_to_trace(&group, default_project) {
            Ok(trace) => traces.push(trace),
            Err(error) => rejections.push(Rejection {
                trace_id: group.trace_id.clone(),
                spans: group.spans.len(),
                reason: error.describe(&group.trace_id),
            }),
        }
    }
    (traces, rejections)
}

/// Groups the spans of a request by trace id, in order of first appearance.
/// Refuses a document that is not an `ExportTraceServiceRequest`.
pub fn group_spans(request: &Value) -> Result<Vec<SpanGroup>, String> {
    let Some(object) = request.as_object() else {
        return Err("the body must be a JSON object {\"resourceSpans\": [...]}".into());
    };
    let resource_spans = match object.get("resourceSpans") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("resourceSpans must be a list".into()),
    };
    let mut groups: Vec<SpanGroup> = Vec::new();
    let mut index_of: BTreeMap<String, usize> = BTreeMap::new();
    for (resource_index, entry) in resource_spans.iter().enumerate() {
        let resource = attributes(entry.get("resource").and_then(|resource| resource.get("attributes")));
        let scopes = match entry.get("scopeSpans").or_else(|| entry.get("instrumentationLibrarySpans")) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(scopes)) => scopes,
            Some(_) => return Err(format!("resourceSpans[{resource_index}].scopeSpans must be a list")),
        };
        for (scope_index, scope) in scopes.iter().enumerate() {
            let spans = match scope.get("spans") {
                None | Some(Value::Null) => continue,
                Some(Value::Array(spans)) => spans,
                Some(_) => {
                    return Err(format!(
                        "resourceSpans[{resource_index}].scopeSpans[{scope_index}].spans must be a list"
                    ));
                }
            };
            for (span_index, span) in spans.iter().enumerate() {
                let trace_id = span.get("traceId").and_then(Value::as_str).map(str::to_ascii_lowercase);
                let Some(trace_id) = trace_id.filter(|id| !id.is_empty()) else {
                    return Err(format!(
                        "resourceSpans[{resource_index}].scopeSpans[{scope_index}].spans[{span_index}] has no traceId"
                    ));
                };
                let index = *index_of.entry(trace_id.clone()).or_insert_with(|| {
                    groups.push(SpanGroup { trace_id, resource: resource.clone(), spans: Vec::new() });
                    groups.len() - 1
                });
                groups[index].spans.push(span.clone());
            }
        }
    }
    Ok(groups)
}

impl SpanGroup {
    /// Adds the spans of `other` (the same trace, a later request).
    pub fn absorb(&mut self, other: SpanGroup) {
        for (key, value) in other.resource {
            self.resource.entry(key).or_insert(value);
        }
        self.spans.extend(other.spans);
    }
}

impl MappingError {
    /// A sentence for the OTLP `errorMessage`.
    pub fn describe(&self, trace_id: &str) -> String {
        match self {
            MappingError::NoRootSpan => format!("trace {trace_id}: no root span (a span without parentSpanId)"),
            MappingError::Invalid(reason) => format!("trace {trace_id}: {reason}"),
        }
    }
}

/// Maps the spans of one trace to a validated trace.
pub fn group_to_trace(group: &SpanGroup, default_project: Option<&str>) -> Result<Trace, MappingError> {
    let mut spans: Vec<SpanView> = group.spans.iter().map(SpanView::new).collect();
    spans.sort_by_key(|span| (span.start_nanos, span.end_nanos));
    let root_index = spans.iter().position(SpanView::is_root).ok_or(MappingError::NoRootSpan)?;
    let root = &spans[root_index];
    let others = || spans.iter().enumerate().filter(move |(index, _)| *index != root_index).map(|(_, span)| span);

    let project = text_attribute(&group.resource, "assay.project")
        .or_else(|| text_attribute(&group.resource, "service.name").filter(|name| !name.starts_with("unknown_service")))
        .or_else(|| text_attribute(&root.attributes, "assay.project"))
        .or(default_project)
        .unwrap_or_default()
        .to_owned();
    if root.start_nanos == 0 {
        return Err(MappingError::Invalid("the root span has no startTimeUnixNano".into()));
    }

    let inputs = root.input_messages().or_else(|| others().find_map(SpanView::input_messages)).unwrap_or_default();
    let tool_spans: Vec<&SpanView> = spans.iter().filter(|span| span.is_tool_execution()).collect();
    let tool_calls: Vec<ToolCall> = tool_spans.iter().map(|span| span.tool_call()).collect();
    let output_messages = match root.output_messages() {
        Some(messages) => messages,
        None => {
            let mut timeline: Vec<(u64, Vec<Message>)> = Vec::new();
            for span in others() {
                if span.is_tool_execution() {
                    if let Some(result) = span.tool_result_message() {
                        timeline.push((span.end_nanos, vec![result]));
                    }
                } else if let Some(messages) = span.output_messages() {
                    timeline.push((span.end_nanos, messages));
                }
            }
            timeline.sort_by_key(|(end, _)| *end);
            timeline.into_iter().flat_map(|(_, messages)| messages).collect()
        }
    };

    let total_tokens = root
        .tokens()
        .or_else(|| others().filter_map(SpanView::tokens).fold(None, |sum, tokens| Some(sum.unwrap_or(0) + tokens)));

    let mut metadata = Map::new();
    for source in [&group.resource, &root.attributes] {
        for (key, value) in source {
            if let Some(name) = key.strip_prefix("assay.metadata.").filter(|name| !name.is_empty()) {
                metadata.insert(name.to_owned(), value.clone());
            }
        }
    }
    let conversation = text_attribute(&root.attributes, "gen_ai.conversation.id")
        .or_else(|| others().find_map(|span| text_attribute(&span.attributes, "gen_ai.conversation.id")));
    if let Some(conversation) = conversation {
        metadata.entry("conversation_id").or_insert_with(|| Value::String(conversation.to_owned()));
    }

    let tags = ["assay.tags", "langsmith.tags"]
        .iter()
        .find_map(|key| root.attributes.get(*key).or_else(|| group.resource.get(*key)))
        .map(tag_list)
        .unwrap_or_default();

    let mut trace = Trace {
        id: group.trace_id.clone(),
        project,
        name: text_attribute(&root.attributes, "gen_ai.agent.name")
            .or(Some(root.name.as_str()).filter(|name| !name.is_empty()))
            .map(str::to_owned),
        start_time: format_rfc3339_ms(nanos_to_ms(root.start_nanos)),
        end_time: (root.end_nanos >= root.start_nanos && root.end_nanos > 0)
            .then(|| format_rfc3339_ms(nanos_to_ms(root.end_nanos))),
        inputs: Inputs { messages: inputs, tools: Vec::new(), context: None, extra: Map::new() },
        outputs: RunOutputs {
            messages: output_messages,
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            extra: Map::new(),
        },
        latency_ms: None,
        error: root.error(),
        total_tokens,
        tags,
        metadata,
        feedback: Vec::new(),
    };
    trace.derive_latency();
    trace.validate().map_err(|errors| {
        MappingError::Invalid(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    })?;
    Ok(trace)
}

/// One span, its attributes decoded from OTLP's typed values.
struct SpanView<'a> {
    raw: &'a Value,
    name: String,
    start_nanos: u64,
    end_nanos: u64,
    attributes: Map<String, Value>,
}

impl<'a> SpanView<'a> {
    fn new(raw: &'a Value) -> SpanView<'a> {
        SpanView {
            raw,
            name: raw.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            start_nanos: raw.get("startTimeUnixNano").and_then(unsigned).unwrap_or(0),
            end_nanos: raw.get("endTimeUnixNano").and_then(unsigned).unwrap_or(0),
            attributes: attributes(raw.get("attributes")),
        }
    }

    fn is_root(&self) -> bool {
        match self.raw.get("parentSpanId") {
            None | Some(Value::Null) => true,
            Some(Value::String(parent)) => parent.is_empty() || parent.bytes().all(|byte| byte == b'0'),
            Some(_) => false,
        }
    }

    fn is_tool_execution(&self) -> bool {
        text_attribute(&self.attributes, "gen_ai.operation.name") == Some("execute_tool")
    }

    fn events(&self) -> impl Iterator<Item = (&str, Map<String, Value>)> {
        self.raw.get("events").and_then(Value::as_array).into_iter().flatten().map(|event| {
            (event.get("name").and_then(Value::as_str).unwrap_or_default(), attributes(event.get("attributes")))
        })
    }

    /// `gen_ai.input.messages` (with `gen_ai.system_instructions`), else the input events.
    fn input_messages(&self) -> Option<Vec<Message>> {
        let mut messages = match self.attributes.get("gen_ai.input.messages") {
            Some(value) => semconv_messages(value),
            None => {
                let from_events: Vec<Message> = self
                    .events()
                    .filter_map(|(name, attributes)| {
                        let role = match name {
                            "gen_ai.system.message" => "system",
                            "gen_ai.user.message" => "user",
                            "gen_ai.assistant.message" => "assistant",
                            "gen_ai.tool.message" => "tool",
                            _ => return None,
                        };
                        Some(event_message(role, &event_body(attributes)))
                    })
                    .collect();
                (!from_events.is_empty()).then_some(from_events)?
            }
        };
        if let Some(instructions) = self.attributes.get("gen_ai.system_instructions")
            && !messages.iter().any(|message| message.role == "system")
        {
            let parts = decode_json_text(instructions);
            messages.insert(0, plain_message("system", content_text(&parts)));
        }
        Some(messages)
    }

    /// `gen_ai.output.messages`, else the `gen_ai.choice` events.
    fn output_messages(&self) -> Option<Vec<Message>> {
        if let Some(value) = self.attributes.get("gen_ai.output.messages") {
            return Some(semconv_messages(value));
        }
        let choices: Vec<Message> = self
            .events()
            .filter(|(name, _)| *name == "gen_ai.choice")
            .map(|(_, attributes)| {
                let body = event_body(attributes);
                match body.get("message").map(decode_json_text) {
                    Some(Value::Object(message)) => event_message("assistant", &message),
                    _ => event_message("assistant", &body),
                }
            })
            .collect();
        (!choices.is_empty()).then_some(choices)
    }

    fn tool_name(&self) -> String {
        text_attribute(&self.attributes, "gen_ai.tool.name")
            .map(str::to_owned)
            .unwrap_or_else(|| self.name.strip_prefix("execute_tool ").unwrap_or(&self.name).to_owned())
    }

    fn tool_call(&self) -> ToolCall {
        let args = match self.attributes.get("gen_ai.tool.call.arguments").map(decode_json_text) {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(args) => args,
        };
        ToolCall {
            id: text_attribute(&self.attributes, "gen_ai.tool.call.id").map(str::to_owned),
            name: self.tool_name(),
            args,
        }
    }

    fn tool_result_message(&self) -> Option<Message> {
        let result = self.attributes.get("gen_ai.tool.call.result")?;
        let content = match result {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Some(Message {
            role: "tool".into(),
            content,
            tool_calls: Vec::new(),
            tool_call_id: text_attribute(&self.attributes, "gen_ai.tool.call.id").map(str::to_owned),
            name: Some(self.tool_name()),
        })
    }

    fn tokens(&self) -> Option<u64> {
        let count = |key: &str| self.attributes.get(key).and_then(unsigned);
        match (count("gen_ai.usage.input_tokens"), count("gen_ai.usage.output_tokens")) {
            (None, None) => None,
            (input, output) => Some(input.unwrap_or(0) + output.unwrap_or(0)),
        }
    }

    fn error(&self) -> Option<String> {
        let status = self.raw.get("status")?;
        let is_error = match status.get("code") {
            Some(Value::Number(code)) => code.as_u64() == Some(2),
            Some(Value::String(code)) => code == "2" || code == "STATUS_CODE_ERROR",
            _ => false,
        };
        if !is_error {
            return None;
        }
        let message = status.get("message").and_then(Value::as_str).filter(|message| !message.is_empty());
        let exception = || {
            self.events()
                .find(|(name, _)| *name == "exception")
                .and_then(|(_, attributes)| text_attribute(&attributes, "exception.message").map(str::to_owned))
        };
        Some(
            message
                .map(str::to_owned)
                .or_else(|| text_attribute(&self.attributes, "error.type").map(str::to_owned))
                .or_else(exception)
                .unwrap_or_else(|| "error".into()),
        )
    }
}

/// OTLP `KeyValue` list → JSON object.
fn attributes(list: Option<&Value>) -> Map<String, Value> {
    let mut map = Map::new();
    for entry in list.and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = entry.get("key").and_then(Value::as_str) {
            map.insert(key.to_owned(), entry.get("value").map_or(Value::Null, any_value));
        }
    }
    map
}

/// OTLP `AnyValue` → plain JSON.
fn any_value(value: &Value) -> Value {
    let Some(object) = value.as_object() else { return value.clone() };
    if let Some(text) = object.get("stringValue") {
        return text.clone();
    }
    if let Some(flag) = object.get("boolValue") {
        return flag.clone();
    }
    if let Some(integer) = object.get("intValue") {
        return match integer {
            Value::String(text) => text.parse::<i64>().map(Value::from).unwrap_or_else(|_| integer.clone()),
            other => other.clone(),
        };
    }
    if let Some(double) = object.get("doubleValue") {
        return double.clone();
    }
    if let Some(array) = object.get("arrayValue") {
        return Value::Array(
            array.get("values").and_then(Value::as_array).into_iter().flatten().map(any_value).collect(),
        );
    }
    if let Some(list) = object.get("kvlistValue") {
        return Value::Object(attributes(list.get("values")));
    }
    if let Some(bytes) = object.get("bytesValue") {
        return bytes.clone();
    }
    Value::Null
}

/// A number given as a JSON number or as decimal text (OTLP JSON writes
/// 64-bit integers as strings).
fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

fn nanos_to_ms(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

fn text_attribute<'m>(attributes: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    attributes.get(key).and_then(Value::as_str).filter(|text| !text.is_empty())
}

/// Attributes recorded "as JSON text when structured values are not
/// supported": text that parses as JSON is read as that JSON.
fn decode_json_text(value: &Value) -> Value {
    match value {
        Value::String(text) if text.trim_start().starts_with(['[', '{']) => {
            serde_json::from_str(text).unwrap_or_else(|_| value.clone())
        }
        other => other.clone(),
    }
}

/// `gen_ai.input.messages` / `gen_ai.output.messages`: `[{role, parts: [...]}]`.
fn semconv_messages(value: &Value) -> Vec<Message> {
    let Value::Array(list) = decode_json_text(value) else { return Vec::new() };
    list.iter()
        .filter_map(Value::as_object)
        .map(|message| {
            let role = normalize_role(message.get("role").and_then(Value::as_str).unwrap_or("user"));
            let mut content = String::new();
            let mut tool_calls = Vec::new();
            let mut tool_call_id = None;
            for part in message.get("parts").and_then(Value::as_array).into_iter().flatten() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") | Some("reasoning") | None => {
                        if let Some(text) = part.get("content").or_else(|| part.get("text")).and_then(Value::as_str) {
                            content.push_str(text);
                        }
                    }
                    Some("tool_call") => {
                        let args = match part.get("arguments").map(decode_json_text) {
                            None | Some(Value::Null) => Value::Object(Map::new()),
                            Some(args) => args,
                        };
                        if let Some(name) = part.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) {
                            tool_calls.push(ToolCall {
                                id: part.get("id").and_then(Value::as_str).map(str::to_owned),
                                name: name.to_owned(),
                                args,
                            });
                        }
                    }
                    Some("tool_call_response") => {
                        tool_call_id = part.get("id").and_then(Value::as_str).map(str::to_owned);
                        match part.get("response").or_else(|| part.get("result")) {
                            Some(Value::String(text)) => content.push_str(text),
                            Some(Value::Null) | None => {}
                            Some(other) => content.push_str(&other.to_string()),
                        }
                    }
                    Some(_) => {}
                }
            }
            Message {
                role,
                content,
                tool_calls,
                tool_call_id,
                name: message.get("name").and_then(Value::as_str).map(str::to_owned),
            }
        })
        .collect()
}

/// The body of an older GenAI event: the JSON in `gen_ai.event.content`, or
/// the event's own attributes (with JSON text decoded).
fn event_body(attributes: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(body)) = attributes.get("gen_ai.event.content").map(decode_json_text) {
        return body;
    }
    attributes
}

/// A message from an older event body `{role?, content, tool_calls?, id?}`.
fn event_message(default_role: &str, body: &Map<String, Value>) -> Message {
    let role = normalize_role(body.get("role").and_then(Value::as_str).unwrap_or(default_role));
    let tool_calls = match body.get("tool_calls").map(decode_json_text) {
        Some(Value::Array(calls)) => {
            calls.into_iter().filter_map(|call| serde_json::from_value::<ToolCall>(call).ok()).collect()
        }
        _ => Vec::new(),
    };
    let content = body.get("content").map(|content| content_text(&decode_json_text(content))).unwrap_or_default();
    Message {
        tool_call_id: if role == "tool" { body.get("id").and_then(Value::as_str).map(str::to_owned) } else { None },
        role,
        content,
        tool_calls,
        name: None,
    }
}

fn plain_message(role: &str, content: String) -> Message {
    Message { role: role.into(), content, tool_calls: Vec::new(), tool_call_id: None, name: None }
}

/// Text of a content value: a string, a list of parts (`content` or `text`), or other JSON as text.
fn content_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.as_str()),
                Value::Object(part) => part.get("content").or_else(|| part.get("text")).and_then(Value::as_str),
                _ => None,
            })
            .collect(),
        other => other.to_string(),
    }
}

/// Gemini calls the assistant `model`.
fn normalize_role(role: &str) -> String {
    if role == "model" { "assistant".into() } else { role.into() }
}

/// Tags from a list, JSON list text, or comma-separated text.
fn tag_list(value: &Value) -> Vec<String> {
    let items: Vec<String> = match decode_json_text(value) {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Value::String(text) => text.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    items.into_iter().map(|tag| tag.trim().to_owned()).filter(|tag| !tag.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(key: &str, value: &str) -> Value {
        json!({"key": key, "value": {"stringValue": value}})
    }

    fn span(trace: &str, id: &str, parent: &str, start: u64, end: u64, attributes: Vec<Value>) -> Value {
        json!({"traceId": trace, "spanId": id, "parentSpanId": parent, "name": format!("span {id}"),
               "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end, "attributes": attributes})
    }

    fn request(resource: Vec<Value>, spans: Vec<Value>) -> Value {
        json!({"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]})
    }

    const SECOND: u64 = 1_000_000_000;
    const START: u64 = 1_748_770_200 * SECOND;

    #[test]
    fn event_form_and_tool_spans_map() {
        let mut llm = span(
            "AB12",
            "02",
            "01",
            START + SECOND,
            START + 2 * SECOND,
            vec![
                json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": "120"}}),
                json!({"key": "gen_ai.usage.output_tokens", "value": {"intValue": 30}}),
            ],
        );
        llm["events"] = json!([
            {"name": "gen_ai.system.message", "attributes": [text("content", "You are a support agent.")]},
            {"name": "gen_ai.user.message", "attributes": [text("gen_ai.event.content", r#"{"content": "Where is my order?"}"#)]},
            {"name": "gen_ai.choice", "attributes": [text("message", r#"{"content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order\": 7}"}}]}"#)]}
        ]);
        let tool = span(
            "AB12",
            "03",
            "01",
            START + 2 * SECOND,
            START + 3 * SECOND,
            vec![
                text("gen_ai.operation.name", "execute_tool"),
                text("gen_ai.tool.name", "lookup_order"),
                text("gen_ai.tool.call.id", "c1"),
                text("gen_ai.tool.call.arguments", r#"{"order": 7}"#),
                text("gen_ai.tool.call.result", "shipped"),
            ],
        );
        let mut root = span(
            "AB12",
            "01",
            "",
            START,
            START + 4 * SECOND,
            vec![
                text("gen_ai.agent.name", "support"),
                json!({"key": "assay.tags", "value": {"arrayValue": {"values": [{"stringValue": "beta"}]}}}),
                text("assay.metadata.persona", "frustrated_customer"),
            ],
        );
        root["status"] = json!({"code": 2, "message": "upstream timeout"});
        let (traces, rejections) =
            otlp_to_traces(&request(vec![text("service.name", "support-agent")], vec![tool, llm, root]), None);
        assert!(rejections.is_empty(), "{rejections:?}");
        let trace = &traces[0];
        assert_eq!(trace.id, "ab12");
        assert_eq!(trace.project, "support-agent");
        assert_eq!(trace.name.as_deref(), Some("support"));
        assert_eq!(trace.start_time, "2025-06-01T09:30:00.000Z");
        assert_eq!(trace.latency_ms, Some(4_000));
        assert_eq!(trace.error.as_deref(), Some("upstream timeout"));
        assert_eq!(trace.total_tokens, Some(150));
        assert_eq!(trace.tags, ["beta"]);
        assert_eq!(trace.metadata["persona"], "frustrated_customer");
        let roles: Vec<&str> = trace.inputs.messages.iter().map(|message| message.role.as_str()).collect();
        assert_eq!(roles, ["system", "user"]);
        assert_eq!(trace.inputs.messages[1].content, "Where is my order?");
        let outputs: Vec<(&str, &str)> =
            trace.outputs.messages.iter().map(|message| (message.role.as_str(), message.content.as_str())).collect();
        assert_eq!(outputs, [("assistant", ""), ("tool", "shipped")]);
        assert_eq!(trace.outputs.messages[0].tool_calls[0].args, json!({"order": 7}));
        let calls = trace.outputs.tool_calls.as_ref().expect("tool calls");
        assert_eq!((calls[0].name.as_str(), &calls[0].args), ("lookup_order", &json!({"order": 7})));
    }

    #[test]
    fn groups_without_a_root_or_a_project_are_refused() {
        let orphan = span("cd", "02", "01", START, START + SECOND, vec![]);
        let unnamed = span("ef", "01", "", START, START + SECOND, vec![]);
        let (traces, rejections) =
            otlp_to_traces(&request(vec![text("service.name", "unknown_service:python")], vec![orphan, unnamed]), None);
        assert!(traces.is_empty());
        assert!(rejections[0].reason.contains("no root span"), "{rejections:?}");
        assert!(rejections[1].reason.contains("project"), "{rejections:?}");
        let (traces, _) = otlp_to_traces(
            &request(vec![], vec![span("ef", "01", "", START, START + SECOND, vec![])]),
            Some("fallback"),
        );
        assert_eq!(traces[0].project, "fallback");
        assert!(group_spans(&json!([1])).is_err());
        assert!(group_spans(&json!({"resourceSpans": 5})).is_err());
        assert_eq!(group_spans(&json!({})).expect("empty request"), Vec::new());
    }
}
