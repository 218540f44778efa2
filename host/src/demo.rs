//! The scripted demo agent: an after-hours triage agent for the demo golden
//! dataset, in two revisions, so the README tour has something real to
//! evaluate, compare and gate. `assay demo-agent` serves it as a target
//! endpoint.
//!
//! It routes on keywords of the caller's last message. Revision `v1` pages
//! the on-call physician for emergencies and schedules a callback; `v2` (a
//! "shorter prompt") stops scheduling the callback after paging, reassures
//! non-urgent callers with a phrase the compliance team forbids, and pages for
//! post-operative incision pain: some examples regress, one improves.

use crate::model::{AgentRun, Inputs, Message, RunOutputs, ToolCall};
use serde_json::json;

/// The revisions `answer` knows.
pub const REVISIONS: &[&str] = &["v1", "v2"];

/// Words of the caller's message that make a call urgent.
const EMERGENCIES: &[&str] =
    &["fever", "chest pain", "bleeding", "seizure", "breathing", "weakness", "unconscious", "104"];
/// Words of an administrative call.
const ADMINISTRATIVE: &[&str] = &["billing", "opens", "appointment", "refill", "lab results", "hours"];

/// What the agent answers to `inputs` in `revision` (`v1` or `v2`).
pub fn answer(revision: &str, example_id: Option<String>, inputs: &Inputs) -> AgentRun {
    let said = inputs
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .map(|message| message.content.to_lowercase())
        .unwrap_or_default();
    let context = inputs.context.clone().unwrap_or(json!({}));
    let clinic = context.get("clinic_id").cloned().unwrap_or(json!("unknown"));
    let emergency = EMERGENCIES.iter().any(|word| said.contains(word)) && !said.contains("three days")
        || said.contains("fever for 3 days");
    let incision = said.contains("incision");
    let administrative = ADMINISTRATIVE.iter().any(|word| said.contains(word));
    let v2 = revision == "v2";
    let call = |name: &str, args: serde_json::Value| ToolCall { id: None, name: name.to_owned(), args };
    let (calls, text) = if emergency || (v2 && incision) {
        let mut calls = vec![call("page_on_call", json!({"clinic_id": clinic, "reason": said}))];
        if !v2 {
            calls.push(call("schedule_callback", json!({"clinic_id": clinic, "within_minutes": 15})));
        }
        (calls, "I'm paging the on-call physician now. Please stay on the line.")
    } else if administrative {
        (
            vec![
                call("lookup_clinic_hours", json!({"clinic_id": clinic})),
                call("schedule_callback", json!({"clinic_id": clinic, "within_minutes": 240})),
            ],
            "I've sent you the clinic hours and scheduled a callback from the front desk.",
        )
    } else if v2 {
        (
            vec![call("schedule_callback", json!({"clinic_id": clinic, "within_minutes": 60}))],
            "There's no need to worry. A nurse will call you back within the hour.",
        )
    } else {
        (
            vec![
                call("schedule_callback", json!({"clinic_id": clinic, "within_minutes": 60})),
                call("lookup_clinic_hours", json!({"clinic_id": clinic})),
            ],
            "I've scheduled a callback from the nurse line within the hour and sent you the clinic hours.",
        )
    };
    AgentRun {
        example_id,
        outputs: RunOutputs {
            messages: vec![Message {
                role: "assistant".into(),
                content: text.into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
                name: None,
            }],
            tool_calls: Some(calls),
            extra: Default::default(),
        },
        latency_ms: None,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(said: &str) -> Inputs {
        serde_json::from_value(json!({"messages": [{"role": "user", "content": said}], "context": {"clinic_id": "c1"}}))
            .unwrap()
    }

    fn tools(run: &AgentRun) -> Vec<&str> {
        run.tool_calls().iter().map(|call| call.name.as_str()).collect()
    }

    #[test]
    fn v1_pages_for_emergencies_and_v2_drops_the_callback() {
        let chest = inputs("I'm calling about chest pain that started an hour ago.");
        assert_eq!(tools(&answer("v1", None, &chest)), ["page_on_call", "schedule_callback"]);
        assert_eq!(tools(&answer("v2", None, &chest)), ["page_on_call"]);
        let billing = inputs("A billing question about my last visit.");
        assert_eq!(tools(&answer("v1", None, &billing)), ["lookup_clinic_hours", "schedule_callback"]);
        let earache = inputs("A bad earache.");
        assert!(answer("v2", None, &earache).outputs.messages[0].content.contains("no need to worry"));
        assert!(!answer("v1", None, &earache).outputs.messages[0].content.contains("no need to worry"));
        let incision = inputs("Pain around the incision.");
        assert_eq!(tools(&answer("v1", None, &incision)), ["schedule_callback", "lookup_clinic_hours"]);
        assert_eq!(tools(&answer("v2", None, &incision)), ["page_on_call"]);
        assert_eq!(answer("v1", Some("e1".into()), &incision).example_id.as_deref(), Some("e1"));
    }
}
