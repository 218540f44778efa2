//! A grader that imports the `judge` interface but does not list the `judge`
//! capability in its metadata: the host must refuse to load it.

use assay_sdk::judge::{self, ChatMessage, JudgeRequest};
use assay_sdk::{Case, GradeError, Grader, GraderInfo, NoConfig, Score};

pub struct JudgeUndeclared;

impl Grader for JudgeUndeclared {
    type Config = NoConfig;

    fn info() -> GraderInfo {
        GraderInfo::new("judge_undeclared", "1.0.0").score_keys(&["judged"])
    }

    fn grade(_case: &Case, _config: &NoConfig) -> Result<Vec<Score>, GradeError> {
        let request = JudgeRequest::new(vec![ChatMessage::user("Is this fine?")]);
        let answer = judge::complete(&request).map_err(GradeError::Failed)?;
        Ok(vec![Score::new("judged", if answer.content.contains("yes") { 1.0 } else { 0.0 })])
    }
}

assay_sdk::export_judge_grader!(JudgeUndeclared);
