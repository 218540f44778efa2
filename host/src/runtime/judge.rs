//! The `judge` capability: a language model a grader may consult, reached
//! through an OpenAI-compatible chat-completions endpoint the operator
//! configures ([`JudgeConfig`]).
//!
//! The judge is granted to a grader only when the grader lists `judge` in its
//! capabilities and the operator allows its name; otherwise every request is
//! refused with a message saying so. Every exchange of one grade call
//! (request, and answer or error) is recorded in a [`JudgeSession`] and
//! handed back with the result, so it can be stored with the score; a
//! re-grade passes the recorded exchanges back in and gets the recorded
//! answers instead of asking the model again. Time spent waiting for the
//! model is kept apart so it does not count against the grader's wall-clock
//! deadline; the judge's own timeout bounds it.

use super::bindings::judge as wit;
use super::sandbox::CallState;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The capability name a grader lists in its metadata to use the judge.
pub const JUDGE_CAPABILITY: &str = "judge";
/// The WIT interface a judge grader imports.
pub const JUDGE_INTERFACE: &str = "assay:grader/judge@0.1.0";
/// The `allowed` entry that grants the judge to every grader asking for it.
pub const ALLOW_EVERY_GRADER: &str = "*";
/// Longest judge timeout an operator may set.
pub const JUDGE_TIMEOUT_MS_MAX: u64 = 600_000;
/// Most model calls in flight at once an operator may allow.
pub const JUDGE_CONCURRENCY_MAX: usize = 256;
/// How much of a refused or unreadable answer is kept in the recorded error.
const ERROR_SNIPPET_CHARS_MAX: usize = 300;

/// Where the judge model is and how it may be used. Set by the operator;
/// `None` in [`RuntimeConfig`](super::RuntimeConfig) means no grader gets it.
#[derive(Clone, PartialEq)]
pub struct JudgeConfig {
    /// Base URL of an OpenAI-compatible API, e.g. `http://127.0.0.1:9000/v1`;
    /// requests go to `{url}/chat/completions`.
    pub url: String,
    /// The model named in every request.
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` when present. Never shown in logs.
    pub api_key: Option<String>,
    /// Deadline of one model call, waiting for a free slot included.
    pub timeout_ms: u64,
    /// Model calls in flight at once, across every grader and evaluation.
    pub max_concurrency: usize,
    /// Grader names the judge is granted to, or `*` for every grader that asks.
    pub allowed: Vec<String>,
    /// Judge requests one grade call may make.
    pub calls_per_grade_max: u32,
    /// Bytes of one request's messages.
    pub request_bytes_max: usize,
    /// Bytes of the endpoint's answer read.
    pub answer_bytes_max: u64,
    /// `max_tokens` sent when the grader asks for none, and the most it may ask for.
    pub answer_tokens_max: u32,
    /// `temperature` sent when the grader asks for none.
    pub temperature_default: f64,
}

impl std::fmt::Debug for JudgeConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JudgeConfig")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("max_concurrency", &self.max_concurrency)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl JudgeConfig {
    /// The judge at `url` with `model`, granted to no grader yet, with the default limits.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> JudgeConfig {
        JudgeConfig {
            url: url.into(),
            model: model.into(),
            api_key: None,
            timeout_ms: 60_000,
            max_concurrency: 4,
            allowed: Vec::new(),
            calls_per_grade_max: 8,
            request_bytes_max: 256 << 10,
            answer_bytes_max: 1 << 20,
            answer_tokens_max: 4096,
            temperature_default: 0.0,
        }
    }

    /// True when the operator allows the grader called `grader` to use the judge.
    pub fn allows(&self, grader: &str) -> bool {
        self.allowed.iter().any(|allowed| allowed == ALLOW_EVERY_GRADER || allowed == grader)
    }

    /// Every problem with the settings, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.url.split_once("://") {
            Some(("http", rest)) if !rest.is_empty() && !rest.starts_with('/') => {}
            Some(("https", _)) => problems.push(
                "judge url: https is not supported by this build; use http (a local proxy for a remote API)".into(),
            ),
            _ => problems.push(format!("judge url {:?} is not an http://host[:port]/path URL", self.url)),
        }
        if self.model.trim().is_empty() {
            problems.push("judge model: name the model to ask".into());
        }
        if !(1..=JUDGE_TIMEOUT_MS_MAX).contains(&self.timeout_ms) {
            problems.push(format!("judge timeout: must be 1 to {JUDGE_TIMEOUT_MS_MAX} ms"));
        }
        if !(1..=JUDGE_CONCURRENCY_MAX).contains(&self.max_concurrency) {
            problems.push(format!("judge max concurrency: must be 1 to {JUDGE_CONCURRENCY_MAX}"));
        }
        if let Some(name) =
            self.allowed.iter().find(|name| name.as_str() != ALLOW_EVERY_GRADER && !super::is_name(name))
        {
            problems.push(format!("judge allow: {name:?} is neither a grader name nor `*`"));
        }
        problems
    }

    /// The chat-completions endpoint.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.url.trim_end_matches('/'))
    }
}

/// One chat turn of a judge request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What a grader asked the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeResponse {
    pub content: String,
    /// The model that answered, as the endpoint names it.
    pub model: String,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// One judge request of a grade call and what came of it: an answer, or why
/// there was none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeExchange {
    pub request: JudgeRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<JudgeResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the answer was replayed from an earlier recording instead
    /// of asking the model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// What the judge cost so far: counted by the runtime across every grade call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JudgeStats {
    /// Requests sent to the model.
    pub calls: u64,
    /// Requests sent that got no usable answer (HTTP error, timeout, garbage).
    pub failures: u64,
    /// Prompt tokens the endpoint reported.
    pub input_tokens: u64,
    /// Completion tokens the endpoint reported.
    pub output_tokens: u64,
    /// Requests answered from a recording, without calling the model.
    pub replayed: u64,
    /// Requests refused without calling the model (not granted, over a limit).
    pub refused: u64,
}

/// The atomic counters behind [`JudgeStats`].
#[derive(Debug, Default)]
pub(super) struct JudgeCounters {
    calls: AtomicU64,
    failures: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    replayed: AtomicU64,
    refused: AtomicU64,
}

impl JudgeCounters {
    pub(super) fn snapshot(&self) -> JudgeStats {
        JudgeStats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// The operator's judge: the HTTP client, the concurrency limit and the counters.
pub(super) struct JudgeClient {
    config: JudgeConfig,
    agent: ureq::Agent,
    slots: Semaphore,
    counters: Arc<JudgeCounters>,
}

impl JudgeClient {
    pub(super) fn new(config: JudgeConfig, counters: Arc<JudgeCounters>) -> JudgeClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .max_idle_connections(config.max_concurrency)
            .max_idle_connections_per_host(config.max_concurrency)
            .max_redirects(0)
            .build()
            .into();
        let slots = Semaphore::new(config.max_concurrency);
        JudgeClient { config, agent, slots, counters }
    }

    pub(super) fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// Asks the model once, within the timeout (waiting for a slot included).
    fn complete(&self, request: &JudgeRequest) -> Result<JudgeResponse, String> {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let Some(_slot) = self.slots.acquire(timeout) else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "the judge is busy: no free slot within {} ms ({} calls in flight at most)",
                self.config.timeout_ms, self.config.max_concurrency
            ));
        };
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let remaining = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        let result = self.send(request, remaining);
        match &result {
            Ok(response) => {
                self.counters.input_tokens.fetch_add(u64::from(response.input_tokens), Ordering::Relaxed);
                self.counters.output_tokens.fetch_add(u64::from(response.output_tokens), Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn send(&self, request: &JudgeRequest, timeout: Duration) -> Result<JudgeResponse, String> {
        let body = request_body(&self.config, request).to_string();
        let mut call = self
            .agent
            .post(self.config.endpoint())
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json");
        if let Some(key) = &self.config.api_key {
            call = call.header("authorization", format!("Bearer {key}"));
        }
        let mut response = match call.send(body.as_bytes()) {
            Ok(response) => response,
            Err(ureq::Error::Timeout(_)) => {
                return Err(format!("the model did not answer within {} ms", self.config.timeout_ms));
            }
            Err(error) => return Err(format!("the model endpoint could not be reached: {error}")),
        };
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(self.config.answer_bytes_max).read_to_string();
        match (status, text) {
            (200..=299, Ok(text)) => parse_answer(&text, &self.config.model),
            (200..=299, Err(ureq::Error::BodyExceedsLimit(limit))) => {
                Err(format!("the model's answer is over the limit of {limit} bytes"))
            }
            (200..=299, Err(ureq::Error::Timeout(_))) => {
                Err(format!("the model did not answer within {} ms", self.config.timeout_ms))
            }
            (200..=299, Err(error)) => Err(format!("the model's answer could not be read: {error}")),
            (status, text) => {
                Err(format!("the model endpoint answered HTTP {status}{}", snippet(text.ok().as_deref())))
            }
        }
    }
}

/// The chat-completions request body for `request`.
pub fn request_body(config: &JudgeConfig, request: &JudgeRequest) -> Value {
    let max_tokens = request.max_tokens.unwrap_or(config.answer_tokens_max).min(config.answer_tokens_max);
    json!({
        "model": config.model,
        "messages": request.messages,
        "temperature": request.temperature.unwrap_or(config.temperature_default),
        "max_tokens": max_tokens,
    })
}

/// Reads a chat-completions answer: `choices[0].message.content` (a string,
/// or a list of text parts), `model` (else `model_asked`) and
/// `usage.prompt_tokens` / `usage.completion_tokens` (0 when absent).
pub fn parse_answer(text: &str, model_asked: &str) -> Result<JudgeResponse, String> {
    let answer: Value = serde_json::from_str(text)
        .map_err(|error| format!("the model's answer is not JSON ({error}){}", snippet(Some(text))))?;
    if let Some(error) = answer.get("error").filter(|error| !error.is_null()) {
        let message = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned);
        return Err(format!("the model endpoint reported an error: {}", truncate(&message)));
    }
    let message = answer
        .pointer("/choices/0/message")
        .ok_or_else(|| format!("the model's answer has no choices[0].message{}", snippet(Some(text))))?;
    let content = match message.get("content") {
        Some(Value::String(content)) => content.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str).or_else(|| part.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => {
            let refusal = message.get("refusal").and_then(Value::as_str);
            return Err(match refusal {
                Some(refusal) => format!("the model refused: {}", truncate(refusal)),
                None => "the model's answer has no text content".into(),
            });
        }
    };
    let tokens = |field: &str| {
        answer
            .pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .map_or(0, |count| u32::try_from(count).unwrap_or(u32::MAX))
    };
    Ok(JudgeResponse {
        content,
        model: answer.get("model").and_then(Value::as_str).unwrap_or(model_asked).to_owned(),
        input_tokens: tokens("prompt_tokens"),
        output_tokens: tokens("completion_tokens"),
    })
}

fn truncate(text: &str) -> String {
    let mut kept: String = text.chars().take(ERROR_SNIPPET_CHARS_MAX).collect();
    if kept.len() < text.len() {
        kept.push('…');
    }
    kept
}

fn snippet(text: Option<&str>) -> String {
    match text.map(str::trim) {
        Some(text) if !text.is_empty() => format!(": {}", truncate(text)),
        _ => String::new(),
    }
}

/// The judge as one grade call sees it: granted or not, the recorded answers
/// it may replay, and every exchange it made.
pub(super) struct JudgeSession {
    grader: String,
    /// The judge, when granted to this grader; otherwise why not.
    grant: Result<Arc<JudgeClient>, String>,
    counters: Arc<JudgeCounters>,
    /// Recorded exchanges with an answer, each replayed at most once.
    replay: Vec<Option<JudgeExchange>>,
    exchanges: Vec<JudgeExchange>,
    calls: u32,
    calls_max: u32,
    request_bytes_max: usize,
    /// When the grade call started.
    pub started: Instant,
    /// Time spent in model calls, not counted against the grader's deadline.
    pub waited: Duration,
}

impl JudgeSession {
    pub(super) fn new(
        grader: &str,
        grant: Result<Arc<JudgeClient>, String>,
        counters: Arc<JudgeCounters>,
        replay: &[JudgeExchange],
    ) -> JudgeSession {
        let defaults = JudgeConfig::new("", "");
        let config = grant.as_ref().map_or(&defaults, |client| client.config());
        JudgeSession {
            grader: grader.to_owned(),
            calls_max: config.calls_per_grade_max,
            request_bytes_max: config.request_bytes_max,
            grant,
            counters,
            replay: replay.iter().filter(|exchange| exchange.response.is_some()).cloned().map(Some).collect(),
            exchanges: Vec::new(),
            calls: 0,
            started: Instant::now(),
            waited: Duration::ZERO,
        }
    }

    /// Every exchange made, in order.
    pub(super) fn into_exchanges(self) -> Vec<JudgeExchange> {
        self.exchanges
    }

    /// Answers one request: from the recording when an unused exchange with
    /// an equal request has an answer, else from the model when granted.
    pub(super) fn complete(&mut self, request: JudgeRequest) -> Result<JudgeResponse, String> {
        self.calls += 1;
        if self.calls > self.calls_max {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            let error = format!("over the limit of {} judge requests in one grade call", self.calls_max);
            // Only the first refusal is kept: a grader looping on it cannot fill the record.
            if self.calls == self.calls_max + 1 {
                self.record(request, Err(error.clone()), false);
            }
            return Err(error);
        }
        let request_bytes: usize =
            request.messages.iter().map(|message| message.role.len() + message.content.len()).sum();
        if request_bytes > self.request_bytes_max {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            let error = format!(
                "the judge request is {request_bytes} bytes, over the limit of {} bytes",
                self.request_bytes_max
            );
            // The oversized messages are not kept in the record.
            let request = JudgeRequest { messages: Vec::new(), ..request };
            self.record(request, Err(error.clone()), false);
            return Err(error);
        }
        let recorded = self
            .replay
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|exchange| exchange.request == request))
            .and_then(Option::take)
            .and_then(|exchange| exchange.response);
        if let Some(response) = recorded {
            self.counters.replayed.fetch_add(1, Ordering::Relaxed);
            self.record(request, Ok(response.clone()), true);
            return Ok(response);
        }
        let client = match &self.grant {
            Ok(client) => Arc::clone(client),
            Err(reason) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                let error =
                    format!("the judge capability is not granted to grader {} by this server ({reason})", self.grader);
                self.record(request, Err(error.clone()), false);
                return Err(error);
            }
        };
        let asked = Instant::now();
        let result = client.complete(&request);
        self.waited += asked.elapsed();
        self.record(request, result.clone(), false);
        result
    }

    fn record(&mut self, request: JudgeRequest, result: Result<JudgeResponse, String>, replayed: bool) {
        let (response, error) = match result {
            Ok(response) => (Some(response), None),
            Err(error) => (None, Some(error)),
        };
        self.exchanges.push(JudgeExchange { request, response, error, replayed });
    }
}

impl wit::Host for CallState {
    fn complete(&mut self, request: wit::JudgeRequest) -> Result<wit::JudgeResponse, String> {
        let Some(session) = self.judge.as_mut() else {
            return Err("the judge capability is not available outside a grade call".into());
        };
        let request = JudgeRequest {
            messages: request
                .messages
                .into_iter()
                .map(|message| ChatMessage { role: message.role, content: message.content })
                .collect(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        };
        session.complete(request).map(|response| wit::JudgeResponse {
            content: response.content,
            model: response.model,
            input_tokens: response.input_tokens,
            output_tokens: response.output_tokens,
        })
    }
}

/// A counting semaphore: at most `slots` holders at once.
struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Semaphore);

impl Semaphore {
    fn new(slots: usize) -> Semaphore {
        Semaphore { free: Mutex::new(slots.max(1)), freed: Condvar::new() }
    }

    /// A slot, or `None` when none came free within `timeout`.
    fn acquire(&self, timeout: Duration) -> Option<Slot<'_>> {
        let free = self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut free, _) = self
            .freed
            .wait_timeout_while(free, timeout, |free| *free == 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> JudgeRequest {
        JudgeRequest {
            messages: vec![
                ChatMessage { role: "system".into(), content: "You grade answers.".into() },
                ChatMessage { role: "user".into(), content: text.into() },
            ],
            temperature: None,
            max_tokens: Some(100_000),
        }
    }

    #[test]
    fn the_request_body_is_the_chat_completions_wire_format() {
        let config = JudgeConfig::new("http://127.0.0.1:9000/v1/", "judge-model");
        assert_eq!(config.endpoint(), "http://127.0.0.1:9000/v1/chat/completions");
        let body = request_body(&config, &request("Grade this."));
        assert_eq!(
            body,
            json!({
                "model": "judge-model",
                "messages": [
                    {"role": "system", "content": "You grade answers."},
                    {"role": "user", "content": "Grade this."},
                ],
                "temperature": 0.0,
                // Capped at the operator's limit.
                "max_tokens": 4096,
            })
        );
        let asked = JudgeRequest { temperature: Some(0.5), max_tokens: Some(50), ..request("x") };
        let body = request_body(&config, &asked);
        assert_eq!((body["temperature"].as_f64(), body["max_tokens"].as_u64()), (Some(0.5), Some(50)));
    }

    #[test]
    fn answers_are_read_from_choices_and_usage() {
        let answer = json!({
            "id": "chatcmpl-1",
            "model": "judge-model-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Good.\nSCORE: 0.8"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127},
        });
        let response = parse_answer(&answer.to_string(), "asked").unwrap();
        assert_eq!(
            response,
            JudgeResponse {
                content: "Good.\nSCORE: 0.8".into(),
                model: "judge-model-2024".into(),
                input_tokens: 120,
                output_tokens: 7
            }
        );
        // No usage and no model: zero tokens, the model asked for; content as text parts.
        let parts = json!({"choices": [{"message": {"content": [{"type": "text", "text": "SCORE: "}, {"type": "text", "text": "1"}]}}]});
        let response = parse_answer(&parts.to_string(), "asked").unwrap();
        assert_eq!(
            (response.content.as_str(), response.model.as_str(), response.input_tokens),
            ("SCORE: 1", "asked", 0)
        );
    }

    #[test]
    fn unusable_answers_say_why() {
        let cases = [
            ("not json at all", "not JSON"),
            (r#"{"choices": []}"#, "no choices[0].message"),
            (r#"{"error": {"message": "rate limited"}}"#, "rate limited"),
            (r#"{"choices": [{"message": {"content": null, "refusal": "I can't"}}]}"#, "refused: I can't"),
            (r#"{"choices": [{"message": {"role": "assistant"}}]}"#, "no text content"),
        ];
        for (text, expected) in cases {
            let error = parse_answer(text, "m").expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn exchanges_round_trip_through_json() {
        let exchange = JudgeExchange {
            request: JudgeRequest { temperature: Some(0.2), ..request("Grade this.") },
            response: Some(JudgeResponse {
                content: "SCORE: 1".into(),
                model: "m".into(),
                input_tokens: 3,
                output_tokens: 2,
            }),
            error: None,
            replayed: false,
        };
        let value = serde_json::to_value(&exchange).unwrap();
        assert!(value.get("replayed").is_none() && value.get("error").is_none(), "{value}");
        assert_eq!(serde_json::from_value::<JudgeExchange>(value).unwrap(), exchange);
    }

    #[test]
    fn a_session_replays_equal_requests_in_order_and_refuses_without_a_grant() {
        let counters = Arc::new(JudgeCounters::default());
        let answered = |content: &str| JudgeExchange {
            request: request("same"),
            response: Some(JudgeResponse {
                content: content.into(),
                model: "m".into(),
                input_tokens: 1,
                output_tokens: 1,
            }),
            error: None,
            replayed: false,
        };
        let failed =
            JudgeExchange { request: request("failed"), response: None, error: Some("500".into()), replayed: false };
        let recorded = [answered("first"), failed, answered("second")];
        let mut session =
            JudgeSession::new("llm_judge", Err("no judge is configured".into()), Arc::clone(&counters), &recorded);
        assert_eq!(session.complete(request("same")).unwrap().content, "first");
        assert_eq!(session.complete(request("same")).unwrap().content, "second");
        // Used up, and a recorded error is not an answer: both would need the model.
        let error = session.complete(request("same")).unwrap_err();
        assert!(
            error.contains("not granted to grader llm_judge") && error.contains("no judge is configured"),
            "{error}"
        );
        assert!(session.complete(request("failed")).is_err());
        let exchanges = session.into_exchanges();
        assert_eq!(exchanges.iter().map(|exchange| exchange.replayed).collect::<Vec<_>>(), [true, true, false, false]);
        assert_eq!(counters.snapshot(), JudgeStats { replayed: 2, refused: 2, ..JudgeStats::default() });
    }

    #[test]
    fn a_session_bounds_requests_per_call_and_request_size() {
        let counters = Arc::new(JudgeCounters::default());
        let mut session = JudgeSession::new("g", Err("not allowed".into()), Arc::clone(&counters), &[]);
        let huge = request(&"x".repeat(JudgeConfig::new("", "").request_bytes_max));
        assert!(session.complete(huge).unwrap_err().contains("over the limit"));
        for _ in 0..20 {
            let _ = session.complete(request("again"));
        }
        let exchanges = session.into_exchanges();
        assert_eq!(exchanges[0].request.messages, []);
        // The limit's 8 calls, plus the first refusal over it.
        assert_eq!(exchanges.len(), 9);
        assert!(exchanges[8].error.as_deref().unwrap().contains("over the limit of 8 judge requests"));
    }

    #[test]
    fn config_problems_are_named_and_the_key_is_never_shown() {
        let mut config = JudgeConfig::new("https://api.example.invalid/v1", " ");
        config.allowed = vec!["Bad Name".into()];
        config.api_key = Some("sk-secret".into());
        let problems = config.problems().join("; ");
        assert!(
            problems.contains("https") && problems.contains("model") && problems.contains("Bad Name"),
            "{problems}"
        );
        assert!(!format!("{config:?}").contains("sk-secret"));
        let mut config = JudgeConfig::new("http://127.0.0.1:9000/v1", "m");
        assert!(config.problems().is_empty());
        assert!(!config.allows("llm_judge"));
        config.allowed = vec!["llm_judge".into()];
        assert!(config.allows("llm_judge") && !config.allows("other"));
        config.allowed = vec!["*".into()];
        assert!(config.allows("other"));
    }
}
