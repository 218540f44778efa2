//! Production traces: the wire format of SPEC "Wire formats" (an agent run
//! with its inputs, times, tags, metadata and feedback), the LangSmith filter
//! language used to mine them, and the OpenTelemetry GenAI mapping.
//!
//! Knows serde and the wire model only: storage is `store::traces`, HTTP is
//! `api::traces`.

pub mod filter;
pub mod otlp;

pub use filter::parse_rfc3339_ms;

use crate::model::{FieldError, Inputs, Message, ROLES, RunOutputs};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One production trace: what the agent saw, what it did, and what users said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Stable id given by the sender; ingest is idempotent by it.
    pub id: String,
    /// The project (agent surface) the trace belongs to, e.g. `prod-voice-agent`.
    /// May be left out when the batch names a default project.
    #[serde(default)]
    pub project: String,
    /// The run's name (agent or chain name), when the sender gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339.
    pub start_time: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub inputs: Inputs,
    #[serde(default)]
    pub outputs: RunOutputs,
    /// Derived from the times when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, deserialize_with = "crate::model::error_text", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<Feedback>,
}

/// One piece of feedback on a trace: a user's thumbs, a judge's score, a reviewer's note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// A non-numeric value (a label, a correction), kept as it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Longest trace id, in bytes.
pub const TRACE_ID_BYTES_MAX: usize = 256;
/// Longest project name, in bytes (the rules of dataset names).
pub const PROJECT_NAME_BYTES_MAX: usize = 128;
/// Most tags on one trace.
pub const TAGS_PER_TRACE_MAX: usize = 64;
/// Longest tag, in bytes.
pub const TAG_BYTES_MAX: usize = 128;
/// Most feedback entries on one trace.
pub const FEEDBACK_PER_TRACE_MAX: usize = 1_000;
/// Longest feedback key, in bytes.
pub const FEEDBACK_KEY_BYTES_MAX: usize = 128;

impl Trace {
    /// Checks the rules the types alone do not express, naming every refused
    /// field: id 1 to 256 bytes without NUL, a valid project name, RFC 3339
    /// times with `end_time >= start_time`, known message roles, bounded
    /// tags, and feedback with a non-empty key and a finite score.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut refuse = |field: String, reason: String| errors.push(FieldError { field, reason });
        if self.id.is_empty() || self.id.len() > TRACE_ID_BYTES_MAX {
            refuse("id".into(), format!("must be 1 to {TRACE_ID_BYTES_MAX} bytes"));
        } else if self.id.contains('\0') {
            refuse("id".into(), "must not contain the NUL character".into());
        }
        if let Some(reason) = project_name_problem(&self.project) {
            refuse("project".into(), reason);
        }
        let start = parse_rfc3339_ms(&self.start_time);
        if start.is_none() {
            refuse("start_time".into(), format!("{:?} is not an RFC 3339 time", self.start_time));
        }
        if let Some(end_time) = &self.end_time {
            match (start, parse_rfc3339_ms(end_time)) {
                (_, None) => refuse("end_time".into(), format!("{end_time:?} is not an RFC 3339 time")),
                (Some(start), Some(end)) if end < start => {
                    refuse("end_time".into(), "must not be before start_time".into())
                }
                _ => {}
            }
        }
        for (list, messages) in
            [("inputs.messages", &self.inputs.messages), ("outputs.messages", &self.outputs.messages)]
        {
            for (index, message) in messages.iter().enumerate() {
                if !ROLES.contains(&message.role.as_str()) {
                    refuse(
                        format!("{list}[{index}].role"),
                        format!("unknown role {:?}; expected one of {}", message.role, ROLES.join(", ")),
                    );
                }
            }
        }
        if self.tags.len() > TAGS_PER_TRACE_MAX {
            refuse("tags".into(), format!("{} tags; at most {TAGS_PER_TRACE_MAX}", self.tags.len()));
        }
        for (index, tag) in self.tags.iter().enumerate() {
            if tag.trim().is_empty() || tag.len() > TAG_BYTES_MAX {
                refuse(format!("tags[{index}]"), format!("must be non-empty text of at most {TAG_BYTES_MAX} bytes"));
            }
        }
        if self.feedback.len() > FEEDBACK_PER_TRACE_MAX {
            refuse("feedback".into(), format!("{} entries; at most {FEEDBACK_PER_TRACE_MAX}", self.feedback.len()));
        }
        for (index, feedback) in self.feedback.iter().enumerate() {
            if let Err(problem) = feedback.validate() {
                refuse(format!("feedback[{index}].{}", problem.field), problem.reason);
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// `start_time` in milliseconds since the Unix epoch, if it is RFC 3339.
    pub fn start_ms(&self) -> Option<i64> {
        parse_rfc3339_ms(&self.start_time)
    }

    /// `end_time` in milliseconds since the Unix epoch, if given and RFC 3339.
    pub fn end_ms(&self) -> Option<i64> {
        self.end_time.as_deref().and_then(parse_rfc3339_ms)
    }

    /// Fills `latency_ms` from the times when the sender did not give it.
    pub fn derive_latency(&mut self) {
        if self.latency_ms.is_none()
            && let (Some(start), Some(end)) = (self.start_ms(), self.end_ms())
        {
            self.latency_ms = u64::try_from(end - start).ok();
        }
    }

    /// Adds the entries of `feedback` this trace does not already carry
    /// (identical entries are kept once); returns how many were added.
    pub fn merge_feedback(&mut self, feedback: &[Feedback]) -> usize {
        let mut added = 0;
        for entry in feedback {
            if !self.feedback.contains(entry) {
                self.feedback.push(entry.clone());
                added += 1;
            }
        }
        added
    }

    /// The conversation's messages, inputs then outputs.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.inputs.messages.iter().chain(&self.outputs.messages)
    }
}

impl Feedback {
    /// A non-empty key of at most 128 bytes and a finite score; the field
    /// of the error is relative to the entry (`key`, `score`).
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.key.trim().is_empty() || self.key.len() > FEEDBACK_KEY_BYTES_MAX {
            return Err(FieldError {
                field: "key".into(),
                reason: format!("must be non-empty text of at most {FEEDBACK_KEY_BYTES_MAX} bytes"),
            });
        }
        if let Some(score) = self.score
            && !score.is_finite()
        {
            return Err(FieldError { field: "score".into(), reason: "must be a finite number".into() });
        }
        Ok(())
    }
}

/// Why `name` cannot be a project name, if it cannot: the rules of dataset
/// names (1–128 of `[a-z0-9_.-]`, starting with a letter or digit).
pub fn project_name_problem(name: &str) -> Option<String> {
    let starts_well = name.bytes().next().is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
    let characters_allowed =
        name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_.-".contains(&byte));
    if name.is_empty() {
        Some("is missing: give it on the trace or as the batch's project".into())
    } else if name.len() > PROJECT_NAME_BYTES_MAX {
        Some(format!("must be 1 to {PROJECT_NAME_BYTES_MAX} characters"))
    } else if !characters_allowed || !starts_well {
        Some("must use only a-z, 0-9, '_', '.' and '-', and start with a letter or digit".into())
    } else {
        None
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with
/// millisecond precision, e.g. `2025-06-01T09:30:00.250Z`.
pub fn format_rfc3339_ms(milliseconds: i64) -> String {
    let seconds = milliseconds.div_euclid(1_000);
    let millisecond = milliseconds.rem_euclid(1_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millisecond:03}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trace(value: Value) -> Trace {
        serde_json::from_value(value).expect("a trace")
    }

    #[test]
    fn rfc3339_times_parse_and_format() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2025-06-01T09:30:00Z", Some(1_748_770_200_000)),
            ("2025-06-01T11:30:00.250+02:00", Some(1_748_770_200_250)),
            ("2025-06-01t09:30:00.1234567z", Some(1_748_770_200_123)),
            ("2025-06-01 09:30:00-01:30", Some(1_748_775_600_000)),
            ("2024-02-29T23:59:59Z", Some(1_709_251_199_000)),
            ("1969-12-31T23:59:59.500Z", Some(-500)),
            ("2023-02-29T00:00:00Z", None),
            ("2025-13-01T00:00:00Z", None),
            ("2025-06-01T24:00:00Z", None),
            ("2025-06-01T09:30:00", None),
            ("2025-06-01T09:30:00.Z", None),
            ("2025-06-01T09:30:00+0200", None),
            ("2025-06-01", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rfc3339_ms(text), *expected, "{text}");
        }
        for milliseconds in [0, 1_748_770_200_250, -500, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(milliseconds)), Some(milliseconds));
        }
        assert_eq!(format_rfc3339_ms(1_748_770_200_250), "2025-06-01T09:30:00.250Z");
    }

    #[test]
    fn validation_names_every_refused_field() {
        let bad = trace(json!({
            "id": "", "project": "Bad Project", "start_time": "2025-06-01T09:30:00Z",
            "end_time": "2025-06-01T09:29:00Z",
            "inputs": {"messages": [{"role": "robot", "content": "x"}]},
            "outputs": {"messages": [{"role": "narrator", "content": "y"}]},
            "tags": [""],
            "feedback": [{"key": "", "score": 1}, {"key": "user_score", "score": 2}]
        }));
        let errors = bad.validate().expect_err("refused");
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "id",
                "project",
                "end_time",
                "inputs.messages[0].role",
                "outputs.messages[0].role",
                "tags[0]",
                "feedback[0].key"
            ]
        );
        let good = trace(json!({
            "id": "t1", "project": "triage-agent", "start_time": "2025-06-01T09:30:00Z",
            "end_time": "2025-06-01T09:30:02.5Z", "inputs": {"messages": [{"role": "user", "content": "hi"}]}
        }));
        good.validate().expect("valid");
        let mut derived = good.clone();
        derived.derive_latency();
        assert_eq!(derived.latency_ms, Some(2_500));
        let missing_project = Trace { project: String::new(), ..good };
        assert!(missing_project.validate().expect_err("refused")[0].reason.contains("missing"));
    }

    #[test]
    fn feedback_merges_without_repeats() {
        let mut merged = trace(json!({"id": "t", "project": "p", "start_time": "2025-06-01T09:30:00Z",
            "inputs": {"messages": []}, "feedback": [{"key": "user_score", "score": 1}]}));
        let more: Vec<Feedback> = serde_json::from_value(json!([
            {"key": "user_score", "score": 1}, {"key": "user_score", "score": 2}, {"key": "note", "comment": "slow"}
        ]))
        .expect("feedback");
        assert_eq!(merged.merge_feedback(&more), 2);
        assert_eq!(merged.merge_feedback(&more), 0);
        assert_eq!(merged.feedback.len(), 3);
    }
}
