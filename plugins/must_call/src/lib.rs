//! `must_call`: did the agent call the tools it had to, stay away from the
//! forbidden ones, and follow the expected trajectory?
//!
//! Three scores:
//!
//! - `required_tools_called`: the fraction of required tool names the agent
//!   called at least once. The required names are the example's `must_call`
//!   plus the tool names of the reference trajectory when there is one.
//! - `forbidden_tools_avoided`: 1.0 unless the agent called a tool listed in
//!   `must_not_call`; each forbidden call is named with its position.
//! - `trajectory_match`: 1.0 when the agent's calls fit the expected calls under
//!   the configured trajectory and argument modes, else 0.0 with every failing
//!   call explained.
//!
//! The expected calls are the reference trajectory when the example's reference
//! is structured as a list of `{"name": ..., "args": {...}}` (bare, or under a
//! `tool_calls` key). Otherwise they are the `must_call` names, with no
//! constraint on arguments.
//!
//! The unordered, subset and superset modes pair expected and actual calls with
//! a maximum bipartite matching (Hopcroft–Karp). A greedy first-fit pairing can
//! hand an actual call to the wrong expected call and then report a failure that
//! a better pairing avoids; a maximum matching fails only when no pairing works.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use assay_sdk::{Case, GradeError, Grader, GraderInfo, Reference, Score, ToolCall};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// The grader.
pub struct MustCall;

/// Configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How the agent's sequence of calls is compared with the expected one.
    #[serde(default)]
    pub trajectory: TrajectoryMode,
    /// How arguments are compared. When absent: `ignore` if no expected call
    /// carries arguments, otherwise `subset`.
    #[serde(default)]
    pub arguments: Option<ArgumentMode>,
}

/// How the agent's sequence of calls is compared with the expected one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrajectoryMode {
    /// The same calls in the same order, and as many.
    Strict,
    /// The same calls, as many, in any order.
    Unordered,
    /// Every actual call fits a distinct expected call: the agent did nothing
    /// extra, but may have skipped expected calls.
    Subset,
    /// Every expected call is fitted by a distinct actual call: the agent may
    /// make extra calls but must make every expected one. The default, because
    /// an agent that double-checks something should not fail for it.
    #[default]
    Superset,
}

/// How an actual call's arguments are compared with an expected call's.
///
/// An expected call without arguments (a `must_call` name, or a trajectory
/// entry without `args`) puts no constraint on arguments in any mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgumentMode {
    /// The arguments are equal JSON.
    Exact,
    /// Only tool names are compared.
    Ignore,
    /// Every key the agent passed is in the expected arguments with an equal
    /// value; the agent may leave expected keys out.
    Subset,
    /// Every expected key is passed with an equal value; the agent may pass
    /// more keys.
    Superset,
}

impl fmt::Display for TrajectoryMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            TrajectoryMode::Strict => "strict",
            TrajectoryMode::Unordered => "unordered",
            TrajectoryMode::Subset => "subset",
            TrajectoryMode::Superset => "superset",
        })
    }
}

impl Grader for MustCall {
    type Config = Config;

    fn info() -> GraderInfo {
        GraderInfo::new("must_call", env!("CARGO_PKG_VERSION"))
            .describe(
                "Checks required and forbidden tool calls, and matches the agent's calls \
                 against the expected trajectory (strict, unordered, subset or superset, \
                 with argument matching).",
            )
            .score_keys(&[REQUIRED_TOOLS_CALLED, FORBIDDEN_TOOLS_AVOIDED, TRAJECTORY_MATCH])
            .config_schema(serde_json::json!({
                "type": "object",
                "properties": {
                    "trajectory": {
                        "description": TRAJECTORY_MODE_DESCRIPTION,
                        "enum": ["strict", "unordered", "subset", "superset"],
                        "default": "superset"
                    },
                    "arguments": {
                        "description": ARGUMENT_MODE_DESCRIPTION,
                        "enum": ["exact", "ignore", "subset", "superset"]
                    }
                },
                "additionalProperties": false
            }))
    }

    fn grade(case: &Case, config: &Config) -> Result<Vec<Score>, GradeError> {
        let expected = expected_calls(case);
        let actual: Vec<ActualCall<'_>> = case.run.tool_calls.iter().map(ActualCall::new).collect();
        let argument_mode = config.arguments.unwrap_or_else(|| default_argument_mode(&expected));
        Ok(vec![
            required_tools_called(case, &expected, &actual),
            forbidden_tools_avoided(case, &actual),
            trajectory_match(&expected, &actual, config.trajectory, argument_mode),
        ])
    }
}

assay_sdk::export_grader!(MustCall);

const REQUIRED_TOOLS_CALLED: &str = "required_tools_called";
const FORBIDDEN_TOOLS_AVOIDED: &str = "forbidden_tools_avoided";
const TRAJECTORY_MATCH: &str = "trajectory_match";

const TRAJECTORY_MODE_DESCRIPTION: &str = "How the sequence of calls is compared: \
    strict (same calls, same order), unordered (same calls, any order), \
    subset (no call outside the expected ones), \
    superset (every expected call made, extra calls allowed).";
const ARGUMENT_MODE_DESCRIPTION: &str = "How arguments are compared: exact (equal JSON), \
    ignore (names only), subset (every key passed is expected with an equal value), \
    superset (every expected key passed with an equal value). Default: ignore when \
    no expected call carries arguments, otherwise subset.";

/// Failures spelled out in one comment before the rest are only counted, so an
/// agent that makes thousands of calls cannot produce a comment of megabytes.
const FAILURES_LISTED_MAX: usize = 10;

/// Longest JSON value quoted in a comment, in characters.
const QUOTED_VALUE_CHARACTERS_MAX: usize = 80;

/// A call the agent was expected to make.
#[derive(Debug)]
struct ExpectedCall {
    name: String,
    /// `None` when the reference puts no constraint on the arguments.
    arguments: Option<Value>,
}

/// A call the agent made, with its arguments parsed once.
#[derive(Debug)]
struct ActualCall<'a> {
    name: &'a str,
    /// The arguments as JSON, or the parser's error.
    arguments: Result<Value, String>,
    /// The arguments as the agent sent them, quoted when they are not JSON.
    arguments_text: &'a str,
}

impl<'a> ActualCall<'a> {
    /// Parses the call's arguments. Blank text and `null` both mean "no
    /// arguments", the same as `{}`, since agent frameworks spell that all three ways.
    fn new(call: &'a ToolCall) -> Self {
        let arguments = if call.arguments.trim().is_empty() {
            Ok(Value::Object(Map::new()))
        } else {
            match serde_json::from_str(&call.arguments) {
                Ok(Value::Null) => Ok(Value::Object(Map::new())),
                Ok(value) => Ok(value),
                Err(error) => Err(error.to_string()),
            }
        };
        ActualCall { name: &call.name, arguments, arguments_text: &call.arguments }
    }
}

/// The reference trajectory when there is one, otherwise the `must_call` names.
fn expected_calls(case: &Case) -> Vec<ExpectedCall> {
    reference_trajectory(case).unwrap_or_else(|| {
        case.example.must_call.iter().map(|name| ExpectedCall { name: name.clone(), arguments: None }).collect()
    })
}

/// Reads a structured reference as a list of calls: an array of
/// `{"name": ..., "args": {...}}`, or an object holding one under `tool_calls`.
/// `arguments` is accepted for `args`, and the OpenAI `{"function": {...}}`
/// wrapper is unwrapped, as the SDK does for run tool calls. Any other shape is
/// not a trajectory (it may be another kind of structured reference), so the
/// grader falls back to `must_call`.
fn reference_trajectory(case: &Case) -> Option<Vec<ExpectedCall>> {
    let Some(Reference::Structured(text)) = &case.example.reference else {
        return None;
    };
    let reference: Value = serde_json::from_str(text).ok()?;
    let calls = match &reference {
        Value::Array(calls) => calls,
        Value::Object(object) => object.get("tool_calls")?.as_array()?,
        _ => return None,
    };
    calls.iter().map(expected_call_from_reference).collect()
}

/// One reference trajectory entry, or `None` when it has no tool name.
fn expected_call_from_reference(call: &Value) -> Option<ExpectedCall> {
    let function = call.get("function").unwrap_or(call);
    let name = function.get("name")?.as_str()?.to_owned();
    let arguments = match function.get("args").or_else(|| function.get("arguments")) {
        None | Some(Value::Null) => None,
        // Arguments written as JSON text, the way OpenAI messages carry them.
        Some(Value::String(text)) => Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))),
        Some(other) => Some(other.clone()),
    };
    Some(ExpectedCall { name, arguments })
}

/// `ignore` when no expected call carries arguments (comparing them would be
/// vacuous or, for `{}`, would forbid every argument), otherwise `superset`:
/// the agent must pass every argument the SME wrote down, and may add more,
/// mirroring the default trajectory mode.
fn default_argument_mode(expected: &[ExpectedCall]) -> ArgumentMode {
    let carries_arguments = expected.iter().any(|call| match &call.arguments {
        None | Some(Value::Null) => false,
        Some(Value::Object(arguments)) => !arguments.is_empty(),
        Some(_) => true,
    });
    if carries_arguments { ArgumentMode::Superset } else { ArgumentMode::Ignore }
}

/// Set semantics on names: calling a required tool twice counts once, and
/// `must_call` listing a name twice requires it once.
fn required_tools_called(case: &Case, expected: &[ExpectedCall], actual: &[ActualCall<'_>]) -> Score {
    let mut required: Vec<&str> = Vec::new();
    let names = case.example.must_call.iter().map(String::as_str).chain(expected.iter().map(|call| call.name.as_str()));
    for name in names {
        if !required.contains(&name) {
            required.push(name);
        }
    }
    let missing: Vec<&str> =
        required.iter().copied().filter(|name| !actual.iter().any(|call| call.name == *name)).collect();
    if missing.is_empty() {
        return Score::pass(REQUIRED_TOOLS_CALLED);
    }
    let called = required.len() - missing.len();
    Score::new(REQUIRED_TOOLS_CALLED, called as f64 / required.len() as f64).with_comment(format!(
        "did not call {} of {} required tools: {}",
        missing.len(),
        required.len(),
        missing.join(", ")
    ))
}

/// Every forbidden call is listed, not only the first, so the comment shows
/// whether the agent repeated the mistake.
fn forbidden_tools_avoided(case: &Case, actual: &[ActualCall<'_>]) -> Score {
    let forbidden = &case.example.must_not_call;
    let forbidden_calls: Vec<String> = actual
        .iter()
        .enumerate()
        .filter(|(_, call)| forbidden.iter().any(|name| name == call.name))
        .map(|(index, call)| format!("{} at position {}", call.name, index + 1))
        .collect();
    if forbidden_calls.is_empty() {
        Score::pass(FORBIDDEN_TOOLS_AVOIDED)
    } else {
        Score::fail(
            FORBIDDEN_TOOLS_AVOIDED,
            format!("called forbidden tools: {}", join_capped(forbidden_calls.into_iter(), ", ")),
        )
    }
}

fn trajectory_match(
    expected: &[ExpectedCall],
    actual: &[ActualCall<'_>],
    trajectory_mode: TrajectoryMode,
    argument_mode: ArgumentMode,
) -> Score {
    let explanation = if trajectory_mode == TrajectoryMode::Strict {
        let failures = strict_failures(expected, actual, argument_mode);
        (!failures.is_empty()).then(|| join_capped(failures.into_iter(), "; "))
    } else {
        TrajectoryComparison::new(expected, actual, trajectory_mode, argument_mode).explain_failures()
    };
    match explanation {
        None => Score::pass(TRAJECTORY_MATCH),
        Some(explanation) => Score::fail(TRAJECTORY_MATCH, explanation),
    }
}

/// Strict mode compares position by position; a pairing has nothing to choose.
fn strict_failures(expected: &[ExpectedCall], actual: &[ActualCall<'_>], argument_mode: ArgumentMode) -> Vec<String> {
    let mut failures = Vec::new();
    if expected.len() != actual.len() {
        failures.push(format!("expected {} calls, got {}", expected.len(), actual.len()));
    }
    for position in 0..expected.len().max(actual.len()) {
        let number = position + 1;
        match (expected.get(position), actual.get(position)) {
            (Some(expected_call), Some(actual_call)) if expected_call.name != actual_call.name => {
                failures.push(format!("position {number}: expected {}, got {}", expected_call.name, actual_call.name));
            }
            (Some(expected_call), Some(actual_call)) => {
                if let Some(difference) = argument_differences(expected_call, actual_call, argument_mode).first() {
                    failures.push(format!("position {number}: {} {difference}", actual_call.name));
                }
            }
            (Some(expected_call), None) => {
                failures.push(format!("position {number}: expected {}, got no call", expected_call.name));
            }
            (None, Some(actual_call)) => {
                failures.push(format!("position {number}: expected no call, got {}", actual_call.name));
            }
            (None, None) => {}
        }
    }
    failures
}

/// A call a trajectory mode needed matched, by its index on its side.
enum UnmatchedCall {
    Expected(usize),
    Actual(usize),
}

/// The unordered, subset and superset comparisons: which actual calls fit
/// which expected calls, and the best pairing of them. The work is one
/// argument comparison per pair of calls to the same tool, then the matching.
struct TrajectoryComparison<'a> {
    expected: &'a [ExpectedCall],
    actual: &'a [ActualCall<'a>],
    trajectory_mode: TrajectoryMode,
    argument_mode: ArgumentMode,
    /// Indices of the expected calls to each tool, so a call is only ever
    /// compared with calls to the same tool.
    expected_calls_by_name: HashMap<&'a str, Vec<usize>>,
    /// Indices of the actual calls to each tool.
    actual_calls_by_name: HashMap<&'a str, Vec<usize>>,
    /// For each expected call, the actual calls that fit it (same name,
    /// arguments accepted by the argument mode), in call order.
    fitting_actual_calls: Vec<Vec<usize>>,
    /// For each actual call, the expected calls it fits, in reference order.
    fitting_expected_calls: Vec<Vec<usize>>,
    matching: Matching,
}

impl<'a> TrajectoryComparison<'a> {
    fn new(
        expected: &'a [ExpectedCall],
        actual: &'a [ActualCall<'a>],
        trajectory_mode: TrajectoryMode,
        argument_mode: ArgumentMode,
    ) -> Self {
        let expected_calls_by_name = indices_by_name(expected.iter().map(|call| call.name.as_str()));
        let actual_calls_by_name = indices_by_name(actual.iter().map(|call| call.name));
        let fitting_actual_calls: Vec<Vec<usize>> = expected
            .iter()
            .map(|expected_call| {
                same_name(&actual_calls_by_name, &expected_call.name)
                    .iter()
                    .copied()
                    .filter(|&index| argument_differences(expected_call, &actual[index], argument_mode).is_empty())
                    .collect()
            })
            .collect();
        let mut fitting_expected_calls = vec![Vec::new(); actual.len()];
        for (expected_index, fitting) in fitting_actual_calls.iter().enumerate() {
            for &actual_index in fitting {
                fitting_expected_calls[actual_index].push(expected_index);
            }
        }
        let matching = Matching::maximum(&fitting_actual_calls, actual.len());
        TrajectoryComparison {
            expected,
            actual,
            trajectory_mode,
            argument_mode,
            expected_calls_by_name,
            actual_calls_by_name,
            fitting_actual_calls,
            fitting_expected_calls,
            matching,
        }
    }

    /// Explains every call the mode needs matched but the matching left out,
    /// or returns `None` when there is none. Only the calls the comment lists
    /// are explained: each explanation scans the other side's calls.
    fn explain_failures(&self) -> Option<String> {
        let mut unmatched = Vec::new();
        if matches!(self.trajectory_mode, TrajectoryMode::Unordered | TrajectoryMode::Superset) {
            let expected_indices = 0..self.expected.len();
            unmatched.extend(
                expected_indices
                    .filter(|&index| self.matching.actual_for_expected[index].is_none())
                    .map(UnmatchedCall::Expected),
            );
        }
        if matches!(self.trajectory_mode, TrajectoryMode::Unordered | TrajectoryMode::Subset) {
            let actual_indices = 0..self.actual.len();
            unmatched.extend(
                actual_indices
                    .filter(|&index| self.matching.expected_for_actual[index].is_none())
                    .map(UnmatchedCall::Actual),
            );
        }
        if unmatched.is_empty() {
            return None;
        }
        let explanations = unmatched.into_iter().map(|call| match call {
            UnmatchedCall::Expected(index) => self.explain_unmatched_expected_call(index),
            UnmatchedCall::Actual(index) => self.explain_unmatched_actual_call(index),
        });
        Some(join_capped(explanations, "; "))
    }

    fn explain_unmatched_expected_call(&self, expected_index: usize) -> String {
        let expected_call = &self.expected[expected_index];
        let subject = format!("expected call #{} {} was not matched", expected_index + 1, self.describe(expected_call));
        let fitting = &self.fitting_actual_calls[expected_index];
        if !fitting.is_empty() {
            // In a maximum matching an unmatched expected call has no free
            // fitting actual call (else the pair would enlarge the matching),
            // so every one that fits it is paired elsewhere.
            let pairs = fitting.iter().map(|&actual_index| {
                let partner = self.matching.expected_for_actual[actual_index];
                format!("actual call #{} with expected call #{}", actual_index + 1, call_number(partner))
            });
            let pairs = join_capped(pairs, ", ");
            return format!(
                "{subject}: every actual call that fits it is already paired with another expected call ({pairs})"
            );
        }
        let closest = same_name(&self.actual_calls_by_name, &expected_call.name)
            .iter()
            .map(|&index| (index, argument_differences(expected_call, &self.actual[index], self.argument_mode)))
            .min_by_key(|(index, differences)| {
                (closeness_rank(differences), self.matching.expected_for_actual[*index].is_some())
            });
        let Some((actual_index, differences)) = closest else {
            return format!("{subject}: the agent never called {}", expected_call.name);
        };
        let mut explanation = format!("{subject}: closest actual call #{} {}", actual_index + 1, expected_call.name);
        if let Some(difference) = differences.first() {
            explanation.push_str(&format!(" {difference}"));
        }
        if let Some(partner) = self.matching.expected_for_actual[actual_index] {
            explanation.push_str(&format!(" (it is paired with expected call #{})", partner + 1));
        }
        explanation
    }

    fn explain_unmatched_actual_call(&self, actual_index: usize) -> String {
        let actual_call = &self.actual[actual_index];
        let subject = format!(
            "actual call #{} {} is not in the expected trajectory (mode {})",
            actual_index + 1,
            actual_call.name,
            self.trajectory_mode
        );
        let fitted = &self.fitting_expected_calls[actual_index];
        if !fitted.is_empty() {
            // As for expected calls: every expected call it fits is taken.
            let pairs = fitted.iter().map(|&expected_index| {
                let partner = self.matching.actual_for_expected[expected_index];
                format!("expected call #{} with actual call #{}", expected_index + 1, call_number(partner))
            });
            let pairs = join_capped(pairs, ", ");
            return format!(
                "{subject}: every expected call it fits is already paired with another actual call ({pairs})"
            );
        }
        let closest = same_name(&self.expected_calls_by_name, actual_call.name)
            .iter()
            .map(|&index| (index, argument_differences(&self.expected[index], actual_call, self.argument_mode)))
            .min_by_key(|(index, differences)| {
                (closeness_rank(differences), self.matching.actual_for_expected[*index].is_some())
            });
        let Some((expected_index, differences)) = closest else {
            return subject;
        };
        let mut explanation = format!(
            "{subject}: compared with the closest expected call #{} {}, it",
            expected_index + 1,
            self.describe(&self.expected[expected_index])
        );
        if let Some(difference) = differences.first() {
            explanation.push_str(&format!(" {difference}"));
        }
        explanation
    }

    /// The name, followed by the arguments when they are compared.
    fn describe(&self, call: &ExpectedCall) -> String {
        match &call.arguments {
            Some(arguments) if self.argument_mode != ArgumentMode::Ignore => {
                format!("{} {}", call.name, quote(arguments))
            }
            _ => call.name.clone(),
        }
    }
}

/// The indices of the calls to each tool name, in order.
fn indices_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, Vec<usize>> {
    let mut indices: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, name) in names.enumerate() {
        indices.entry(name).or_default().push(index);
    }
    indices
}

fn same_name<'m>(calls_by_name: &'m HashMap<&str, Vec<usize>>, name: &str) -> &'m [usize] {
    calls_by_name.get(name).map_or(&[], Vec::as_slice)
}

/// A call's 1-based number in comments. A maximum matching always has the
/// partner this is asked for; `#0` would betray a bug rather than hide it.
fn call_number(index: Option<usize>) -> usize {
    index.map_or(0, |index| index + 1)
}

/// Orders same-name calls by how far their arguments are from fitting:
/// fewest differing keys first, arguments that are not JSON last. Among
/// equally close calls, the caller prefers one not paired with anything,
/// since that is the call the agent most likely meant, then the earliest.
fn closeness_rank(differences: &[ArgumentDifference<'_>]) -> usize {
    match differences.first() {
        Some(ArgumentDifference::NotJson { .. }) => usize::MAX,
        _ => differences.len(),
    }
}

/// One reason an actual call's arguments do not fit an expected call's. It
/// displays as a phrase that follows the tool name in a comment.
#[derive(Debug)]
enum ArgumentDifference<'a> {
    NotJson {
        error: &'a str,
        text: &'a str,
    },
    /// Arguments compared as a whole because one side is not a JSON object.
    Whole {
        actual: &'a Value,
        expected: &'a Value,
    },
    DifferentValue {
        key: &'a str,
        actual: &'a Value,
        expected: &'a Value,
    },
    MissingKey {
        key: &'a str,
        expected: &'a Value,
    },
    UnexpectedKey {
        key: &'a str,
        actual: &'a Value,
    },
}

impl fmt::Display for ArgumentDifference<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgumentDifference::NotJson { error, text } => {
                write!(
                    formatter,
                    "has arguments that are not JSON ({error}): {}",
                    quote(&Value::String((*text).to_owned()))
                )
            }
            ArgumentDifference::Whole { actual, expected } => {
                write!(formatter, "has arguments {} (expected {})", quote(actual), quote(expected))
            }
            ArgumentDifference::DifferentValue { key, actual, expected } => {
                write!(formatter, "has {key} {} (expected {})", quote(actual), quote(expected))
            }
            ArgumentDifference::MissingKey { key, expected } => {
                write!(formatter, "lacks {key} (expected {})", quote(expected))
            }
            ArgumentDifference::UnexpectedKey { key, actual } => {
                write!(formatter, "has {key} {}, which the expected call does not have", quote(actual))
            }
        }
    }
}

/// Every way the actual call's arguments fail to fit the expected call's under
/// `mode`: the expected keys first, in the reference's key order, then the keys
/// only the agent passed. Empty when they fit. Names are not compared here.
fn argument_differences<'a>(
    expected: &'a ExpectedCall,
    actual: &'a ActualCall<'_>,
    mode: ArgumentMode,
) -> Vec<ArgumentDifference<'a>> {
    let Some(expected_arguments) = &expected.arguments else { return Vec::new() };
    if mode == ArgumentMode::Ignore {
        return Vec::new();
    }
    let actual_arguments = match &actual.arguments {
        Ok(arguments) => arguments,
        Err(error) => return vec![ArgumentDifference::NotJson { error, text: actual.arguments_text }],
    };
    match (expected_arguments, actual_arguments) {
        (Value::Object(expected_map), Value::Object(actual_map)) => key_differences(expected_map, actual_map, mode),
        _ if json_equal(expected_arguments, actual_arguments) => Vec::new(),
        _ => vec![ArgumentDifference::Whole { actual: actual_arguments, expected: expected_arguments }],
    }
}

fn key_differences<'a>(
    expected: &'a Map<String, Value>,
    actual: &'a Map<String, Value>,
    mode: ArgumentMode,
) -> Vec<ArgumentDifference<'a>> {
    let check_expected_keys = matches!(mode, ArgumentMode::Exact | ArgumentMode::Superset);
    let check_actual_keys = matches!(mode, ArgumentMode::Exact | ArgumentMode::Subset);
    let mut differences = Vec::new();
    if check_expected_keys {
        for (key, expected_value) in expected {
            match actual.get(key) {
                None => differences.push(ArgumentDifference::MissingKey { key, expected: expected_value }),
                Some(actual_value) if !json_equal(expected_value, actual_value) => {
                    differences.push(ArgumentDifference::DifferentValue {
                        key,
                        actual: actual_value,
                        expected: expected_value,
                    });
                }
                Some(_) => {}
            }
        }
    }
    if check_actual_keys {
        for (key, actual_value) in actual {
            match expected.get(key) {
                None => differences.push(ArgumentDifference::UnexpectedKey { key, actual: actual_value }),
                // Shared keys were already compared above in exact mode.
                Some(expected_value) if !check_expected_keys && !json_equal(expected_value, actual_value) => {
                    differences.push(ArgumentDifference::DifferentValue {
                        key,
                        actual: actual_value,
                        expected: expected_value,
                    });
                }
                Some(_) => {}
            }
        }
    }
    differences
}

/// Structural JSON equality: object key order does not matter (serde_json maps
/// already ignore it) and numbers compare by value, so `1` equals `1.0`, which
/// `Value`'s own `==` denies.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => numbers_equal(left, right),
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(left, right)| json_equal(left, right))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left.iter().all(|(key, left)| right.get(key).is_some_and(|right| json_equal(left, right)))
        }
        _ => left == right,
    }
}

fn numbers_equal(left: &Number, right: &Number) -> bool {
    if left.is_f64() || right.is_f64() { left.as_f64() == right.as_f64() } else { left == right }
}

/// A JSON value as compact JSON, cut to a readable length.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= QUOTED_VALUE_CHARACTERS_MAX {
        return text;
    }
    let mut shortened: String = text.chars().take(QUOTED_VALUE_CHARACTERS_MAX).collect();
    shortened.push('…');
    shortened
}

/// Joins the first [`FAILURES_LISTED_MAX`] items and counts the rest.
fn join_capped(items: impl ExactSizeIterator<Item = String>, separator: &str) -> String {
    let left_out = items.len().saturating_sub(FAILURES_LISTED_MAX);
    let mut text = items.take(FAILURES_LISTED_MAX).collect::<Vec<_>>().join(separator);
    if left_out > 0 {
        text.push_str(&format!("{separator}and {left_out} more"));
    }
    text
}

/// A maximum-cardinality matching between expected calls and actual calls.
#[derive(Debug)]
struct Matching {
    actual_for_expected: Vec<Option<usize>>,
    expected_for_actual: Vec<Option<usize>>,
}

/// Layer of an expected call that no alternating path from a free expected
/// call reaches in the current phase.
const UNREACHED: usize = usize::MAX;

impl Matching {
    /// Hopcroft–Karp: each phase finds the shortest augmenting paths with a
    /// breadth-first search, then augments along vertex-disjoint ones with a
    /// depth-first search, O(E·√V) in all. Plain augmenting paths (Kuhn) would
    /// also be optimal but O(V·E), too slow under a fuel budget for an agent
    /// that repeats one tool hundreds of times.
    fn maximum(fitting_actual_calls: &[Vec<usize>], actual_count: usize) -> Matching {
        let expected_count = fitting_actual_calls.len();
        let mut matching =
            Matching { actual_for_expected: vec![None; expected_count], expected_for_actual: vec![None; actual_count] };
        let mut layer = vec![UNREACHED; expected_count];
        while let Some(shortest_path_layer) = matching.build_layers(fitting_actual_calls, &mut layer) {
            let mut next_edge = vec![0; expected_count];
            for expected in 0..expected_count {
                if matching.actual_for_expected[expected].is_none() {
                    matching.augment_from(
                        expected,
                        fitting_actual_calls,
                        &mut layer,
                        &mut next_edge,
                        shortest_path_layer,
                    );
                }
            }
        }
        matching
    }

    /// Breadth-first search from every free expected call along alternating
    /// paths (any edge to an actual call, then its matched edge back). Sets
    /// each reached expected call's layer and returns the layer from which a
    /// free actual call is first reached, or `None` when the matching is maximum.
    fn build_layers(&self, fitting_actual_calls: &[Vec<usize>], layer: &mut [usize]) -> Option<usize> {
        let mut queue = VecDeque::new();
        for (expected, expected_layer) in layer.iter_mut().enumerate() {
            if self.actual_for_expected[expected].is_none() {
                *expected_layer = 0;
                queue.push_back(expected);
            } else {
                *expected_layer = UNREACHED;
            }
        }
        let mut shortest_path_layer = None;
        while let Some(expected) = queue.pop_front() {
            // Paths longer than the shortest augmenting path wait for a later phase.
            if shortest_path_layer.is_some_and(|shortest| layer[expected] >= shortest) {
                continue;
            }
            for &actual in &fitting_actual_calls[expected] {
                match self.expected_for_actual[actual] {
                    None => {
                        shortest_path_layer.get_or_insert(layer[expected]);
                    }
                    Some(partner) if layer[partner] == UNREACHED => {
                        layer[partner] = layer[expected] + 1;
                        queue.push_back(partner);
                    }
                    Some(_) => {}
                }
            }
        }
        shortest_path_layer
    }

    /// Depth-first search, without recursion so a long path cannot overflow
    /// the small WebAssembly stack, for an augmenting path from the free
    /// expected call `root` that follows the layers. On success, flips every
    /// edge of the path, which grows the matching by one.
    fn augment_from(
        &mut self,
        root: usize,
        fitting_actual_calls: &[Vec<usize>],
        layer: &mut [usize],
        next_edge: &mut [usize],
        shortest_path_layer: usize,
    ) -> bool {
        let mut path = vec![root];
        while let Some(&expected) = path.last() {
            let Some(&actual) = fitting_actual_calls[expected].get(next_edge[expected]) else {
                // A dead end for this phase: no other path needs to try it again.
                layer[expected] = UNREACHED;
                path.pop();
                continue;
            };
            next_edge[expected] += 1;
            match self.expected_for_actual[actual] {
                None if layer[expected] == shortest_path_layer => {
                    // Each call on the path takes the actual call its last
                    // tried edge leads to; the one before held it until now.
                    for &on_path in &path {
                        let taken = fitting_actual_calls[on_path][next_edge[on_path] - 1];
                        self.actual_for_expected[on_path] = Some(taken);
                        self.expected_for_actual[taken] = Some(on_path);
                    }
                    return true;
                }
                Some(partner) if layer[partner] == layer[expected] + 1 => {
                    path.push(partner);
                }
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_sdk::testing::case;
    use serde_json::json;

    /// Grades an example with these `outputs` against a run that made `calls`.
    fn grade(outputs: Value, calls: Value, config: &str) -> Vec<Score> {
        let example = json!({"id": "e1",
            "inputs": {"messages": [{"role": "user", "content": "My 4-year-old has had a fever for 3 days."}]},
            "outputs": outputs});
        let run =
            json!({"outputs": {"messages": [{"role": "assistant", "content": "Paging now."}], "tool_calls": calls}});
        let config = assay_sdk::config_from_json(config).expect("config parses");
        let scores = MustCall::grade(&case(&example.to_string(), &run.to_string()), &config).expect("grades");
        let keys: Vec<&str> = scores.iter().map(|score| score.key.as_str()).collect();
        assert_eq!(keys, [REQUIRED_TOOLS_CALLED, FORBIDDEN_TOOLS_AVOIDED, TRAJECTORY_MATCH]);
        scores
    }

    fn score(scores: &[Score], key: &str) -> (f64, String) {
        let score = scores.iter().find(|score| score.key == key).expect("score present");
        (score.value, score.comment.clone().unwrap_or_default())
    }

    /// The `trajectory_match` score for a reference trajectory and the agent's calls.
    fn trajectory(reference: Value, calls: Value, config: &str) -> (f64, String) {
        score(&grade(json!({"reference": reference}), calls, config), TRAJECTORY_MATCH)
    }

    fn assert_passes((value, comment): (f64, String)) {
        assert_eq!(value, 1.0, "expected a pass, got: {comment}");
    }

    /// Asserts a failure whose comment contains every one of `parts`; returns the comment.
    fn assert_fails((value, comment): (f64, String), parts: &[&str]) -> String {
        assert_eq!(value, 0.0, "expected a failure");
        for part in parts {
            assert!(comment.contains(part), "comment lacks {part:?}: {comment}");
        }
        comment
    }

    fn names(names: &[&str]) -> Value {
        Value::Array(names.iter().map(|name| json!({"name": name, "args": {}})).collect())
    }

    #[test]
    fn info_declares_the_three_score_keys_and_a_json_schema() {
        let info = MustCall::info();
        assert_eq!(info.name, "must_call");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.score_keys, [REQUIRED_TOOLS_CALLED, FORBIDDEN_TOOLS_AVOIDED, TRAJECTORY_MATCH]);
        let schema: Value = serde_json::from_str(&info.config_schema).expect("schema is JSON");
        assert_eq!(schema["properties"]["trajectory"]["enum"], json!(["strict", "unordered", "subset", "superset"]));
    }

    #[test]
    fn required_tools_all_called_scores_one() {
        let scores = grade(
            json!({"must_call": ["lookup_clinic_hours", "page_on_call"]}),
            names(&["page_on_call", "lookup_clinic_hours", "page_on_call"]),
            "{}",
        );
        assert_eq!(score(&scores, REQUIRED_TOOLS_CALLED), (1.0, String::new()));
    }

    #[test]
    fn required_tools_partly_called_score_the_fraction_and_name_the_missing() {
        let scores = grade(
            json!({"must_call": ["lookup_clinic_hours", "page_on_call", "schedule_callback", "page_on_call"]}),
            names(&["page_on_call"]),
            "{}",
        );
        let (value, comment) = score(&scores, REQUIRED_TOOLS_CALLED);
        assert!((value - 1.0 / 3.0).abs() < 1e-12, "{value}");
        assert_eq!(comment, "did not call 2 of 3 required tools: lookup_clinic_hours, schedule_callback");
    }

    #[test]
    fn no_required_tools_scores_one() {
        let scores = grade(json!({}), names(&["page_on_call"]), "{}");
        assert_eq!(score(&scores, REQUIRED_TOOLS_CALLED), (1.0, String::new()));
        assert_passes(score(&scores, TRAJECTORY_MATCH));
    }

    #[test]
    fn required_tools_include_the_reference_trajectory_names() {
        let scores = grade(
            json!({"must_call": ["page_on_call"], "reference": names(&["lookup_clinic_hours"])}),
            names(&["page_on_call"]),
            "{}",
        );
        let (value, comment) = score(&scores, REQUIRED_TOOLS_CALLED);
        assert_eq!(value, 0.5);
        assert!(comment.ends_with("lookup_clinic_hours"), "{comment}");
    }

    #[test]
    fn forbidden_tool_calls_score_zero_and_name_each_position() {
        let scores = grade(
            json!({"must_not_call": ["cancel_appointment", "share_records"]}),
            names(&["lookup_clinic_hours", "cancel_appointment", "page_on_call", "cancel_appointment"]),
            "{}",
        );
        assert_eq!(
            score(&scores, FORBIDDEN_TOOLS_AVOIDED),
            (0.0, "called forbidden tools: cancel_appointment at position 2, cancel_appointment at position 4".into())
        );
    }

    #[test]
    fn no_forbidden_tool_call_scores_one() {
        let scores = grade(json!({"must_not_call": ["cancel_appointment"]}), names(&["page_on_call"]), "{}");
        assert_eq!(score(&scores, FORBIDDEN_TOOLS_AVOIDED), (1.0, String::new()));
    }

    #[test]
    fn default_superset_allows_extra_calls() {
        let scores = grade(
            json!({"must_call": ["page_on_call"]}),
            names(&["lookup_clinic_hours", "page_on_call", "schedule_callback"]),
            "{}",
        );
        assert_passes(score(&scores, TRAJECTORY_MATCH));
    }

    #[test]
    fn default_superset_fails_when_an_expected_tool_is_never_called() {
        let scores = grade(json!({"must_call": ["page_on_call"]}), names(&["lookup_clinic_hours"]), "{}");
        let comment = assert_fails(score(&scores, TRAJECTORY_MATCH), &[]);
        assert_eq!(comment, "expected call #1 page_on_call was not matched: the agent never called page_on_call");
    }

    #[test]
    fn strict_passes_the_same_calls_in_the_same_order() {
        let reference = names(&["lookup_clinic_hours", "page_on_call"]);
        let config = r#"{"trajectory": "strict"}"#;
        assert_passes(trajectory(reference, names(&["lookup_clinic_hours", "page_on_call"]), config));
    }

    #[test]
    fn strict_fails_on_the_wrong_order_naming_each_position() {
        let reference = names(&["lookup_clinic_hours", "page_on_call"]);
        let comment = assert_fails(
            trajectory(reference, names(&["page_on_call", "lookup_clinic_hours"]), r#"{"trajectory": "strict"}"#),
            &[],
        );
        assert_eq!(
            comment,
            "position 1: expected lookup_clinic_hours, got page_on_call; \
             position 2: expected page_on_call, got lookup_clinic_hours"
        );
    }

    #[test]
    fn strict_fails_on_a_missing_or_an_extra_call() {
        let reference = names(&["lookup_clinic_hours", "page_on_call"]);
        let config = r#"{"trajectory": "strict"}"#;
        let comment = assert_fails(trajectory(reference.clone(), names(&["lookup_clinic_hours"]), config), &[]);
        assert_eq!(comment, "expected 2 calls, got 1; position 2: expected page_on_call, got no call");
        let extra = names(&["lookup_clinic_hours", "page_on_call", "schedule_callback"]);
        let comment = assert_fails(trajectory(reference, extra, config), &[]);
        assert_eq!(comment, "expected 2 calls, got 3; position 3: expected no call, got schedule_callback");
    }

    #[test]
    fn strict_fails_on_different_arguments_at_a_position() {
        let reference = json!([{"name": "lookup_clinic_hours", "args": {"clinic_id": "clinic_482"}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "lookup_clinic_hours", "args": {"clinic_id": "clinic_482"}},
                           {"name": "page_on_call", "args": {"clinic_id": "clinic_999"}}]);
        let comment = assert_fails(trajectory(reference, calls, r#"{"trajectory": "strict"}"#), &[]);
        assert_eq!(comment, r#"position 2: page_on_call has clinic_id "clinic_999" (expected "clinic_482")"#);
    }

    #[test]
    fn unordered_passes_the_same_calls_in_any_order() {
        let reference = names(&["lookup_clinic_hours", "page_on_call", "page_on_call"]);
        let calls = names(&["page_on_call", "lookup_clinic_hours", "page_on_call"]);
        assert_passes(trajectory(reference, calls, r#"{"trajectory": "unordered"}"#));
    }

    #[test]
    fn unordered_fails_on_an_extra_call_and_on_a_missing_call() {
        let config = r#"{"trajectory": "unordered"}"#;
        let reference = names(&["lookup_clinic_hours", "page_on_call"]);
        let extra = names(&["page_on_call", "schedule_callback", "lookup_clinic_hours"]);
        let comment = assert_fails(trajectory(reference.clone(), extra, config), &[]);
        assert_eq!(comment, "actual call #2 schedule_callback is not in the expected trajectory (mode unordered)");
        assert_fails(
            trajectory(reference, names(&["page_on_call"]), config),
            &["expected call #1 lookup_clinic_hours was not matched: the agent never called lookup_clinic_hours"],
        );
    }

    #[test]
    fn unordered_counts_repeated_calls() {
        let config = r#"{"trajectory": "unordered"}"#;
        let reference = names(&["page_on_call", "page_on_call"]);
        assert_fails(
            trajectory(reference.clone(), names(&["page_on_call"]), config),
            &["expected call #2 page_on_call was not matched: every actual call that fits it is already paired \
               with another expected call (actual call #1 with expected call #1)"],
        );
        assert_fails(
            trajectory(reference, names(&["page_on_call"; 3]), config),
            &["actual call #3 page_on_call is not in the expected trajectory (mode unordered): every expected call \
               it fits is already paired with another actual call"],
        );
    }

    #[test]
    fn subset_passes_when_the_agent_skips_expected_calls() {
        let reference = names(&["lookup_clinic_hours", "page_on_call", "schedule_callback"]);
        assert_passes(trajectory(reference, names(&["page_on_call"]), r#"{"trajectory": "subset"}"#));
    }

    #[test]
    fn subset_fails_on_a_call_outside_the_trajectory() {
        let reference = names(&["lookup_clinic_hours", "page_on_call"]);
        let calls = names(&["lookup_clinic_hours", "page_on_call", "schedule_callback"]);
        let comment = assert_fails(trajectory(reference, calls, r#"{"trajectory": "subset"}"#), &[]);
        assert_eq!(comment, "actual call #3 schedule_callback is not in the expected trajectory (mode subset)");
    }

    #[test]
    fn subset_names_the_closest_expected_call_for_an_unmatched_actual_call() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_999"}}]);
        let comment = assert_fails(trajectory(reference, calls, r#"{"trajectory": "subset"}"#), &[]);
        assert_eq!(
            comment,
            r#"actual call #1 page_on_call is not in the expected trajectory (mode subset): compared with the closest expected call #1 page_on_call {"clinic_id":"clinic_482"}, it has clinic_id "clinic_999" (expected "clinic_482")"#
        );
    }

    #[test]
    fn superset_passes_with_extra_calls() {
        let reference = names(&["page_on_call"]);
        let calls = names(&["lookup_clinic_hours", "page_on_call", "page_on_call"]);
        assert_passes(trajectory(reference, calls, r#"{"trajectory": "superset"}"#));
    }

    #[test]
    fn unmatched_expected_call_names_the_closest_actual_call_and_the_differing_key() {
        let reference = json!([{"name": "lookup_clinic_hours", "args": {"clinic_id": "clinic_482"}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_999"}},
                           {"name": "lookup_clinic_hours", "args": {"clinic_id": "clinic_482"}}]);
        let comment = assert_fails(trajectory(reference, calls, "{}"), &[]);
        assert_eq!(
            comment,
            r#"expected call #2 page_on_call {"clinic_id":"clinic_482"} was not matched: closest actual call #1 page_on_call has clinic_id "clinic_999" (expected "clinic_482")"#
        );
    }

    #[test]
    fn exact_arguments_need_equal_json_in_any_key_order_and_number_form() {
        let reference =
            json!([{"name": "schedule_callback", "args": {"minutes": 15, "patient": {"age": 4, "name": "Ana"}}}]);
        let calls =
            json!([{"name": "schedule_callback", "args": {"patient": {"name": "Ana", "age": 4.0}, "minutes": 15.0}}]);
        assert_passes(trajectory(reference, calls, r#"{"arguments": "exact"}"#));
    }

    #[test]
    fn exact_arguments_fail_on_an_extra_a_missing_or_a_different_key() {
        let config = r#"{"arguments": "exact"}"#;
        let reference = json!([{"name": "schedule_callback", "args": {"minutes": 15}}]);
        let extra = json!([{"name": "schedule_callback", "args": {"minutes": 15, "urgent": true}}]);
        assert_fails(
            trajectory(reference.clone(), extra, config),
            &["closest actual call #1 schedule_callback has urgent true, which the expected call does not have"],
        );
        let missing = json!([{"name": "schedule_callback", "args": {}}]);
        assert_fails(
            trajectory(reference.clone(), missing, config),
            &["schedule_callback lacks minutes (expected 15)"],
        );
        let different = json!([{"name": "schedule_callback", "args": {"minutes": 15.5}}]);
        assert_fails(trajectory(reference, different, config), &["has minutes 15.5 (expected 15)"]);
    }

    #[test]
    fn subset_arguments_allow_missing_keys_but_not_extra_or_different_ones() {
        let config = r#"{"arguments": "subset"}"#;
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482", "urgency": "high"}}]);
        let fewer = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        assert_passes(trajectory(reference.clone(), fewer, config));
        let extra = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482", "note": "fever"}}]);
        assert_fails(
            trajectory(reference.clone(), extra, config),
            &[r#"has note "fever", which the expected call does not have"#],
        );
        let different = json!([{"name": "page_on_call", "args": {"urgency": "low"}}]);
        assert_fails(trajectory(reference, different, config), &[r#"has urgency "low" (expected "high")"#]);
    }

    #[test]
    fn superset_arguments_allow_extra_keys_but_not_missing_or_different_ones() {
        let config = r#"{"arguments": "superset"}"#;
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let extra = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482", "note": "fever"}}]);
        assert_passes(trajectory(reference.clone(), extra, config));
        let missing = json!([{"name": "page_on_call", "args": {"note": "fever"}}]);
        assert_fails(
            trajectory(reference.clone(), missing, config),
            &[r#"closest actual call #1 page_on_call lacks clinic_id (expected "clinic_482")"#],
        );
        let different = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_999", "note": "fever"}}]);
        assert_fails(trajectory(reference, different, config), &[r#"has clinic_id "clinic_999""#]);
    }

    #[test]
    fn ignored_arguments_compare_names_only() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_999", "note": "fever"}}]);
        assert_passes(trajectory(reference, calls, r#"{"arguments": "ignore"}"#));
    }

    /// The default `superset` makes the agent pass every expected argument
    /// and lets it add its own.
    #[test]
    fn default_argument_mode_is_superset_when_the_trajectory_carries_arguments() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        assert_fails(
            trajectory(reference.clone(), json!([{"name": "page_on_call", "args": {}}]), "{}"),
            &["clinic_id"],
        );
        let extra = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482", "note": "fever"}}]);
        assert_passes(trajectory(reference, extra, "{}"));
    }

    #[test]
    fn default_argument_mode_is_ignore_when_no_expected_call_carries_arguments() {
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_999"}}]);
        assert_passes(trajectory(names(&["page_on_call"]), calls.clone(), "{}"));
        // `must_call` names never constrain arguments, whatever the mode.
        let scores = grade(json!({"must_call": ["page_on_call"]}), calls, r#"{"arguments": "exact"}"#);
        assert_passes(score(&scores, TRAJECTORY_MATCH));
    }

    #[test]
    fn trajectory_entries_without_arguments_accept_any_arguments() {
        let reference =
            json!([{"name": "lookup_clinic_hours"}, {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "lookup_clinic_hours", "args": {"day": "sunday"}},
                           {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        assert_passes(trajectory(reference, calls, r#"{"arguments": "exact"}"#));
    }

    /// Expected call #1 fits both actual calls; first-fit gives it actual call
    /// #1, the only one expected call #2 fits, and then fails. The maximum
    /// matching pairs #1 with #2 and #2 with #1.
    #[test]
    fn optimal_matching_finds_the_pairing_greedy_first_fit_misses() {
        let config = r#"{"arguments": "superset"}"#;
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                           {"name": "page_on_call", "args": {"clinic_id": "clinic_999"}}]);
        let reference = json!([{"name": "page_on_call", "args": {}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        assert_passes(trajectory(reference, calls.clone(), config));
        // The same calls listed the other way round must pass as well.
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                               {"name": "page_on_call", "args": {}}]);
        assert_passes(trajectory(reference, calls, config));
    }

    /// The same trap seen from the actual calls: in trajectory mode subset,
    /// first-fit over the agent's calls gives actual call #1 expected call #1,
    /// the only one actual call #2 fits.
    #[test]
    fn optimal_matching_pairs_every_actual_call_where_greedy_first_fit_strands_one() {
        let config = r#"{"trajectory": "subset", "arguments": "subset"}"#;
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482", "urgency": "high"}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                           {"name": "page_on_call", "args": {"clinic_id": "clinic_482", "urgency": "high"}}]);
        assert_passes(trajectory(reference.clone(), calls.clone(), config));
        assert_passes(trajectory(reference, calls, r#"{"trajectory": "unordered", "arguments": "subset"}"#));
    }

    /// A check that only asks "is there some fitting actual call?" for each
    /// expected call would pass this; each actual call may serve only one.
    #[test]
    fn one_actual_call_cannot_fill_two_expected_calls() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        assert_fails(
            trajectory(reference, calls, "{}"),
            &["expected call #2 page_on_call {\"clinic_id\":\"clinic_482\"} was not matched: every actual call \
               that fits it is already paired with another expected call (actual call #1 with expected call #1)"],
        );
    }

    /// Counting calls per tool name would pass this: two `page_on_call`
    /// expected, two made. The arguments make one pairing impossible.
    #[test]
    fn matching_counts_per_name_are_not_enough_when_arguments_differ() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_517"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                           {"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let comment = assert_fails(trajectory(reference, calls, r#"{"trajectory": "unordered"}"#), &[]);
        assert_eq!(
            comment,
            r#"expected call #2 page_on_call {"clinic_id":"clinic_517"} was not matched: closest actual call #2 page_on_call has clinic_id "clinic_482" (expected "clinic_517"); actual call #2 page_on_call is not in the expected trajectory (mode unordered): every expected call it fits is already paired with another actual call (expected call #1 with actual call #1)"#
        );
    }

    #[test]
    fn closest_actual_call_already_paired_elsewhere_is_said_to_be() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}},
                               {"name": "page_on_call", "args": {"clinic_id": "clinic_517"}}]);
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        assert_fails(
            trajectory(reference, calls, "{}"),
            &[
                r#"closest actual call #1 page_on_call has clinic_id "clinic_482" (expected "clinic_517") (it is paired with expected call #1)"#,
            ],
        );
    }

    #[test]
    fn arguments_that_are_not_json_are_a_mismatch_not_a_crash() {
        let reference = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]);
        let calls = json!([{"name": "page_on_call", "args": "{clinic_id: clinic_482"}]);
        let comment = assert_fails(trajectory(reference.clone(), calls.clone(), "{}"), &[]);
        assert!(
            comment.starts_with(
                r#"expected call #1 page_on_call {"clinic_id":"clinic_482"} was not matched: closest actual call #1 page_on_call has arguments that are not JSON ("#
            ) && comment.ends_with(r#"): "{clinic_id: clinic_482""#),
            "{comment}"
        );
        assert_fails(
            trajectory(reference.clone(), calls.clone(), r#"{"trajectory": "strict"}"#),
            &["position 1: page_on_call has arguments that are not JSON"],
        );
        // A well-formed call to the same tool is preferred as the closest one.
        let with_valid = json!([{"name": "page_on_call", "args": "not json"},
                                {"name": "page_on_call", "args": {"clinic_id": "clinic_999"}}]);
        assert_fails(
            trajectory(reference.clone(), with_valid, "{}"),
            &["closest actual call #2 page_on_call has clinic_id"],
        );
        assert_passes(trajectory(reference, calls, r#"{"arguments": "ignore"}"#));
    }

    #[test]
    fn blank_and_null_arguments_mean_no_arguments() {
        let reference = json!([{"name": "lookup_clinic_hours", "args": {}}, {"name": "page_on_call", "args": {}}]);
        let calls = json!([{"name": "lookup_clinic_hours", "args": ""}, {"name": "page_on_call", "args": "null"}]);
        assert_passes(trajectory(reference, calls, r#"{"trajectory": "strict", "arguments": "exact"}"#));
    }

    #[test]
    fn arguments_that_are_not_objects_are_compared_whole() {
        let reference = json!([{"name": "search", "args": ["fever", 3]}]);
        assert_passes(trajectory(reference.clone(), json!([{"name": "search", "args": ["fever", 3.0]}]), "{}"));
        assert_fails(
            trajectory(reference, json!([{"name": "search", "args": ["fever"]}]), "{}"),
            &[r#"has arguments ["fever"] (expected ["fever",3])"#],
        );
    }

    #[test]
    fn trajectory_under_a_tool_calls_key_in_openai_form_is_read() {
        let reference = json!({"tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "page_on_call", "arguments": "{\"clinic_id\": \"clinic_482\"}"}}]});
        let calls = json!([{"name": "page_on_call", "args": {"clinic_id": "clinic_999"}}]);
        assert_fails(trajectory(reference, calls, "{}"), &[r#"has clinic_id "clinic_999" (expected "clinic_482")"#]);
    }

    #[test]
    fn structured_reference_that_is_not_a_trajectory_falls_back_to_must_call() {
        let outputs = json!({"must_call": ["page_on_call"], "reference": {"answer": "paged", "steps": 2}});
        let scores = grade(outputs, names(&["lookup_clinic_hours"]), r#"{"trajectory": "strict"}"#);
        assert_fails(score(&scores, TRAJECTORY_MATCH), &["position 1: expected page_on_call, got lookup_clinic_hours"]);
        let outputs = json!({"must_call": ["page_on_call"], "reference": [{"role": "assistant"}]});
        let scores = grade(outputs, names(&["page_on_call"]), r#"{"trajectory": "strict"}"#);
        assert_passes(score(&scores, TRAJECTORY_MATCH));
    }

    #[test]
    fn long_failure_lists_are_cut_with_a_count() {
        let scores = grade(json!({"must_call": []}), names(&["page_on_call"; 25]), r#"{"trajectory": "strict"}"#);
        let comment = assert_fails(score(&scores, TRAJECTORY_MATCH), &["expected 0 calls, got 25"]);
        assert!(comment.ends_with("position 9: expected no call, got page_on_call; and 16 more"), "{comment}");
    }

    #[test]
    fn unknown_mode_is_invalid_config_naming_the_allowed_values() {
        let error = assay_sdk::config_from_json::<Config>(r#"{"trajectory": "ordered"}"#).unwrap_err();
        assert!(
            matches!(&error, GradeError::InvalidConfig(message)
                if message.contains("ordered") && message.contains("`strict`, `unordered`, `subset`, `superset`")),
            "{error:?}"
        );
        let error = assay_sdk::config_from_json::<Config>(r#"{"arguments": "loose"}"#).unwrap_err();
        assert!(
            matches!(&error, GradeError::InvalidConfig(message)
                if message.contains("`exact`, `ignore`, `subset`, `superset`")),
            "{error:?}"
        );
    }

    #[test]
    fn unknown_config_key_is_refused() {
        let error = assay_sdk::config_from_json::<Config>(r#"{"trajectory_mode": "strict"}"#).unwrap_err();
        assert!(
            matches!(&error, GradeError::InvalidConfig(message) if message.contains("trajectory_mode")),
            "{error:?}"
        );
    }

    /// Hopcroft–Karp against an exhaustive search on every kind of small graph
    /// a pseudo-random generator comes up with.
    #[test]
    fn maximum_matching_agrees_with_exhaustive_search_on_small_graphs() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next_random = move || {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let expected_count = (next_random() % 7) as usize;
            let actual_count = (next_random() % 7) as usize;
            let density = next_random() % 100;
            let fitting: Vec<Vec<usize>> = (0..expected_count)
                .map(|_| (0..actual_count).filter(|_| next_random() % 100 < density).collect())
                .collect();
            let matching = Matching::maximum(&fitting, actual_count);
            let size = matching.actual_for_expected.iter().flatten().count();
            assert_eq!(size, exhaustive_maximum(&fitting, 0, &mut vec![false; actual_count]), "{fitting:?}");
            for (expected, actual) in matching.actual_for_expected.iter().enumerate() {
                if let Some(actual) = actual {
                    assert!(fitting[expected].contains(actual), "paired a call that does not fit: {fitting:?}");
                    assert_eq!(matching.expected_for_actual[*actual], Some(expected));
                }
            }
        }
    }

    fn exhaustive_maximum(fitting: &[Vec<usize>], expected: usize, taken: &mut [bool]) -> usize {
        if expected == fitting.len() {
            return 0;
        }
        let mut best = exhaustive_maximum(fitting, expected + 1, taken);
        for &actual in &fitting[expected] {
            if !taken[actual] {
                taken[actual] = true;
                best = best.max(1 + exhaustive_maximum(fitting, expected + 1, taken));
                taken[actual] = false;
            }
        }
        best
    }

    #[test]
    fn maximum_matching_handles_hundreds_of_identical_calls() {
        let fitting: Vec<Vec<usize>> = (0..500).map(|_| (0..600).collect()).collect();
        let matching = Matching::maximum(&fitting, 600);
        assert_eq!(matching.actual_for_expected.iter().flatten().count(), 500);
    }
}
