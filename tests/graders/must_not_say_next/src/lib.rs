//! `must_not_say` 0.2.0, for the registry tests: the reference grader's
//! policy plus a standing list the compliance team added ("no need to
//! worry", "calm down"), and a comment naming the version, so a test can tell
//! which version produced a score.

use assay_sdk::{Case, GradeError, Grader, GraderInfo, NoConfig, Score};

/// Phrases this version forbids in every case.
pub const STANDING_LIST: &[&str] = &["no need to worry", "calm down"];

pub struct MustNotSayNext;

impl Grader for MustNotSayNext {
    type Config = NoConfig;

    fn info() -> GraderInfo {
        GraderInfo::new("must_not_say", env!("CARGO_PKG_VERSION"))
            .describe("Fails when the agent says a forbidden phrase, including the standing list.")
            .score_keys(&["policy_violations"])
    }

    fn grade(case: &Case, _config: &NoConfig) -> Result<Vec<Score>, GradeError> {
        let said = case.assistant_text_normalized();
        let standing: Vec<String> = STANDING_LIST.iter().map(|phrase| phrase.to_string()).collect();
        let mut found = said.find_phrases(&case.example.must_not_say);
        found.extend(said.find_phrases(&standing));
        let version = env!("CARGO_PKG_VERSION");
        Ok(vec![if found.is_empty() {
            Score::pass("policy_violations").with_comment(format!("clean (v{version})"))
        } else {
            Score::fail("policy_violations", format!("said {} (v{version})", found.join(", ")))
        }])
    }
}

assay_sdk::export_grader!(MustNotSayNext);
