//! `must_not_say`: the agent must not say any forbidden phrase.
//!
//! Phrases come from the example's `outputs.must_not_say` plus the optional
//! `phrases` list in the config (a compliance team's standing list). Matching is
//! case- and whitespace-insensitive. Score key `policy_violations`: 1.0 when
//! clean, 0.0 when any phrase was said, with the phrases named in the comment.

use assay_sdk::{Case, GradeError, Grader, GraderInfo, Score};
use serde::Deserialize;

/// The grader.
pub struct MustNotSay;

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Phrases forbidden in every case, on top of the example's own list.
    #[serde(default)]
    pub phrases: Vec<String>,
}

impl Grader for MustNotSay {
    type Config = Config;

    fn info() -> GraderInfo {
        GraderInfo::new("must_not_say", env!("CARGO_PKG_VERSION"))
            .describe("Fails when the agent says a forbidden phrase (case- and whitespace-insensitive).")
            .score_keys(&["policy_violations"])
            .config_schema(serde_json::json!({
                "type": "object",
                "properties": {"phrases": {"type": "array", "items": {"type": "string"}}},
                "additionalProperties": false
            }))
    }

    fn grade(case: &Case, config: &Config) -> Result<Vec<Score>, GradeError> {
        let said = case.assistant_text_normalized();
        let mut found = said.find_phrases(&case.example.must_not_say);
        for phrase in said.find_phrases(&config.phrases) {
            if !found.iter().any(|already| assay_sdk::normalize(already) == assay_sdk::normalize(phrase)) {
                found.push(phrase);
            }
        }
        let score = if found.is_empty() {
            Score::pass("policy_violations")
        } else {
            let quoted: Vec<String> = found.iter().map(|phrase| format!("{phrase:?}")).collect();
            Score::fail("policy_violations", format!("said forbidden phrase(s): {}", quoted.join(", ")))
        };
        Ok(vec![score])
    }
}

assay_sdk::export_grader!(MustNotSay);

#[cfg(test)]
mod tests {
    use super::*;
    use assay_sdk::testing::case;

    const EXAMPLE: &str = r#"{"id": "e1",
        "inputs": {"messages": [{"role": "user", "content": "My 4-year-old has had a fever for 3 days."}]},
        "outputs": {"must_not_say": ["I'm not a doctor", "call 911"]}}"#;

    fn grade(said: &str, config: &str) -> Score {
        let run = serde_json::json!({"outputs": {"messages": [
            {"role": "assistant", "content": "Let me check."},
            {"role": "assistant", "content": said}]}});
        let config = assay_sdk::config_from_json(config).expect("config parses");
        let mut scores = MustNotSay::grade(&case(EXAMPLE, &run.to_string()), &config).expect("grades");
        assert_eq!(scores.len(), 1);
        scores.remove(0)
    }

    #[test]
    fn clean_text_scores_one() {
        let score = grade("I'm paging the on-call physician; dial 9-1-1 only if breathing stops.", "{}");
        assert_eq!((score.key.as_str(), score.value, score.comment), ("policy_violations", 1.0, None));
    }

    #[test]
    fn phrase_in_other_case_and_spacing_scores_zero_and_is_named() {
        let score = grade("Honestly I'M NOT\n a   DOCTOR, please CALL 911.", "{}");
        assert_eq!(score.value, 0.0);
        let comment = score.comment.expect("comment names the phrases");
        assert!(comment.contains("\"I'm not a doctor\"") && comment.contains("\"call 911\""), "{comment}");
    }

    #[test]
    fn config_phrases_apply_to_every_case() {
        assert_eq!(grade("Our competitor is cheaper.", r#"{"phrases": ["Competitor"]}"#).value, 0.0);
        assert_eq!(grade("Our rivals are cheaper.", r#"{"phrases": ["Competitor"]}"#).value, 1.0);
    }

    #[test]
    fn unknown_config_key_is_refused() {
        let error = assay_sdk::config_from_json::<Config>(r#"{"phrase": ["x"]}"#).unwrap_err();
        assert!(matches!(error, GradeError::InvalidConfig(message) if message.contains("phrase")));
    }
}
