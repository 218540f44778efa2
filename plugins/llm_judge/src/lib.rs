//! `llm_judge`: a language model grades the agent's reply against a rubric
//! (LLM-as-judge), through the host's `judge` capability.
//!
//! The prompt holds the rubric, the conversation, the agent's reply and tool
//! calls, the retrieved context and the SME's reference when the example has
//! them. The model is asked to reason briefly and end with a line
//! `SCORE: <number between 0 and 1>`; `Score: 7/10`, `8 out of 10` and `80%`
//! are read too. Score key `judge_score`, with the model's reasoning as the
//! comment. With a `threshold` in the config it becomes 1.0 or 0.0 against
//! that pass mark, the model's score staying in the comment.
//!
//! The host must grant the judge to this grader (`--judge-allow llm_judge`);
//! otherwise, or when the model fails or answers without a readable score,
//! the grade is a `grader_error` naming the reason.

use assay_sdk::judge::{self, ChatMessage, JudgeRequest};
use assay_sdk::{Case, GradeError, Grader, GraderInfo, Message, Reference, Score};
use serde::{Deserialize, Deserializer};

/// The grader.
pub struct LlmJudge;

/// Configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What a good reply does, in the grader's own words.
    #[serde(deserialize_with = "non_empty")]
    pub rubric: String,
    /// When set, `judge_score` is 1.0 if the model's score reaches it and 0.0 otherwise.
    #[serde(default, deserialize_with = "threshold_in_unit_interval")]
    pub threshold: Option<f64>,
}

/// The score key.
pub const JUDGE_SCORE: &str = "judge_score";

/// Longest piece of one message, the context or the reference quoted in the prompt, in characters.
const QUOTED_CHARACTERS_MAX: usize = 8_000;
/// Longest reasoning kept in the comment, in characters.
const COMMENT_CHARACTERS_MAX: usize = 4_000;
/// Longest answer quoted in an error, in characters.
const QUOTED_ANSWER_CHARACTERS_MAX: usize = 500;
/// Tokens the model may use for its reasoning and score.
const ANSWER_TOKENS_MAX: u32 = 1_024;

const INSTRUCTIONS: &str = "You are a strict, fair evaluator of an AI agent's reply. Judge the agent's \
reply against the rubric only, using the conversation, the agent's tool calls, the context and the \
reference answer when given. Explain your judgement in a few sentences, then end with a line of exactly \
this form:\nSCORE: <number between 0 and 1>\nwhere 1 means the rubric is fully met and 0 not at all.";

impl Grader for LlmJudge {
    type Config = Config;

    fn info() -> GraderInfo {
        GraderInfo::new("llm_judge", env!("CARGO_PKG_VERSION"))
            .describe(
                "Asks the host's judge model to grade the agent's reply against a rubric; \
                 reads the score from the model's answer.",
            )
            .score_keys(&[JUDGE_SCORE])
            .capabilities(&["judge"])
            .config_schema(serde_json::json!({
                "type": "object",
                "properties": {
                    "rubric": {"description": "What a good reply does.", "type": "string", "minLength": 1},
                    "threshold": {
                        "description": "When set, judge_score is 1 if the model's score reaches it, else 0.",
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1
                    }
                },
                "required": ["rubric"],
                "additionalProperties": false
            }))
    }

    fn grade(case: &Case, config: &Config) -> Result<Vec<Score>, GradeError> {
        if let Some(error) = &case.run.error
            && case.final_answer().is_none()
            && case.run.tool_calls.is_empty()
        {
            // Nothing to judge: the model is not asked (and not paid).
            return Ok(vec![Score::fail(JUDGE_SCORE, format!("the agent failed: {}", clip(error, 500)))]);
        }
        let request =
            JudgeRequest::new(vec![ChatMessage::system(INSTRUCTIONS), ChatMessage::user(&prompt(case, config))])
                .temperature(0.0)
                .max_tokens(ANSWER_TOKENS_MAX);
        let answer =
            judge::complete(&request).map_err(|error| GradeError::Failed(format!("the judge failed: {error}")))?;
        let verdict = parse_verdict(&answer.content).map_err(GradeError::Failed)?;
        let reasoning = clip(&verdict.reasoning, COMMENT_CHARACTERS_MAX);
        let score = match config.threshold {
            None if reasoning.is_empty() => Score::new(JUDGE_SCORE, verdict.score),
            None => Score::new(JUDGE_SCORE, verdict.score).with_comment(reasoning),
            Some(threshold) => {
                let passed = verdict.score >= threshold;
                let mark = if passed { ">=" } else { "<" };
                Score::new(JUDGE_SCORE, if passed { 1.0 } else { 0.0 })
                    .with_comment(format!("judge score {} {mark} threshold {threshold}: {reasoning}", verdict.score))
            }
        };
        Ok(vec![score])
    }
}

assay_sdk::export_judge_grader!(LlmJudge);

/// The model's score in [0, 1] and the text before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    pub reasoning: String,
}

/// The user turn: rubric, conversation, the agent's reply and tool calls,
/// context and reference when present.
pub fn prompt(case: &Case, config: &Config) -> String {
    let mut prompt = format!("## Rubric\n{}\n\n## Conversation before the agent's reply\n", config.rubric.trim());
    push_messages(&mut prompt, &case.example.messages);
    let context = case.example.context.trim();
    if !context.is_empty() && context != "null" {
        prompt.push_str(&format!(
            "\n## Context available to the agent (JSON)\n{}\n",
            clip(context, QUOTED_CHARACTERS_MAX)
        ));
    }
    prompt.push_str("\n## The agent's reply\n");
    if case.run.messages.is_empty() {
        prompt.push_str("(no messages)\n");
    }
    push_messages(&mut prompt, &case.run.messages);
    let calls_in_messages = case.run.messages.iter().any(|message| !message.tool_calls.is_empty());
    if !case.run.tool_calls.is_empty() && !calls_in_messages {
        prompt.push_str("\n## The agent's tool calls, in order\n");
        for call in &case.run.tool_calls {
            prompt.push_str(&format!("- {}({})\n", call.name, clip(&call.arguments, QUOTED_CHARACTERS_MAX)));
        }
    }
    if let Some(error) = &case.run.error {
        prompt.push_str(&format!("\nThe agent reported an error: {}\n", clip(error, QUOTED_CHARACTERS_MAX)));
    }
    match &case.example.reference {
        Some(Reference::Text(text)) => prompt
            .push_str(&format!("\n## Reference answer written by an expert\n{}\n", clip(text, QUOTED_CHARACTERS_MAX))),
        Some(Reference::Structured(json)) => prompt
            .push_str(&format!("\n## Reference written by an expert (JSON)\n{}\n", clip(json, QUOTED_CHARACTERS_MAX))),
        None => {}
    }
    prompt
        .push_str("\nGrade the agent's reply against the rubric. End with the line `SCORE: <number between 0 and 1>`.");
    prompt
}

fn push_messages(prompt: &mut String, messages: &[Message]) {
    for message in messages {
        let speaker = match &message.name {
            Some(name) => format!("{} ({name})", message.role),
            None => message.role.clone(),
        };
        if !message.content.trim().is_empty() {
            prompt.push_str(&format!("[{speaker}] {}\n", clip(message.content.trim(), QUOTED_CHARACTERS_MAX)));
        }
        for call in &message.tool_calls {
            prompt.push_str(&format!(
                "[{speaker} calls tool] {}({})\n",
                call.name,
                clip(&call.arguments, QUOTED_CHARACTERS_MAX)
            ));
        }
    }
}

/// Reads the score from the model's answer: the last `score` label followed
/// by a number (`SCORE: 0.8`, `**Score:** 7/10`, `Score = 80%`, `score: 8 out
/// of 10`), else the last `N/M` or `N out of M` anywhere. A number above 1
/// needs a scale (`/10`, `out of 10`, `%`). The reasoning is the answer
/// without the line that holds the score.
pub fn parse_verdict(answer: &str) -> Result<Verdict, String> {
    let unreadable = |why: &str| {
        format!(
            "could not read a score in the judge's answer ({why}): {:?}",
            clip(answer.trim(), QUOTED_ANSWER_CHARACTERS_MAX)
        )
    };
    // Lowercasing may change the byte length of a few characters; positions
    // are mapped back to the answer by line, and lines are kept.
    let lowered = answer.to_lowercase();
    let labelled = lowered.rmatch_indices("score").find_map(|(at, _)| {
        let after = &lowered[at + "score".len()..];
        let after =
            after.trim_start_matches(|character: char| character.is_whitespace() || "*_`#:=-".contains(character));
        let after = after.strip_prefix("is").map_or(after, |rest| rest.trim_start());
        read_fraction(after).map(|fraction| (at, fraction))
    });
    let found = labelled.or_else(|| {
        lowered.char_indices().rev().filter(|(_, character)| character.is_ascii_digit()).find_map(|(at, _)| {
            let starts_number =
                !lowered[..at].ends_with(|character: char| character.is_ascii_digit() || character == '.');
            let fraction = read_fraction(&lowered[at..]).filter(|fraction| fraction.scale.is_some());
            if starts_number { fraction.map(|fraction| (at, fraction)) } else { None }
        })
    });
    let Some((at, fraction)) = found else {
        return Err(unreadable("no score found"));
    };
    let score = match fraction.scale {
        Some(Scale::OutOf(denominator)) if denominator > 0.0 => fraction.value / denominator,
        Some(Scale::OutOf(_)) => return Err(unreadable("a score out of 0")),
        Some(Scale::Percent) => fraction.value / 100.0,
        None => fraction.value,
    };
    if !(0.0..=1.0).contains(&score) {
        return Err(unreadable(&format!("{score} is outside [0, 1]")));
    }
    let line = lowered[..at].matches('\n').count();
    let reasoning: Vec<&str> =
        answer.lines().enumerate().filter(|(index, _)| *index != line).map(|(_, text)| text).collect();
    Ok(Verdict { score, reasoning: reasoning.join("\n").trim().to_owned() })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    OutOf(f64),
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Fraction {
    value: f64,
    scale: Option<Scale>,
}

/// A number at the start of `text`, with its scale when one follows.
fn read_fraction(text: &str) -> Option<Fraction> {
    let (value, rest) = read_number(text)?;
    let trimmed = rest.trim_start();
    let scale = if let Some(after) = trimmed.strip_prefix('/') {
        read_number(after.trim_start()).map(|(denominator, _)| Scale::OutOf(denominator))
    } else if let Some(after) = trimmed.strip_prefix("out of") {
        read_number(after.trim_start()).map(|(denominator, _)| Scale::OutOf(denominator))
    } else if rest.starts_with('%') {
        Some(Scale::Percent)
    } else {
        None
    };
    Some(Fraction { value, scale })
}

/// A decimal number (`8`, `0.75`, `.5`) at the start of `text`, and the rest.
fn read_number(text: &str) -> Option<(f64, &str)> {
    let bytes = text.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end < bytes.len() && bytes[end] == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
    }
    if end == 0 {
        return None;
    }
    let number = if bytes[0] == b'.' { format!("0{}", &text[..end]) } else { text[..end].to_owned() };
    Some((number.parse().ok()?, &text[end..]))
}

/// `text` cut to `characters_max` characters, with a mark when cut.
fn clip(text: &str, characters_max: usize) -> String {
    match text.char_indices().nth(characters_max) {
        Some((cut, _)) => format!("{}… [cut]", &text[..cut]),
        None => text.to_owned(),
    }
}

fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Err(serde::de::Error::custom("rubric must say what a good reply does"));
    }
    Ok(text)
}

fn threshold_in_unit_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let threshold = Option::<f64>::deserialize(deserializer)?;
    match threshold {
        Some(value) if !(0.0..=1.0).contains(&value) => {
            Err(serde::de::Error::custom(format!("threshold must be a number in [0, 1], got {value}")))
        }
        _ => Ok(threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_sdk::testing::{case, judge_response, with_judge};
    use std::cell::RefCell;
    use std::rc::Rc;

    const EXAMPLE: &str = r#"{
        "id": "e1",
        "inputs": {"messages": [{"role": "system", "content": "You are a triage agent."},
                                {"role": "user", "content": "My child has a fever of 40C."}],
                   "context": {"clinic_id": "clinic_482"}},
        "outputs": {"reference": "I'm paging the on-call physician now."}
    }"#;
    const RUN: &str = r#"{
        "outputs": {"messages": [{"role": "assistant", "content": "I'm paging the doctor on call right away."}],
                    "tool_calls": [{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]}
    }"#;

    fn config(threshold: Option<f64>) -> Config {
        Config { rubric: "The agent escalates a high fever to a physician.".into(), threshold }
    }

    /// Grades the fixture with a judge that answers `answer`, returning the result and what it was asked.
    fn grade_with(
        answer: Result<&str, &str>,
        threshold: Option<f64>,
    ) -> (Result<Vec<Score>, GradeError>, Vec<JudgeRequest>) {
        let asked = Rc::new(RefCell::new(Vec::new()));
        let seen = Rc::clone(&asked);
        let answer = answer.map(str::to_owned).map_err(str::to_owned);
        let result = with_judge(
            move |request| {
                seen.borrow_mut().push(request.clone());
                answer.clone().map(|content| judge_response(&content))
            },
            || LlmJudge::grade(&case(EXAMPLE, RUN), &config(threshold)),
        );
        let asked = asked.borrow().clone();
        (result, asked)
    }

    #[test]
    fn the_prompt_holds_rubric_conversation_reply_tools_context_and_reference() {
        let (result, asked) = grade_with(Ok("Escalated at once.\nSCORE: 0.9"), None);
        let scores = result.unwrap();
        assert_eq!(scores.len(), 1);
        assert_eq!((scores[0].key.as_str(), scores[0].value), (JUDGE_SCORE, 0.9));
        assert_eq!(scores[0].comment.as_deref(), Some("Escalated at once."));
        let [request] = asked.as_slice() else { panic!("one request, got {asked:?}") };
        assert_eq!((request.temperature, request.max_tokens), (Some(0.0), Some(ANSWER_TOKENS_MAX)));
        assert_eq!(request.messages[0].role, "system");
        assert!(request.messages[0].content.contains("SCORE: <number between 0 and 1>"));
        let user = &request.messages[1].content;
        for expected in [
            "The agent escalates a high fever to a physician.",
            "[user] My child has a fever of 40C.",
            "[system] You are a triage agent.",
            "[assistant] I'm paging the doctor on call right away.",
            r#"page_on_call({"clinic_id":"clinic_482"})"#,
            "I'm paging the on-call physician now.",
            "clinic_482",
        ] {
            assert!(user.contains(expected), "the prompt lacks {expected:?}:\n{user}");
        }
    }

    #[test]
    fn a_threshold_makes_the_score_pass_or_fail() {
        let (passed, _) = grade_with(Ok("Good.\nScore: 8/10"), Some(0.7));
        let passed = passed.unwrap();
        assert_eq!(passed[0].value, 1.0);
        assert!(passed[0].comment.as_deref().unwrap().starts_with("judge score 0.8 >= threshold 0.7"), "{passed:?}");
        let (failed, _) = grade_with(Ok("Meh.\nSCORE: 0.5"), Some(0.7));
        assert_eq!(failed.unwrap()[0].value, 0.0);
    }

    #[test]
    fn judge_errors_and_unreadable_answers_are_grader_failures() {
        let (result, _) = grade_with(Err("the model did not answer within 100 ms"), None);
        assert!(
            matches!(&result, Err(GradeError::Failed(message)) if message.contains("did not answer within")),
            "{result:?}"
        );
        let (result, _) = grade_with(Ok("I would rather not say."), None);
        assert!(
            matches!(&result, Err(GradeError::Failed(message)) if message.contains("I would rather not say")),
            "{result:?}"
        );
    }

    #[test]
    fn without_a_judge_the_grade_fails_with_the_reason() {
        let result = LlmJudge::grade(&case(EXAMPLE, RUN), &config(None));
        assert!(matches!(&result, Err(GradeError::Failed(message)) if message.contains("no judge")), "{result:?}");
    }

    #[test]
    fn a_failed_agent_run_scores_zero_without_asking() {
        let run = r#"{"outputs": {"messages": []}, "error": "HTTP 500"}"#;
        let result = with_judge(
            |_| panic!("the judge must not be asked"),
            || LlmJudge::grade(&case(EXAMPLE, run), &config(None)),
        );
        let scores = result.unwrap();
        assert_eq!(scores[0].value, 0.0);
        assert!(scores[0].comment.as_deref().unwrap().contains("HTTP 500"));
    }

    #[test]
    fn scores_are_read_in_every_usual_form() {
        let cases: &[(&str, f64)] = &[
            ("Fine.\nSCORE: 0.75", 0.75),
            ("SCORE: 1", 1.0),
            ("Score: 7/10", 0.7),
            ("I give it 8 out of 10.", 0.8),
            ("**Score:** 0.4.", 0.4),
            ("score = .5", 0.5),
            ("Final score: 80%", 0.8),
            ("A score of 0.2 would be harsh.\nSCORE: 0.9", 0.9),
            ("score is 3 / 4", 0.75),
            ("Verdict: 9/10", 0.9),
            ("SCORE: 0", 0.0),
        ];
        for (answer, expected) in cases {
            let verdict = parse_verdict(answer).unwrap_or_else(|error| panic!("{answer:?}: {error}"));
            assert!((verdict.score - expected).abs() < 1e-12, "{answer:?}: {} != {expected}", verdict.score);
        }
        let verdict = parse_verdict("The reply pages the doctor.\nIt is calm.\nSCORE: 0.9").unwrap();
        assert_eq!(verdict.reasoning, "The reply pages the doctor.\nIt is calm.");
    }

    #[test]
    fn unreadable_scores_are_refused_with_the_text() {
        for (answer, why) in [
            ("No idea.", "no score found"),
            ("SCORE: 7", "outside [0, 1]"),
            ("SCORE: 12/10", "outside [0, 1]"),
            ("score: 3/0", "out of 0"),
            ("", "no score found"),
        ] {
            let error = parse_verdict(answer).unwrap_err();
            assert!(error.contains(why) && error.contains(&format!("{:?}", answer.trim())), "{answer:?}: {error}");
        }
    }

    #[test]
    fn config_needs_a_rubric_and_a_threshold_in_range() {
        assert!(assay_sdk::config_from_json::<Config>("{}").is_err());
        assert!(assay_sdk::config_from_json::<Config>(r#"{"rubric": "  "}"#).is_err());
        assert!(assay_sdk::config_from_json::<Config>(r#"{"rubric": "x", "threshold": 1.5}"#).is_err());
        assert!(assay_sdk::config_from_json::<Config>(r#"{"rubric": "x", "key": "other"}"#).is_err());
        let config = assay_sdk::config_from_json::<Config>(r#"{"rubric": "x", "threshold": 0.5}"#).unwrap();
        assert_eq!(config.threshold, Some(0.5));
    }

    #[test]
    fn metadata_asks_for_the_judge() {
        let info = LlmJudge::info();
        assert_eq!(info.capabilities, ["judge"]);
        assert_eq!(info.score_keys, [JUDGE_SCORE]);
    }
}
