//! Calling an agent under evaluation: a target HTTP endpoint that receives
//! `POST {"example_id", "inputs"}` and answers with an agent run (SPEC "Wire
//! formats").
//!
//! The runner calls it once per example from `max_concurrency` worker
//! threads, with a deadline per call and retries with exponential backoff on
//! 5xx, 429, timeouts and broken connections. Whatever goes wrong for one
//! example (a refusal, a timeout after every retry, an answer that is not an
//! agent run) is recorded as that example's agent error and graded as such:
//! it never aborts the evaluation.

use crate::model::{AgentRun, Example};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most worker threads one evaluation may use.
pub const CONCURRENCY_MAX: usize = 256;
/// Most retries of one call.
pub const RETRIES_MAX: u32 = 10;
/// Longest deadline of one call.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// Longest wait between two attempts, whatever the backoff or `Retry-After` says.
pub const BACKOFF_MS_MAX: u64 = 30_000;
/// Largest answer read from the agent.
pub const ANSWER_BYTES_MAX: u64 = 8 << 20;
/// How much of a refusal's body is kept in the recorded error.
const ERROR_BODY_CHARS_MAX: usize = 300;

/// Where the agent is and how to call it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://host:port/path` of the agent.
    pub url: String,
    /// Calls in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Deadline of one call, connection included, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts after the first one, on 5xx, 429, timeouts and broken connections.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry, in milliseconds; doubled for each further one.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    200
}

impl Target {
    /// A target at `url` with the default concurrency, timeout and retries.
    pub fn new(url: impl Into<String>) -> Target {
        Target {
            url: url.into(),
            max_concurrency: default_concurrency(),
            timeout_ms: default_timeout_ms(),
            retries: default_retries(),
            backoff_ms: default_backoff_ms(),
        }
    }

    /// Every problem with the settings, as `(field, reason)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match self.url.split_once("://") {
            Some(("http", rest)) if !rest.is_empty() && !rest.starts_with('/') => {}
            Some(("https", _)) => {
                problems.push(("url", "https targets are not supported by this build; use http".to_owned()))
            }
            _ => problems.push(("url", format!("{:?} is not an http://host[:port]/path URL", self.url))),
        }
        if !(1..=CONCURRENCY_MAX).contains(&self.max_concurrency) {
            problems.push(("max_concurrency", format!("must be 1 to {CONCURRENCY_MAX}")));
        }
        if !(1..=TIMEOUT_MS_MAX).contains(&self.timeout_ms) {
            problems.push(("timeout_ms", format!("must be 1 to {TIMEOUT_MS_MAX}")));
        }
        if self.retries > RETRIES_MAX {
            problems.push(("retries", format!("must be at most {RETRIES_MAX}")));
        }
        if self.backoff_ms > BACKOFF_MS_MAX {
            problems.push(("backoff_ms", format!("must be at most {BACKOFF_MS_MAX}")));
        }
        problems
    }

    /// Calls the agent once for every example and returns one run per
    /// example, in order. `on_done` is told how many calls have finished.
    pub fn run(&self, examples: &[Example], on_done: &(dyn Fn(usize) + Sync)) -> (Vec<AgentRun>, TargetStats) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(self.timeout_ms)))
            .max_idle_connections(self.max_concurrency)
            .max_idle_connections_per_host(self.max_concurrency)
            .max_redirects(0)
            .build()
            .into();
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let attempts = AtomicUsize::new(0);
        let runs: Mutex<Vec<Option<AgentRun>>> = Mutex::new(vec![None; examples.len()]);
        let workers = self.max_concurrency.clamp(1, CONCURRENCY_MAX).min(examples.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(example) = examples.get(index) else { break };
                        let (run, tries) = self.call(&agent, index, example);
                        attempts.fetch_add(tries as usize, Ordering::Relaxed);
                        // A poisoned lock means another worker panicked; its run stays None and
                        // is recorded below as an error, so this one still lands.
                        if let Ok(mut runs) = runs.lock() {
                            runs[index] = Some(run);
                        }
                        on_done(done.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                });
            }
        });
        let runs: Vec<AgentRun> = runs
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .into_iter()
            .zip(examples)
            .map(|(run, example)| {
                run.unwrap_or_else(|| failed_run(example, "the runner lost this call".into(), Duration::ZERO))
            })
            .collect();
        let errors = runs.iter().filter(|run| run.error.is_some()).count();
        let stats = TargetStats { calls: examples.len(), attempts: attempts.into_inner(), agent_errors: errors };
        (runs, stats)
    }

    /// One example: every attempt until an answer, a refusal, or no retries left.
    fn call(&self, agent: &ureq::Agent, index: usize, example: &Example) -> (AgentRun, u32) {
        let example_id = example.id.clone().unwrap_or_default();
        let body = serde_json::json!({"example_id": example_id, "inputs": example.inputs}).to_string();
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = Instant::now();
            let verdict = match agent.post(&self.url).header("content-type", "application/json").send(body.as_bytes()) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok());
                    let text = response.body_mut().with_config().limit(ANSWER_BYTES_MAX).read_to_string();
                    match (status, text) {
                        (200..=299, Ok(text)) => Attempt::Answered(text),
                        (200..=299, Err(ureq::Error::BodyExceedsLimit(limit))) => {
                            Attempt::Refused(format!("the answer is over the limit of {limit} bytes"))
                        }
                        (200..=299, Err(error)) => {
                            Attempt::Retry(format!("the answer could not be read: {error}"), None)
                        }
                        (429 | 500..=599, text) => {
                            Attempt::Retry(format!("HTTP {status}{}", snippet(text.ok())), retry_after)
                        }
                        (_, text) => Attempt::Refused(format!("HTTP {status}{}", snippet(text.ok()))),
                    }
                }
                Err(ureq::Error::Timeout(_)) => {
                    Attempt::Retry(format!("no answer within {} ms", self.timeout_ms), None)
                }
                Err(error) => Attempt::Retry(error.to_string(), None),
            };
            match verdict {
                Attempt::Answered(text) => return (answered(example, &example_id, &text, sent.elapsed()), attempt),
                Attempt::Refused(reason) => {
                    return (failed_run(example, format!("the agent refused: {reason}"), started.elapsed()), attempt);
                }
                Attempt::Retry(reason, _) if attempt > self.retries => {
                    let tries = if attempt == 1 { "1 attempt".to_owned() } else { format!("{attempt} attempts") };
                    let message = format!("the agent failed after {tries}: {reason}");
                    return (failed_run(example, message, started.elapsed()), attempt);
                }
                Attempt::Retry(_, retry_after) => {
                    std::thread::sleep(self.backoff(index, attempt, retry_after));
                }
            }
        }
    }

    /// The wait before attempt `attempt + 1`: the server's `Retry-After` when
    /// it gave one, else the backoff doubled per attempt with up to 25% jitter
    /// (so workers that failed together do not retry together), capped.
    fn backoff(&self, index: usize, attempt: u32, retry_after_seconds: Option<u64>) -> Duration {
        let milliseconds = match retry_after_seconds {
            Some(seconds) => seconds.saturating_mul(1_000),
            None => {
                let base = self.backoff_ms.saturating_mul(1 << (attempt - 1).min(16));
                let spread = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(attempt) % 1_000;
                base + base / 4 * spread / 1_000
            }
        };
        Duration::from_millis(milliseconds.min(BACKOFF_MS_MAX))
    }
}

/// What the runner did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TargetStats {
    pub calls: usize,
    /// Calls plus retries.
    pub attempts: usize,
    /// Examples recorded with an agent error.
    pub agent_errors: usize,
}

enum Attempt {
    Answered(String),
    /// Not worth retrying: the agent said no (4xx).
    Refused(String),
    /// Worth retrying, with the server's `Retry-After` in seconds.
    Retry(String, Option<u64>),
}

/// The agent's answer as a run of `example`, or an agent error saying why it is not one.
fn answered(example: &Example, example_id: &str, text: &str, latency: Duration) -> AgentRun {
    match AgentRun::from_json(text) {
        Ok(mut run) => match run.example_id.as_deref() {
            Some(answered_for) if answered_for != example_id => failed_run(
                example,
                format!("the agent answered for example {answered_for:?}, not {example_id:?}"),
                latency,
            ),
            _ => {
                run.example_id = Some(example_id.to_owned());
                run.latency_ms.get_or_insert(latency.as_millis() as u64);
                run
            }
        },
        Err(error) => failed_run(example, format!("the agent's answer is not an agent run: {error}"), latency),
    }
}

fn failed_run(example: &Example, error: String, latency: Duration) -> AgentRun {
    AgentRun {
        example_id: example.id.clone(),
        error: Some(error),
        latency_ms: Some(latency.as_millis() as u64),
        ..AgentRun::default()
    }
}

/// `: <start of the body>` for an error message, or nothing.
fn snippet(body: Option<String>) -> String {
    match body {
        Some(body) if !body.trim().is_empty() => {
            let body = body.trim().replace(['\n', '\r'], " ");
            match body.char_indices().nth(ERROR_BODY_CHARS_MAX) {
                Some((cut, _)) => format!(": {}…", &body[..cut]),
                None => format!(": {body}"),
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_the_field_named() {
        assert!(Target::new("http://127.0.0.1:8700/agent").problems().is_empty());
        let bad = Target { url: "ftp://x".into(), max_concurrency: 0, timeout_ms: 0, retries: 99, backoff_ms: 1 << 40 };
        let fields: Vec<&str> = bad.problems().iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["url", "max_concurrency", "timeout_ms", "retries", "backoff_ms"]);
        for url in ["http://", "http:///path", "127.0.0.1:80", "https://example.com"] {
            assert_eq!(Target::new(url).problems().len(), 1, "{url}");
        }
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_honours_retry_after() {
        let target = Target { backoff_ms: 100, ..Target::new("http://a") };
        for index in 0..50 {
            for attempt in 1..=4u32 {
                let base = 100u64 << (attempt - 1);
                let wait = target.backoff(index, attempt, None).as_millis() as u64;
                assert!((base..=base + base / 4).contains(&wait), "index {index} attempt {attempt}: {wait}");
            }
        }
        assert_eq!(target.backoff(0, 1, Some(2)), Duration::from_secs(2));
        assert_eq!(target.backoff(0, 1, Some(u64::MAX)), Duration::from_millis(BACKOFF_MS_MAX));
        assert_eq!(target.backoff(0, 40, None), Duration::from_millis(BACKOFF_MS_MAX));
    }

    #[test]
    fn refusal_bodies_are_shortened_on_a_character_boundary() {
        assert_eq!(snippet(None), "");
        assert_eq!(snippet(Some("  \n".into())), "");
        assert_eq!(snippet(Some("bad\nrequest".into())), ": bad request");
        let long = "é".repeat(ERROR_BODY_CHARS_MAX + 10);
        assert_eq!(snippet(Some(long)).chars().count(), ERROR_BODY_CHARS_MAX + 3);
    }
}
