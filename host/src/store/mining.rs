//! Saved mining rules: which traces of a project to route into which queue,
//! and how often the server runs the rule. The filter is kept as its text;
//! parsing and running rules is `crate::mining`'s job.

use super::layout;
use super::{Store, StoreError};
use crate::model::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest rule name.
pub const RULE_NAME_BYTES_MAX: usize = 100;

/// A saved mining rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MiningRule {
    pub name: String,
    pub project: String,
    /// LangSmith filter text; `None` matches every trace (a random sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// How far back each run looks, as a duration (`7d`, `24h`).
    pub window: String,
    /// Fraction of matching traces kept, in (0, 1].
    pub sample_rate: f64,
    /// Where kept traces are queued; a rule without a queue only reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// How often the server runs it (a duration such as `1h`); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub created_by: String,
    pub created_at: String,
    /// Unix milliseconds of the last run, and its report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<Value>,
}

impl Store {
    /// Saves a new rule; an existing name is a `Conflict`.
    pub fn create_rule(&self, rule: &MiningRule) -> Result<(), StoreError> {
        if rule.name.is_empty()
            || rule.name.len() > RULE_NAME_BYTES_MAX
            || !rule.name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        {
            return Err(StoreError::Invalid(vec![FieldError {
                field: "name".into(),
                reason: format!("must be 1 to {RULE_NAME_BYTES_MAX} ASCII letters, digits, `-`, `_` or `.`"),
            }]));
        }
        let encoded = layout::encode_json(rule, "mining rule")?;
        self.trees
            .mining_rules
            .compare_and_swap(rule.name.as_bytes(), None::<&[u8]>, Some(encoded))?
            .map_err(|_| StoreError::Conflict(format!("a rule called {:?} exists already", rule.name)))?;
        self.flush()
    }

    /// One rule.
    pub fn rule(&self, name: &str) -> Result<MiningRule, StoreError> {
        match self.trees.mining_rules.get(name.as_bytes())? {
            Some(bytes) => layout::decode_json(&bytes, "mining rule"),
            None => Err(StoreError::NotFound { what: format!("mining rule `{name}`") }),
        }
    }

    /// Every rule, by name.
    pub fn rules(&self) -> Result<Vec<MiningRule>, StoreError> {
        let mut rules = Vec::new();
        for entry in self.trees.mining_rules.iter() {
            let (_, bytes) = entry?;
            rules.push(layout::decode_json(&bytes, "mining rule")?);
        }
        Ok(rules)
    }

    /// Records a run of a rule (its time and report).
    pub fn record_rule_run(&self, name: &str, at_ms: i64, report: Value) -> Result<(), StoreError> {
        let mut rule = self.rule(name)?;
        rule.last_run_ms = Some(at_ms);
        rule.last_report = Some(report);
        self.trees.mining_rules.insert(name.as_bytes(), layout::encode_json(&rule, "mining rule")?)?;
        self.flush()
    }

    /// Deletes a rule.
    pub fn delete_rule(&self, name: &str) -> Result<(), StoreError> {
        match self.trees.mining_rules.remove(name.as_bytes())? {
            Some(_) => self.flush(),
            None => Err(StoreError::NotFound { what: format!("mining rule `{name}`") }),
        }
    }
}
