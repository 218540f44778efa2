//! `reference_match`: how close is the agent's final answer to the SME's
//! reference answer?
//!
//! Both texts are normalised as in the SQuAD evaluation script: lowercased,
//! punctuation removed, the English articles "a", "an" and "the" dropped and
//! whitespace collapsed. Unlike SQuAD, which only knows ASCII punctuation and
//! deletes it, every Unicode punctuation character becomes a space, so the
//! curly quotes and dashes language models like to write count as separators.
//!
//! - `exact_match`: 1.0 when the normalised texts are equal.
//! - `token_f1`: the harmonic mean of token precision and recall, a token
//!   repeated in both texts counting as often as it occurs in both. With a
//!   `threshold` in the config it becomes 1.0 or 0.0 against that threshold.
//!
//! The final answer is the agent's last assistant message with text; the
//! reference is the example's text reference (`outputs.reference`).

use std::collections::HashMap;

use assay_sdk::{Case, GradeError, Grader, GraderInfo, Score};
use serde::{Deserialize, Deserializer};

/// The grader.
pub struct ReferenceMatch;

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When set, `token_f1` is 1.0 if the F1 reaches this value and 0.0
    /// otherwise, for gates that want a pass rate rather than an average. The
    /// raw F1 stays in the comment.
    #[serde(default, deserialize_with = "threshold_in_unit_interval")]
    pub threshold: Option<f64>,
}

impl Grader for ReferenceMatch {
    type Config = Config;

    fn info() -> GraderInfo {
        GraderInfo::new("reference_match", env!("CARGO_PKG_VERSION"))
            .describe(
                "Compares the agent's final answer with the reference answer after SQuAD \
                 normalisation: exact match and token F1.",
            )
            .score_keys(&[EXACT_MATCH, TOKEN_F1])
            .config_schema(serde_json::json!({
                "type": "object",
                "properties": {
                    "threshold": {
                        "description": "When set, token_f1 is 1 if F1 reaches it, else 0.",
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1
                    }
                },
                "additionalProperties": false
            }))
    }

    fn grade(case: &Case, config: &Config) -> Result<Vec<Score>, GradeError> {
        let Some(reference) = case.reference_text() else {
            return Err(GradeError::InvalidCase("example has no text reference (outputs.reference)".to_owned()));
        };
        let Some(answer) = case.final_answer() else {
            return Ok(vec![Score::fail(EXACT_MATCH, NO_ANSWER), Score::fail(TOKEN_F1, NO_ANSWER)]);
        };
        let answer_tokens = normalized_tokens(answer);
        let reference_tokens = normalized_tokens(reference);
        Ok(vec![
            exact_match(&answer_tokens, &reference_tokens),
            token_f1(&answer_tokens, &reference_tokens, config.threshold),
        ])
    }
}

assay_sdk::export_grader!(ReferenceMatch);

/// The SQuAD normalisation of `text` (see the crate documentation), its
/// tokens joined with single spaces.
pub fn normalize_answer(text: &str) -> String {
    normalized_tokens(text).join(" ")
}

const EXACT_MATCH: &str = "exact_match";
const TOKEN_F1: &str = "token_f1";
const NO_ANSWER: &str = "agent produced no answer";

/// Longest token quoted in a comment, in characters.
const QUOTED_TOKEN_CHARACTERS_MAX: usize = 40;

fn threshold_in_unit_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let threshold = Option::<f64>::deserialize(deserializer)?;
    match threshold {
        Some(value) if !(0.0..=1.0).contains(&value) => {
            Err(serde::de::Error::custom(format!("threshold must be a number in [0, 1], got {value}")))
        }
        _ => Ok(threshold),
    }
}

fn normalized_tokens(text: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(text.len());
    for character in text.chars() {
        if is_punctuation(character) {
            spaced.push(' ');
        } else {
            spaced.extend(character.to_lowercase());
        }
    }
    spaced.split_whitespace().filter(|token| !matches!(*token, "a" | "an" | "the")).map(str::to_owned).collect()
}

/// ASCII punctuation as SQuAD's `string.punctuation` has it (which includes
/// symbols such as `$` and `+`), or any character of Unicode general category P.
fn is_punctuation(character: char) -> bool {
    if character.is_ascii() {
        return character.is_ascii_punctuation();
    }
    let code = u32::from(character);
    UNICODE_PUNCTUATION
        .binary_search_by(|&(first, last)| {
            if last < code {
                std::cmp::Ordering::Less
            } else if first > code {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn exact_match(answer: &[String], reference: &[String]) -> Score {
    if answer == reference {
        return Score::pass(EXACT_MATCH);
    }
    let same_prefix = answer.iter().zip(reference).take_while(|(answer, reference)| answer == reference).count();
    let position = same_prefix + 1;
    let hint = match (answer.get(same_prefix), reference.get(same_prefix)) {
        (Some(got), Some(expected)) => {
            format!("normalised answers differ at token {position}: got {}, expected {}", quote(got), quote(expected))
        }
        (Some(got), None) => {
            format!("the answer goes on after the reference ends: extra token {position} {}", quote(got))
        }
        (None, Some(expected)) => {
            format!("the answer stops before the reference ends: missing token {position} {}", quote(expected))
        }
        (None, None) => "normalised answers differ".to_owned(),
    };
    Score::fail(EXACT_MATCH, hint)
}

fn token_f1(answer: &[String], reference: &[String], threshold: Option<f64>) -> Score {
    let (f1, explanation) = match (answer.is_empty(), reference.is_empty()) {
        (true, true) => (1.0, "both normalised answers are empty".to_owned()),
        (true, false) => (0.0, "the normalised answer is empty".to_owned()),
        (false, true) => (0.0, "the normalised reference is empty".to_owned()),
        (false, false) => {
            let common = common_token_count(answer, reference);
            let precision = common as f64 / answer.len() as f64;
            let recall = common as f64 / reference.len() as f64;
            let f1 = if common == 0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            let explanation = format!(
                "precision {precision:.2} ({common} of {} answer tokens in the reference), \
                 recall {recall:.2} ({common} of {} reference tokens in the answer)",
                answer.len(),
                reference.len()
            );
            (f1, explanation)
        }
    };
    match threshold {
        None => Score::new(TOKEN_F1, f1).with_comment(explanation),
        Some(threshold) => {
            let (value, verdict) = if f1 >= threshold { (1.0, "reaches") } else { (0.0, "is below") };
            Score::new(TOKEN_F1, value)
                .with_comment(format!("F1 {f1:.2} {verdict} the threshold {threshold}; {explanation}"))
        }
    }
}

/// The size of the multiset intersection: a token counts as many times as it
/// occurs in both texts, so repeating a right word does not earn more.
fn common_token_count(answer: &[String], reference: &[String]) -> usize {
    let mut unmatched_in_reference: HashMap<&str, usize> = HashMap::new();
    for token in reference {
        *unmatched_in_reference.entry(token).or_default() += 1;
    }
    let mut common = 0;
    for token in answer {
        if let Some(count) = unmatched_in_reference.get_mut(token.as_str()).filter(|count| **count > 0) {
            *count -= 1;
            common += 1;
        }
    }
    common
}

/// A token in double quotes, cut to a readable length.
fn quote(token: &str) -> String {
    if token.chars().count() <= QUOTED_TOKEN_CHARACTERS_MAX {
        return format!("{token:?}");
    }
    let shortened: String = token.chars().take(QUOTED_TOKEN_CHARACTERS_MAX).collect();
    format!("{shortened:?}…")
}

/// Inclusive ranges of the non-ASCII code points of Unicode general category P
/// (Pc, Pd, Ps, Pe, Pi, Pf, Po), sorted, generated from Unicode 14.0 with
/// Python's `unicodedata`. The standard library exposes no such test and this
/// crate takes no dependency beyond the SDK and serde.
#[rustfmt::skip]
const UNICODE_PUNCTUATION: [(u32, u32); 180] = [
    (0x00A1, 0x00A1), (0x00A7, 0x00A7), (0x00AB, 0x00AB), (0x00B6, 0x00B7),
    (0x00BB, 0x00BB), (0x00BF, 0x00BF), (0x037E, 0x037E), (0x0387, 0x0387),
    (0x055A, 0x055F), (0x0589, 0x058A), (0x05BE, 0x05BE), (0x05C0, 0x05C0),
    (0x05C3, 0x05C3), (0x05C6, 0x05C6), (0x05F3, 0x05F4), (0x0609, 0x060A),
    (0x060C, 0x060D), (0x061B, 0x061B), (0x061D, 0x061F), (0x066A, 0x066D),
    (0x06D4, 0x06D4), (0x0700, 0x070D), (0x07F7, 0x07F9), (0x0830, 0x083E),
    (0x085E, 0x085E), (0x0964, 0x0965), (0x0970, 0x0970), (0x09FD, 0x09FD),
    (0x0A76, 0x0A76), (0x0AF0, 0x0AF0), (0x0C77, 0x0C77), (0x0C84, 0x0C84),
    (0x0DF4, 0x0DF4), (0x0E4F, 0x0E4F), (0x0E5A, 0x0E5B), (0x0F04, 0x0F12),
    (0x0F14, 0x0F14), (0x0F3A, 0x0F3D), (0x0F85, 0x0F85), (0x0FD0, 0x0FD4),
    (0x0FD9, 0x0FDA), (0x104A, 0x104F), (0x10FB, 0x10FB), (0x1360, 0x1368),
    (0x1400, 0x1400), (0x166E, 0x166E), (0x169B, 0x169C), (0x16EB, 0x16ED),
    (0x1735, 0x1736), (0x17D4, 0x17D6), (0x17D8, 0x17DA), (0x1800, 0x180A),
    (0x1944, 0x1945), (0x1A1E, 0x1A1F), (0x1AA0, 0x1AA6), (0x1AA8, 0x1AAD),
    (0x1B5A, 0x1B60), (0x1B7D, 0x1B7E), (0x1BFC, 0x1BFF), (0x1C3B, 0x1C3F),
    (0x1C7E, 0x1C7F), (0x1CC0, 0x1CC7), (0x1CD3, 0x1CD3), (0x2010, 0x2027),
    (0x2030, 0x2043), (0x2045, 0x2051), (0x2053, 0x205E), (0x207D, 0x207E),
    (0x208D, 0x208E), (0x2308, 0x230B), (0x2329, 0x232A), (0x2768, 0x2775),
    (0x27C5, 0x27C6), (0x27E6, 0x27EF), (0x2983, 0x2998), (0x29D8, 0x29DB),
    (0x29FC, 0x29FD), (0x2CF9, 0x2CFC), (0x2CFE, 0x2CFF), (0x2D70, 0x2D70),
    (0x2E00, 0x2E2E), (0x2E30, 0x2E4F), (0x2E52, 0x2E5D), (0x3001, 0x3003),
    (0x3008, 0x3011), (0x3014, 0x301F), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x30A0, 0x30A0), (0x30FB, 0x30FB), (0xA4FE, 0xA4FF), (0xA60D, 0xA60F),
    (0xA673, 0xA673), (0xA67E, 0xA67E), (0xA6F2, 0xA6F7), (0xA874, 0xA877),
    (0xA8CE, 0xA8CF), (0xA8F8, 0xA8FA), (0xA8FC, 0xA8FC), (0xA92E, 0xA92F),
    (0xA95F, 0xA95F), (0xA9C1, 0xA9CD), (0xA9DE, 0xA9DF), (0xAA5C, 0xAA5F),
    (0xAADE, 0xAADF), (0xAAF0, 0xAAF1), (0xABEB, 0xABEB), (0xFD3E, 0xFD3F),
    (0xFE10, 0xFE19), (0xFE30, 0xFE52), (0xFE54, 0xFE61), (0xFE63, 0xFE63),
    (0xFE68, 0xFE68), (0xFE6A, 0xFE6B), (0xFF01, 0xFF03), (0xFF05, 0xFF0A),
    (0xFF0C, 0xFF0F), (0xFF1A, 0xFF1B), (0xFF1F, 0xFF20), (0xFF3B, 0xFF3D),
    (0xFF3F, 0xFF3F), (0xFF5B, 0xFF5B), (0xFF5D, 0xFF5D), (0xFF5F, 0xFF65),
    (0x10100, 0x10102), (0x1039F, 0x1039F), (0x103D0, 0x103D0), (0x1056F, 0x1056F),
    (0x10857, 0x10857), (0x1091F, 0x1091F), (0x1093F, 0x1093F), (0x10A50, 0x10A58),
    (0x10A7F, 0x10A7F), (0x10AF0, 0x10AF6), (0x10B39, 0x10B3F), (0x10B99, 0x10B9C),
    (0x10EAD, 0x10EAD), (0x10F55, 0x10F59), (0x10F86, 0x10F89), (0x11047, 0x1104D),
    (0x110BB, 0x110BC), (0x110BE, 0x110C1), (0x11140, 0x11143), (0x11174, 0x11175),
    (0x111C5, 0x111C8), (0x111CD, 0x111CD), (0x111DB, 0x111DB), (0x111DD, 0x111DF),
    (0x11238, 0x1123D), (0x112A9, 0x112A9), (0x1144B, 0x1144F), (0x1145A, 0x1145B),
    (0x1145D, 0x1145D), (0x114C6, 0x114C6), (0x115C1, 0x115D7), (0x11641, 0x11643),
    (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1173C, 0x1173E), (0x1183B, 0x1183B),
    (0x11944, 0x11946), (0x119E2, 0x119E2), (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C),
    (0x11A9E, 0x11AA2), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8),
    (0x11FFF, 0x11FFF), (0x12470, 0x12474), (0x12FF1, 0x12FF2), (0x16A6E, 0x16A6F),
    (0x16AF5, 0x16AF5), (0x16B37, 0x16B3B), (0x16B44, 0x16B44), (0x16E97, 0x16E9A),
    (0x16FE2, 0x16FE2), (0x1BC9F, 0x1BC9F), (0x1DA87, 0x1DA8B), (0x1E95E, 0x1E95F),
];

#[cfg(test)]
mod tests {
    use super::*;
    use assay_sdk::testing::case;
    use serde_json::{Value, json};

    const REFERENCE: &str = "I'm going to page the on-call physician now. Please stay on the line.";

    /// Grades `messages` (the agent's turns) against an example whose
    /// `outputs.reference` is `reference`.
    fn grade_messages(reference: Value, messages: Value, config: &str) -> Result<Vec<Score>, GradeError> {
        let example = json!({"id": "e1",
            "inputs": {"messages": [{"role": "user", "content": "My 4-year-old has had a fever for 3 days."}]},
            "outputs": {"reference": reference}});
        let run = json!({"outputs": {"messages": messages}});
        let config = assay_sdk::config_from_json(config).expect("config parses");
        ReferenceMatch::grade(&case(&example.to_string(), &run.to_string()), &config)
    }

    /// The scores, as (key, value, comment), for `answer` against `reference`.
    fn grade(reference: &str, answer: &str, config: &str) -> Vec<(String, f64, String)> {
        let messages = json!([{"role": "assistant", "content": answer}]);
        let scores = grade_messages(json!(reference), messages, config).expect("grades");
        scores.into_iter().map(|score| (score.key, score.value, score.comment.unwrap_or_default())).collect()
    }

    #[test]
    fn info_declares_both_score_keys_and_a_json_schema() {
        let info = ReferenceMatch::info();
        assert_eq!((info.name.as_str(), info.version.as_str()), ("reference_match", env!("CARGO_PKG_VERSION")));
        assert_eq!(info.score_keys, [EXACT_MATCH, TOKEN_F1]);
        let schema: Value = serde_json::from_str(&info.config_schema).expect("schema is JSON");
        assert_eq!(schema["properties"]["threshold"]["maximum"], 1);
    }

    #[test]
    fn normalisation_follows_squad_with_unicode_punctuation_as_spaces() {
        assert_eq!(normalize_answer("  The Cat—sat, on a “MAT”!\n"), "cat sat on mat");
        assert_eq!(normalize_answer("An apple; the   theatre."), "apple theatre");
        assert_eq!(normalize_answer("Don’t; won't"), "don t won t");
        assert_eq!(normalize_answer("¿Qué pasó? «Ça va» ÉTÉ"), "qué pasó ça va été");
        assert_eq!(normalize_answer("1,000 $5 (approx.)"), "1 000 5 approx");
        assert_eq!(normalize_answer("The. A, an!"), "");
    }

    #[test]
    fn punctuation_table_is_sorted_and_matches_known_characters() {
        assert!(UNICODE_PUNCTUATION.windows(2).all(|pair| pair[0].1 < pair[1].0));
        assert!(UNICODE_PUNCTUATION.iter().all(|(first, last)| first <= last && *first >= 0x80));
        for character in ['¡', '·', '‐', '—', '‘', '’', '“', '…', '、', '。', '「', '！', '\u{1E95F}']
        {
            assert!(is_punctuation(character), "{character:?} is punctuation");
        }
        for character in ['é', 'ß', '€', '©', '+', 'ㄱ', '中', '\u{0301}', ' '] {
            assert_eq!(is_punctuation(character), character == '+', "{character:?}");
        }
    }

    #[test]
    fn equal_answers_after_normalisation_score_one_on_both_keys() {
        let scores = grade(REFERENCE, "i’m going to page THE on call physician now —please stay on line", "{}");
        assert_eq!(scores[0], (EXACT_MATCH.to_owned(), 1.0, String::new()));
        assert_eq!(scores[1].0, TOKEN_F1);
        assert_eq!(scores[1].1, 1.0);
        assert_eq!(
            scores[1].2,
            "precision 1.00 (13 of 13 answer tokens in the reference), recall 1.00 (13 of 13 reference tokens in the answer)"
        );
    }

    #[test]
    fn different_answer_fails_exact_match_naming_the_first_differing_token() {
        let scores = grade(REFERENCE, "I'm going to call the on-call physician now.", "{}");
        assert_eq!(
            scores[0],
            (
                EXACT_MATCH.to_owned(),
                0.0,
                r#"normalised answers differ at token 5: got "call", expected "page""#.to_owned()
            )
        );
    }

    #[test]
    fn shorter_or_longer_answer_names_the_missing_or_extra_token() {
        let scores = grade("Paging the doctor now.", "paging doctor", "{}");
        assert_eq!(scores[0].2, r#"the answer stops before the reference ends: missing token 3 "now""#);
        let scores = grade("Paging the doctor now.", "paging doctor now, hold on", "{}");
        assert_eq!(scores[0].2, r#"the answer goes on after the reference ends: extra token 4 "hold""#);
    }

    #[test]
    fn token_f1_is_the_harmonic_mean_of_precision_and_recall() {
        // Answer tokens: page on call doctor (4); reference: page on call physician now (5); 3 in common.
        let scores = grade("Page the on-call physician now.", "Page the on-call doctor", "{}");
        let (precision, recall) = (3.0 / 4.0, 3.0 / 5.0);
        assert!((scores[1].1 - 2.0 * precision * recall / (precision + recall)).abs() < 1e-12, "{}", scores[1].1);
        assert_eq!(
            scores[1].2,
            "precision 0.75 (3 of 4 answer tokens in the reference), recall 0.60 (3 of 5 reference tokens in the answer)"
        );
        assert_eq!(grade("Page the on-call physician now.", "Nothing in common", "{}")[1].1, 0.0);
    }

    #[test]
    fn token_f1_counts_a_repeated_token_only_as_often_as_the_reference_has_it() {
        let scores = grade("yes", "Yes, yes, YES!", "{}");
        // Precision 1/3, recall 1/1: F1 = 2 · (1/3) / (4/3) = 0.5.
        assert!((scores[1].1 - 0.5).abs() < 1e-12, "{}", scores[1].1);
        assert!(scores[1].2.starts_with("precision 0.33 (1 of 3 answer tokens"), "{}", scores[1].2);
    }

    #[test]
    fn empty_normalised_texts_follow_squad() {
        let scores = grade("The.", "a!", "{}");
        assert_eq!((scores[0].1, scores[1].1, scores[1].2.as_str()), (1.0, 1.0, "both normalised answers are empty"));
        let scores = grade("Paging now.", "The…", "{}");
        assert_eq!((scores[0].1, scores[1].1, scores[1].2.as_str()), (0.0, 0.0, "the normalised answer is empty"));
        let scores = grade("—", "Paging now.", "{}");
        assert_eq!((scores[0].1, scores[1].1, scores[1].2.as_str()), (0.0, 0.0, "the normalised reference is empty"));
    }

    #[test]
    fn final_answer_is_the_last_assistant_message_with_text() {
        let messages = json!([
            {"role": "assistant", "content": "Let me check the clinic hours."},
            {"role": "tool", "content": "closed", "tool_call_id": "call_1"},
            {"role": "assistant", "content": "Paging the doctor now."},
            {"role": "assistant", "content": "   "},
            {"role": "user", "content": "ok"}]);
        let scores = grade_messages(json!("paging the doctor now"), messages, "{}").expect("grades");
        assert_eq!((scores[0].value, scores[1].value), (1.0, 1.0));
    }

    #[test]
    fn example_without_a_text_reference_is_an_invalid_case() {
        let messages = json!([{"role": "assistant", "content": "Paging now."}]);
        for reference in [Value::Null, json!([{"name": "page_on_call", "args": {}}])] {
            let error = grade_messages(reference, messages.clone(), "{}").unwrap_err();
            assert!(
                matches!(&error, GradeError::InvalidCase(message) if message == "example has no text reference (outputs.reference)"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn run_without_an_answer_scores_zero_on_both_keys() {
        let messages =
            json!([{"role": "assistant", "content": "", "tool_calls": [{"name": "page_on_call", "args": {}}]}]);
        let scores = grade_messages(json!(REFERENCE), messages, r#"{"threshold": 0.0}"#).expect("grades");
        for (score, key) in scores.iter().zip([EXACT_MATCH, TOKEN_F1]) {
            assert_eq!((score.key.as_str(), score.value), (key, 0.0));
            assert_eq!(score.comment.as_deref(), Some("agent produced no answer"));
        }
    }

    #[test]
    fn threshold_turns_token_f1_into_pass_or_fail_keeping_the_raw_f1_in_the_comment() {
        // F1 = 2 · 0.75 · 0.6 / 1.35 ≈ 0.67.
        let reference = "Page the on-call physician now.";
        let passed = grade(reference, "Page the on-call doctor", r#"{"threshold": 0.6}"#);
        assert_eq!(passed[1].1, 1.0);
        assert!(passed[1].2.starts_with("F1 0.67 reaches the threshold 0.6; precision 0.75"), "{}", passed[1].2);
        let failed = grade(reference, "Page the on-call doctor", r#"{"threshold": 0.7}"#);
        assert_eq!(failed[1].1, 0.0);
        assert!(failed[1].2.starts_with("F1 0.67 is below the threshold 0.7; precision 0.75"), "{}", failed[1].2);
        let exact = grade(reference, reference, r#"{"threshold": 1}"#);
        assert_eq!(exact[1].1, 1.0);
        assert_eq!(grade(reference, reference, r#"{"threshold": null}"#)[1].1, 1.0);
    }

    #[test]
    fn threshold_outside_zero_to_one_is_invalid_config() {
        for config in [r#"{"threshold": 1.5}"#, r#"{"threshold": -0.1}"#, r#"{"threshold": "high"}"#] {
            let error = assay_sdk::config_from_json::<Config>(config).unwrap_err();
            assert!(matches!(&error, GradeError::InvalidConfig(_)), "{config}: {error:?}");
        }
        let error = assay_sdk::config_from_json::<Config>(r#"{"threshold": 1.5}"#).unwrap_err();
        assert!(
            matches!(&error, GradeError::InvalidConfig(message) if message.contains("threshold must be a number in [0, 1], got 1.5")),
            "{error:?}"
        );
    }

    #[test]
    fn unknown_config_key_is_refused() {
        let error = assay_sdk::config_from_json::<Config>(r#"{"treshold": 0.5}"#).unwrap_err();
        assert!(matches!(&error, GradeError::InvalidConfig(message) if message.contains("treshold")), "{error:?}");
    }
}
