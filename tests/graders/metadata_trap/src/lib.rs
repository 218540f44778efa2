//! A grader whose `metadata()` traps: the registry must refuse to publish it.

use assay_sdk::{Case, GradeError, Grader, GraderInfo, NoConfig, Score};

pub struct MetadataTrap;

impl Grader for MetadataTrap {
    type Config = NoConfig;

    fn info() -> GraderInfo {
        panic!("metadata is broken on purpose")
    }

    fn grade(_case: &Case, _config: &NoConfig) -> Result<Vec<Score>, GradeError> {
        Ok(vec![Score::pass("never")])
    }
}

assay_sdk::export_grader!(MetadataTrap);
