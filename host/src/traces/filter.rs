//! The LangSmith run-filter language, so the queries people already write to
//! find runs in LangSmith select production traces here unchanged.
//!
//! # Grammar
//!
//! ```text
//! filter     = call
//! call       = logical | comparison | has | search
//! logical    = ("and" | "or") "(" call ("," call)* ")"      one argument is accepted too
//!            | "not" "(" call ")"
//! comparison = ("eq" | "neq" | "gt" | "gte" | "lt" | "lte") "(" field "," scalar ")"
//!            | "in" "(" field "," list ")"
//! has        = "has" "(" "tags" "," string ")"
//! search     = "search" "(" string ")"
//! list       = "[" (scalar ("," scalar)*)? "]"
//! scalar     = string | number | "true" | "false" | "null"
//! string     = '"' … '"' | "'" … "'"    escapes \" \' \\ \/ \n \r \t \b \f \uXXXX (JSON surrogate pairs)
//! number     = "-"? digits ("." digits)? (("e" | "E") ("+" | "-")? digits)?
//! ```
//!
//! Whitespace may appear between any two tokens. Operator, field and keyword
//! names are lowercase and case-sensitive, as in LangSmith. A filter is at most
//! [`FILTER_BYTES_MAX`] bytes long and nests calls and lists at most
//! [`NESTING_DEPTH_MAX`] deep.
//!
//! # Fields and the values they take
//!
//! | Field | Value | Comparators |
//! |---|---|---|
//! | `id`, `name` | string | `eq neq gt gte lt lte in` (strings order by bytes) |
//! | `start_time`, `end_time` | RFC 3339 string | `eq neq gt gte lt lte in` |
//! | `latency` | seconds as a number, or `"500ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"` | `eq neq gt gte lt lte in` |
//! | `total_tokens` | number | `eq neq gt gte lt lte in` |
//! | `error` | `true`, `false`, the error text | `eq neq in` |
//! | `tags` | string | `has` only |
//! | `feedback_key`, `metadata_key`, `input_key`, `output_key` | string | `eq neq gt gte lt lte in` |
//! | `feedback_score` | number | `eq neq gt gte lt lte in` |
//! | `metadata_value`, `input_value`, `output_value` | string, number, boolean | `eq neq in`; `gt gte lt lte` with a string or number |
//!
//! Every field but `tags` also takes `null` with `eq`, `neq` and `in`.
//! Anything outside this table (an unknown field, `gt(tags, 3)`,
//! `has(latency, "x")`, `search(3)`, an unparsable timestamp or duration) is a
//! parse error that names the position.
//!
//! # Semantics
//!
//! - A value of the wrong type at evaluation time (a metadata value that is a
//!   number compared with a string, an object compared with anything) makes
//!   the comparison false, `neq` included. A missing value (no `end_time`, no
//!   latency, no score) matches only `eq(field, null)`; `neq(field, null)`
//!   matches when it is present.
//! - `latency` is the trace's `latency_ms`, else `end_time - start_time`.
//! - `error`: `eq(error, true)` and `neq(error, null)` match a trace with an
//!   error, `eq(error, false)` and `eq(error, null)` one without;
//!   `eq(error, "timeout")` compares the error text.
//! - Entries: feedback, metadata, inputs and outputs are lists of entries
//!   (feedback key and score; metadata key and value; input or output key and
//!   value). The comparisons of one family that are direct arguments of the
//!   same `and(...)` must all hold for **one** entry, as in LangSmith:
//!   `and(eq(feedback_key, "user_score"), lt(feedback_score, 3))` asks for a
//!   `user_score` below 3, not for some score below 3 next to some
//!   `user_score`. A comparison elsewhere asks for some entry satisfying it.
//!   To ask for two different entries, wrap each pair in its own `and(...)`.
//!   Comparisons nested in `or(...)` or `not(...)` form their own groups:
//!   `not(gte(feedback_score, 3))` means no entry has a score of 3 or more.
//! - Input entries are the top-level keys of `inputs` (`messages`, `tools`
//!   when present, `context` when present, and any other key) plus, when
//!   `context` is an object, `context.<key>` for each of its keys. Output
//!   entries are `messages`, `tool_calls` when present, and any other key of
//!   `outputs`. `messages` and `tools` have structured values that no
//!   `input_value`/`output_value` comparison matches.
//! - `has(tags, "x")`: the trace carries the tag `x`.
//! - `search("text")`: a case-insensitive (Unicode lowercase) substring of the
//!   trace's name, error, the content of its input and output messages, or
//!   the names, argument keys and argument string values of their tool calls.
//!   `search("")` matches every trace.
//! - `in(field, [a, b])` is `or(eq(field, a), eq(field, b))`; an empty list
//!   matches nothing.
//!
//! Evaluation allocates nothing per trace: search needles are lowercased,
//! timestamps and durations converted to milliseconds at parse time.
//!
//! A filter keeps a canonical text (single spaces after commas, double-quoted
//! strings, shortest numbers); parsing the canonical text gives the same
//! filter, so saved rules store it.

use super::Trace;
use crate::model::{Inputs, Message, RunOutputs, ToolCall};
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The longest filter text accepted, in bytes.
pub const FILTER_BYTES_MAX: usize = 16 * 1024;
/// The deepest nesting of calls and lists accepted.
pub const NESTING_DEPTH_MAX: usize = 64;

/// A parsed, checked filter, ready to evaluate against traces.
#[derive(Debug, Clone)]
pub struct Filter {
    text: String,
    root: Node,
    needs_body: bool,
}

/// Why a filter text was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct FilterError {
    /// Byte offset into the filter text, always on a character boundary and at most its length.
    pub position: usize,
    /// 1-based column of `position`, counted in characters from the start of
    /// the text (filters are one line in practice; a newline counts as one).
    pub column: usize,
    /// What was found and what was expected, without the position.
    pub message: String,
}

impl Filter {
    /// Parses and checks a filter.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > FILTER_BYTES_MAX {
            let mut position = FILTER_BYTES_MAX;
            while !text.is_char_boundary(position) {
                position -= 1;
            }
            return Err(error_at(
                text,
                position,
                format!("the filter is {} bytes long; the limit is {FILTER_BYTES_MAX} bytes", text.len()),
            ));
        }
        let expression = Parser { text, position: 0, item_starts: Vec::new() }.parse_filter()?;
        let mut canonical = String::with_capacity(text.len());
        expression.render(&mut canonical);
        // Canonical text can be longer than the input (an escaped control
        // character, a long integer in exponent form); refusing it here keeps
        // the promise that `parse(filter.text())` always succeeds.
        if canonical.len() > FILTER_BYTES_MAX {
            return Err(error_at(
                text,
                0,
                format!("the filter is longer than the limit of {FILTER_BYTES_MAX} bytes once written canonically"),
            ));
        }
        Ok(Filter { text: canonical, root: compile(&expression), needs_body: expression.needs_body() })
    }

    /// Whether `trace` matches the filter.
    pub fn matches(&self, trace: &Trace) -> bool {
        self.root.matches(trace)
    }

    /// True when evaluation reads more than a trace's summary: `search`,
    /// `input_key`/`input_value` or `output_key`/`output_value`.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// The canonical text; `Filter::parse(filter.text())` gives the same filter.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Two filters are equal when their canonical texts are.
impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        self.text == other.text
    }
}

impl Eq for Filter {}

impl fmt::Display for Filter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Filter, FilterError> {
        Filter::parse(text)
    }
}

/// A filter serializes as its canonical text.
impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// A filter deserializes from its text, with the parse error as the message.
impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Filter, D::Error> {
        let text = String::deserialize(deserializer)?;
        Filter::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Unix milliseconds of an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS`, an
/// optional fraction (digits past milliseconds are truncated), then `Z` or
/// `±hh:mm`. `t`, `z` and a space separator are accepted as RFC 3339 allows.
/// Returns `None` for anything else, including impossible dates.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |start: usize, length: usize| -> Option<i64> {
        bytes
            .get(start..start + length)?
            .iter()
            .try_fold(0_i64, |value, &byte| byte.is_ascii_digit().then(|| value * 10 + i64::from(byte - b'0')))
    };
    let separator = |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|byte| allowed.contains(byte));

    let year = number(0, 4)?;
    let month = number(5, 2)?;
    let day = number(8, 2)?;
    let hour = number(11, 2)?;
    let minute = number(14, 2)?;
    let second = number(17, 2)?;
    let separators_valid =
        separator(4, b"-") && separator(7, b"-") && separator(10, b"Tt ") && separator(13, b":") && separator(16, b":");
    if !separators_valid {
        return None;
    }

    let mut index = 19;
    let mut milliseconds = 0;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        let fraction_start = index;
        while let Some(byte) = bytes.get(index).filter(|byte| byte.is_ascii_digit()) {
            if index - fraction_start < 3 {
                milliseconds = milliseconds * 10 + i64::from(byte - b'0');
            }
            index += 1;
        }
        let digits = index - fraction_start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            milliseconds *= 10;
        }
    }

    let offset_seconds = match bytes.get(index) {
        Some(b'Z' | b'z') => {
            index += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let offset_hours = number(index + 1, 2)?;
            let offset_minutes = number(index + 4, 2)?;
            if !separator(index + 3, b":") || offset_hours > 23 || offset_minutes > 59 {
                return None;
            }
            index += 6;
            let magnitude = offset_hours * 3_600 + offset_minutes * 60;
            if sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    // RFC 3339 allows a leap second (60); it reads as the next minute's first.
    let fields_valid = index == bytes.len()
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    if !fields_valid {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1_000 + milliseconds)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Milliseconds of a duration string: a non-negative decimal number and one
/// of the units `ms`, `s`, `m`, `h`, `d` (`"500ms"`, `"1.5s"`, `"2m"`).
fn parse_duration_ms(text: &str) -> Option<f64> {
    let unit_start = text.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
    let (number, unit) = text.split_at(unit_start);
    let well_formed = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.bytes().filter(|&byte| byte == b'.').count() <= 1;
    if !well_formed {
        return None;
    }
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let milliseconds = number.parse::<f64>().ok()? * scale;
    milliseconds.is_finite().then_some(milliseconds)
}

fn error_at(text: &str, position: usize, message: String) -> FilterError {
    let column = text.char_indices().take_while(|&(index, _)| index < position).count() + 1;
    FilterError { position, column, message }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Name,
    StartTime,
    EndTime,
    Latency,
    TotalTokens,
    Error,
    Tags,
    FeedbackKey,
    FeedbackScore,
    MetadataKey,
    MetadataValue,
    InputKey,
    InputValue,
    OutputKey,
    OutputValue,
}

const FIELDS: [Field; 16] = [
    Field::Id,
    Field::Name,
    Field::StartTime,
    Field::EndTime,
    Field::Latency,
    Field::TotalTokens,
    Field::Error,
    Field::Tags,
    Field::FeedbackKey,
    Field::FeedbackScore,
    Field::MetadataKey,
    Field::MetadataValue,
    Field::InputKey,
    Field::InputValue,
    Field::OutputKey,
    Field::OutputValue,
];

/// What a field's values are, which decides the literals and comparators it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Time,
    Duration,
    Number,
    Error,
    Tags,
    Json,
}

/// The lists of entries a trace has; comparisons of one family in one `and` bind to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Feedback,
    Metadata,
    Input,
    Output,
}

const FAMILIES: [Family; 4] = [Family::Feedback, Family::Metadata, Family::Input, Family::Output];

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::StartTime => "start_time",
            Field::EndTime => "end_time",
            Field::Latency => "latency",
            Field::TotalTokens => "total_tokens",
            Field::Error => "error",
            Field::Tags => "tags",
            Field::FeedbackKey => "feedback_key",
            Field::FeedbackScore => "feedback_score",
            Field::MetadataKey => "metadata_key",
            Field::MetadataValue => "metadata_value",
            Field::InputKey => "input_key",
            Field::InputValue => "input_value",
            Field::OutputKey => "output_key",
            Field::OutputValue => "output_value",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        FIELDS.into_iter().find(|field| field.name() == name)
    }

    fn kind(self) -> Kind {
        match self {
            Field::Id | Field::Name | Field::FeedbackKey | Field::MetadataKey | Field::InputKey | Field::OutputKey => {
                Kind::Text
            }
            Field::StartTime | Field::EndTime => Kind::Time,
            Field::Latency => Kind::Duration,
            Field::TotalTokens | Field::FeedbackScore => Kind::Number,
            Field::Error => Kind::Error,
            Field::Tags => Kind::Tags,
            Field::MetadataValue | Field::InputValue | Field::OutputValue => Kind::Json,
        }
    }

    fn family(self) -> Option<Family> {
        match self {
            Field::FeedbackKey | Field::FeedbackScore => Some(Family::Feedback),
            Field::MetadataKey | Field::MetadataValue => Some(Family::Metadata),
            Field::InputKey | Field::InputValue => Some(Family::Input),
            Field::OutputKey | Field::OutputValue => Some(Family::Output),
            _ => None,
        }
    }
}

fn known_fields() -> String {
    FIELDS.iter().map(|field| field.name()).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logical {
    And,
    Or,
    Not,
}

impl Logical {
    fn name(self) -> &'static str {
        match self {
            Logical::And => "and",
            Logical::Or => "or",
            Logical::Not => "not",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparator {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Has,
}

impl Comparator {
    fn name(self) -> &'static str {
        match self {
            Comparator::Eq => "eq",
            Comparator::Neq => "neq",
            Comparator::Gt => "gt",
            Comparator::Gte => "gte",
            Comparator::Lt => "lt",
            Comparator::Lte => "lte",
            Comparator::In => "in",
            Comparator::Has => "has",
        }
    }

    /// The comparison a scalar comparator makes; `None` for `in` and `has`.
    fn operation(self) -> Option<Operation> {
        match self {
            Comparator::Eq => Some(Operation::Eq),
            Comparator::Neq => Some(Operation::Neq),
            Comparator::Gt => Some(Operation::Gt),
            Comparator::Gte => Some(Operation::Gte),
            Comparator::Lt => Some(Operation::Lt),
            Comparator::Lte => Some(Operation::Lte),
            Comparator::In | Comparator::Has => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Logical(Logical),
    Comparator(Comparator),
    Search,
}

const OPERATOR_NAMES: &str = "and, or, not, eq, neq, gt, gte, lt, lte, has, search, in";

impl Operator {
    fn from_name(name: &str) -> Option<Operator> {
        Some(match name {
            "and" => Operator::Logical(Logical::And),
            "or" => Operator::Logical(Logical::Or),
            "not" => Operator::Logical(Logical::Not),
            "eq" => Operator::Comparator(Comparator::Eq),
            "neq" => Operator::Comparator(Comparator::Neq),
            "gt" => Operator::Comparator(Comparator::Gt),
            "gte" => Operator::Comparator(Comparator::Gte),
            "lt" => Operator::Comparator(Comparator::Lt),
            "lte" => Operator::Comparator(Comparator::Lte),
            "in" => Operator::Comparator(Comparator::In),
            "has" => Operator::Comparator(Comparator::Has),
            "search" => Operator::Search,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------
// Syntax tree: what was written (for the canonical text) and what it means
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Expression {
    Logical { operator: Logical, arguments: Vec<Expression> },
    Compare { comparator: Comparator, field: Field, value: Literal, test: Test },
    HasTag { tag: String },
    Search { text: String },
}

/// A value as written, kept for the canonical text.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Literal>),
}

/// A value as compared: timestamps and durations are milliseconds.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Operation {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Operation::Eq => ordering == Ordering::Equal,
            Operation::Neq => ordering != Ordering::Equal,
            Operation::Gt => ordering == Ordering::Greater,
            Operation::Gte => ordering != Ordering::Less,
            Operation::Lt => ordering == Ordering::Less,
            Operation::Lte => ordering != Ordering::Greater,
        }
    }
}

/// The check one comparison makes on a value.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Compare(Operation, Scalar),
    In(Vec<Scalar>),
}

impl Expression {
    fn render(&self, out: &mut String) {
        match self {
            Expression::Logical { operator, arguments } => {
                out.push_str(operator.name());
                out.push('(');
                for (index, argument) in arguments.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    argument.render(out);
                }
                out.push(')');
            }
            Expression::Compare { comparator, field, value, .. } => {
                out.push_str(comparator.name());
                out.push('(');
                out.push_str(field.name());
                out.push_str(", ");
                value.render(out);
                out.push(')');
            }
            Expression::HasTag { tag } => {
                out.push_str("has(tags, ");
                render_string(tag, out);
                out.push(')');
            }
            Expression::Search { text } => {
                out.push_str("search(");
                render_string(text, out);
                out.push(')');
            }
        }
    }

    fn needs_body(&self) -> bool {
        match self {
            Expression::Logical { arguments, .. } => arguments.iter().any(Expression::needs_body),
            Expression::Compare { field, .. } => matches!(field.family(), Some(Family::Input | Family::Output)),
            Expression::HasTag { .. } => false,
            Expression::Search { .. } => true,
        }
    }
}

impl Literal {
    fn render(&self, out: &mut String) {
        match self {
            Literal::Null => out.push_str("null"),
            Literal::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Literal::Number(value) => render_number(*value, out),
            Literal::Text(text) => render_string(text, out),
            Literal::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    item.render(out);
                }
                out.push(']');
            }
        }
    }

    /// How the literal is named in error messages.
    fn describe(&self) -> String {
        match self {
            Literal::Null => "null".to_owned(),
            Literal::Bool(value) => value.to_string(),
            Literal::Number(value) => {
                let mut text = "number ".to_owned();
                render_number(*value, &mut text);
                text
            }
            Literal::Text(text) => format!("string {}", quoted_excerpt(text)),
            Literal::List(_) => "a list".to_owned(),
        }
    }
}

/// Integers below 10^15 print as integers; other numbers print in Rust's
/// shortest round-tripping form (`0.5`, `1e300`), which the lexer reads back
/// to the same `f64`.
fn render_number(value: f64, out: &mut String) {
    use std::fmt::Write;
    if value.fract() == 0.0 && value.abs() < 1e15 {
        // Exact: the value is an integer of at most 15 digits.
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

fn render_string(text: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if control.is_control() => {
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// A string for an error message: quoted, cut after 40 characters.
fn quoted_excerpt(text: &str) -> String {
    let mut excerpt = String::new();
    let cut: String = text.chars().take(40).collect();
    render_string(&cut, &mut excerpt);
    if cut.len() < text.len() {
        excerpt.push('…');
    }
    excerpt
}

// ---------------------------------------------------------------------------
// Lexer and parser
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    LeftParen,
    RightParen,
    LeftBracket,
    RightBracket,
    Comma,
    Identifier,
    Text(String),
    Number(f64),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    start: usize,
    end: usize,
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next unread character; always a character boundary.
    position: usize,
    /// Where each item of the last list read starts, to point type errors at the item.
    item_starts: Vec<usize>,
}

impl<'a> Parser<'a> {
    fn error(&self, position: usize, message: impl Into<String>) -> FilterError {
        error_at(self.text, position, message.into())
    }

    fn unexpected(&self, token: &Token, expected: &str) -> FilterError {
        self.error(token.start, format!("expected {expected}, found {}", self.describe(token)))
    }

    fn describe(&self, token: &Token) -> String {
        let spelled = &self.text[token.start..token.end];
        match &token.kind {
            TokenKind::End => "end of input".to_owned(),
            TokenKind::Text(text) => format!("string {}", quoted_excerpt(text)),
            TokenKind::Number(_) => format!("number {}", spelled.chars().take(40).collect::<String>()),
            TokenKind::Identifier if spelled.chars().count() > 40 => {
                format!("'{}…'", spelled.chars().take(40).collect::<String>())
            }
            _ => format!("'{spelled}'"),
        }
    }

    fn identifier(&self, token: &Token) -> Option<&'a str> {
        (token.kind == TokenKind::Identifier).then(|| &self.text[token.start..token.end])
    }

    fn peek_char(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    fn next_token(&mut self) -> Result<Token, FilterError> {
        while let Some(character) = self.peek_char().filter(|character| character.is_whitespace()) {
            self.position += character.len_utf8();
        }
        let start = self.position;
        let Some(character) = self.peek_char() else {
            return Ok(Token { kind: TokenKind::End, start, end: start });
        };
        let single = |kind| Token { kind, start, end: start + 1 };
        let token = match character {
            '(' => single(TokenKind::LeftParen),
            ')' => single(TokenKind::RightParen),
            '[' => single(TokenKind::LeftBracket),
            ']' => single(TokenKind::RightBracket),
            ',' => single(TokenKind::Comma),
            '"' | '\'' => return self.string(character),
            '-' | '0'..='9' => return self.number(),
            'a'..='z' | 'A'..='Z' | '_' => {
                let length = self.text[start..]
                    .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
                    .unwrap_or(self.text.len() - start);
                self.position = start + length;
                return Ok(Token { kind: TokenKind::Identifier, start, end: self.position });
            }
            other => {
                let shown: String = other.escape_debug().collect();
                return Err(self.error(start, format!("unexpected character '{shown}'")));
            }
        };
        self.position = token.end;
        Ok(token)
    }

    fn string(&mut self, quote: char) -> Result<Token, FilterError> {
        let start = self.position;
        self.position += 1;
        let mut value = String::new();
        loop {
            let Some(character) = self.peek_char() else {
                return Err(self.error(start, format!("unterminated string: expected a closing {quote}")));
            };
            self.position += character.len_utf8();
            if character == quote {
                return Ok(Token { kind: TokenKind::Text(value), start, end: self.position });
            }
            if character != '\\' {
                value.push(character);
                continue;
            }
            let escape_start = self.position - 1;
            let Some(escaped) = self.peek_char() else {
                return Err(self.error(start, format!("unterminated string: expected a closing {quote}")));
            };
            self.position += escaped.len_utf8();
            value.push(match escaped {
                '"' | '\'' | '\\' | '/' => escaped,
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'u' => self.unicode_escape(escape_start)?,
                other => {
                    let shown: String = other.escape_debug().collect();
                    return Err(self.error(
                        escape_start,
                        format!("invalid escape '\\{shown}' in string; valid escapes are \\\" \\' \\\\ \\/ \\n \\r \\t \\b \\f \\uXXXX"),
                    ));
                }
            });
        }
    }

    /// Reads the four hex digits after `\u` (and a second `\uXXXX` after a high surrogate).
    fn unicode_escape(&mut self, escape_start: usize) -> Result<char, FilterError> {
        let invalid = |parser: &Parser<'_>| {
            parser.error(escape_start, "invalid unicode escape: expected \\u and four hex digits naming a character")
        };
        let first = self.hex4().ok_or_else(|| invalid(self))?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.text[self.position..].starts_with("\\u") {
                    return Err(invalid(self));
                }
                self.position += 2;
                let second = self.hex4().ok_or_else(|| invalid(self))?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(invalid(self));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            code => code,
        };
        char::from_u32(code).ok_or_else(|| invalid(self))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.position..self.position + 4)?;
        if !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        self.position += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    fn number(&mut self) -> Result<Token, FilterError> {
        let start = self.position;
        let bytes = self.text.as_bytes();
        let digits_from =
            |index: usize| bytes[index.min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut index = start;
        if bytes[index] == b'-' {
            index += 1;
        }
        let integer_digits = digits_from(index);
        if integer_digits == 0 {
            return Err(self.error(start, "expected a digit after '-'"));
        }
        index += integer_digits;
        if bytes.get(index) == Some(&b'.') && digits_from(index + 1) > 0 {
            index += 1 + digits_from(index + 1);
        }
        if matches!(bytes.get(index), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(bytes.get(index + 1), Some(b'+' | b'-')));
            let exponent_digits = digits_from(index + 1 + sign);
            if exponent_digits > 0 {
                index += 1 + sign + exponent_digits;
            }
        }
        // `5s` or `3x`: most likely an unquoted duration.
        let rest = &self.text[index..];
        let glued =
            rest.find(|character: char| !(character.is_alphanumeric() || character == '_')).unwrap_or(rest.len());
        if glued > 0 {
            let spelled = &self.text[start..index + glued];
            let shown: String = spelled.chars().take(40).collect();
            return Err(self
                .error(start, format!("malformed number '{shown}'; durations are strings, e.g. \"5s\" or \"500ms\"")));
        }
        self.position = index;
        match self.text[start..index].parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Token { kind: TokenKind::Number(value), start, end: index }),
            _ => Err(self.error(start, "number out of range")),
        }
    }

    fn parse_filter(&mut self) -> Result<Expression, FilterError> {
        let token = self.next_token()?;
        if token.kind == TokenKind::End {
            return Err(self.error(
                token.start,
                "the filter is empty; expected an operator such as eq(...), and(...) or search(...)",
            ));
        }
        let expression = self.expression(token, 0)?;
        let after = self.next_token()?;
        if after.kind != TokenKind::End {
            return Err(self.unexpected(&after, "end of input after the filter"));
        }
        Ok(expression)
    }

    /// Parses a call starting at `token`; `depth` is how many calls and lists enclose it.
    fn expression(&mut self, token: Token, depth: usize) -> Result<Expression, FilterError> {
        let Some(name) = self.identifier(&token) else {
            return Err(self.unexpected(&token, "an operator such as eq(...), and(...) or search(...)"));
        };
        let Some(operator) = Operator::from_name(name) else {
            let hint = if Operator::from_name(&name.to_ascii_lowercase()).is_some() {
                " (operators are lowercase)"
            } else {
                ""
            };
            return Err(self.error(
                token.start,
                format!("unknown operator '{}'{hint}; expected one of {OPERATOR_NAMES}", name_excerpt(name)),
            ));
        };
        let paren = self.next_token()?;
        if paren.kind != TokenKind::LeftParen {
            return Err(self.unexpected(&paren, &format!("'(' after '{name}'")));
        }
        let depth = depth + 1;
        if depth > NESTING_DEPTH_MAX {
            return Err(self.error(paren.start, format!("the filter nests deeper than {NESTING_DEPTH_MAX} levels")));
        }
        match operator {
            Operator::Logical(logical) => self.logical(logical, depth),
            Operator::Comparator(comparator) => self.comparison(comparator, token.start, depth),
            Operator::Search => self.search(),
        }
    }

    fn logical(&mut self, operator: Logical, depth: usize) -> Result<Expression, FilterError> {
        let mut arguments = Vec::new();
        loop {
            let token = self.next_token()?;
            if arguments.is_empty() && token.kind == TokenKind::RightParen {
                let needs = if operator == Logical::Not { "exactly one argument" } else { "at least one argument" };
                return Err(self.error(token.start, format!("{} needs {needs}, found ')'", operator.name())));
            }
            arguments.push(self.expression(token, depth)?);
            let separator = self.next_token()?;
            match separator.kind {
                TokenKind::RightParen => return Ok(Expression::Logical { operator, arguments }),
                TokenKind::Comma if operator == Logical::Not => {
                    return Err(self.error(separator.start, "not takes exactly one argument, found ','"));
                }
                TokenKind::Comma => {}
                _ => return Err(self.unexpected(&separator, "',' or ')' after argument")),
            }
        }
    }

    fn search(&mut self) -> Result<Expression, FilterError> {
        let token = self.next_token()?;
        let text = match token.kind {
            TokenKind::Text(text) => text,
            TokenKind::RightParen => return Err(self.error(token.start, "search needs one string argument, found ')'")),
            _ => {
                let found = match self.literal(token.clone(), 1) {
                    Ok(literal) => literal.describe(),
                    Err(_) => self.describe(&token),
                };
                return Err(self.error(token.start, format!("search takes a string, found {found}")));
            }
        };
        let close = self.next_token()?;
        match close.kind {
            TokenKind::RightParen => Ok(Expression::Search { text }),
            TokenKind::Comma => Err(self.error(close.start, "search takes exactly one argument, found ','")),
            _ => Err(self.unexpected(&close, "')' after the search text")),
        }
    }

    fn comparison(
        &mut self,
        comparator: Comparator,
        operator_start: usize,
        depth: usize,
    ) -> Result<Expression, FilterError> {
        let name = comparator.name();
        let field_token = self.next_token()?;
        if field_token.kind == TokenKind::RightParen {
            return Err(self.error(field_token.start, format!("{name} needs a field and a value, found ')'")));
        }
        let Some(field_name) = self.identifier(&field_token) else {
            return Err(self.unexpected(&field_token, "a field name"));
        };
        let Some(field) = Field::from_name(field_name) else {
            return Err(self.error(
                field_token.start,
                format!("unknown field '{}'; known fields: {}", name_excerpt(field_name), known_fields()),
            ));
        };
        let comma = self.next_token()?;
        match comma.kind {
            TokenKind::Comma => {}
            TokenKind::RightParen => {
                return Err(self.error(comma.start, format!("{name} needs a field and a value, found ')'")));
            }
            _ => return Err(self.unexpected(&comma, "',' after the field")),
        }
        let value_token = self.next_token()?;
        let value_start = value_token.start;
        let value = self.literal(value_token, depth)?;
        let close = self.next_token()?;
        match close.kind {
            TokenKind::RightParen => {}
            TokenKind::Comma => {
                return Err(
                    self.error(close.start, format!("{name} takes exactly two arguments, found ',' after the value"))
                );
            }
            _ => return Err(self.unexpected(&close, "')' after the value")),
        }
        self.check(comparator, operator_start, field, value, value_start)
    }

    fn literal(&mut self, token: Token, depth: usize) -> Result<Literal, FilterError> {
        let expected = "a value (a string, a number, true, false, null or a list)";
        match token.kind {
            TokenKind::Text(text) => Ok(Literal::Text(text)),
            TokenKind::Number(value) => Ok(Literal::Number(value)),
            TokenKind::Identifier => match &self.text[token.start..token.end] {
                "true" => Ok(Literal::Bool(true)),
                "false" => Ok(Literal::Bool(false)),
                "null" => Ok(Literal::Null),
                _ => Err(self.unexpected(&token, expected)),
            },
            TokenKind::LeftBracket => {
                if depth + 1 > NESTING_DEPTH_MAX {
                    return Err(
                        self.error(token.start, format!("the filter nests deeper than {NESTING_DEPTH_MAX} levels"))
                    );
                }
                self.list()
            }
            _ => Err(self.unexpected(&token, expected)),
        }
    }

    fn list(&mut self) -> Result<Literal, FilterError> {
        let mut items = Vec::new();
        self.item_starts.clear();
        loop {
            let token = self.next_token()?;
            self.item_starts.push(token.start);
            match token.kind {
                TokenKind::RightBracket if items.is_empty() => return Ok(Literal::List(items)),
                TokenKind::LeftBracket => return Err(self.error(token.start, "lists cannot be nested")),
                _ => items.push(self.literal(token, 0)?),
            }
            let separator = self.next_token()?;
            match separator.kind {
                TokenKind::RightBracket => return Ok(Literal::List(items)),
                TokenKind::Comma => {}
                _ => return Err(self.unexpected(&separator, "',' or ']' in a list")),
            }
        }
    }

    /// Checks that the comparator applies to the field and the value has a
    /// type the field can hold, converting it for evaluation.
    fn check(
        &self,
        comparator: Comparator,
        operator_start: usize,
        field: Field,
        value: Literal,
        value_start: usize,
    ) -> Result<Expression, FilterError> {
        let (name, field_name) = (comparator.name(), field.name());
        match (comparator, field.kind()) {
            (Comparator::Has, Kind::Tags) => {
                return match value {
                    Literal::Text(tag) => Ok(Expression::HasTag { tag }),
                    other => {
                        Err(self
                            .error(value_start, format!("has(tags, ...) takes a string, found {}", other.describe())))
                    }
                };
            }
            (Comparator::Has, _) => {
                return Err(self.error(operator_start, format!("has applies only to tags, not to {field_name}")));
            }
            (_, Kind::Tags) => {
                return Err(self.error(operator_start, format!("tags supports only has(tags, \"...\"), not {name}")));
            }
            (Comparator::Eq | Comparator::Neq | Comparator::In, Kind::Error) => {}
            (_, Kind::Error) => {
                return Err(self.error(operator_start, format!("error supports only eq, neq and in, not {name}")));
            }
            _ => {}
        }
        let test = match (comparator.operation(), &value) {
            (None, Literal::List(items)) => {
                let mut scalars = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let item_start = self.item_starts.get(index).copied().unwrap_or(value_start);
                    scalars.push(self.scalar(field, item, item_start)?);
                }
                Test::In(scalars)
            }
            (None, other) => {
                return Err(self.error(
                    value_start,
                    format!("in takes a list such as [\"a\", \"b\"], found {}", other.describe()),
                ));
            }
            (Some(_), Literal::List(_)) => {
                return Err(self.error(value_start, format!("a list is only valid with in, not with {name}")));
            }
            (Some(operation), literal) => {
                let scalar = self.scalar(field, literal, value_start)?;
                let orders = !matches!(operation, Operation::Eq | Operation::Neq);
                match scalar {
                    Scalar::Null if orders => {
                        return Err(self.error(
                            value_start,
                            format!(
                                "{name} cannot compare with null; use eq({field_name}, null) or neq({field_name}, null)"
                            ),
                        ));
                    }
                    Scalar::Bool(_) if orders => {
                        return Err(self.error(value_start, format!("{name} cannot order booleans; use eq or neq")));
                    }
                    _ => {}
                }
                Test::Compare(operation, scalar)
            }
        };
        Ok(Expression::Compare { comparator, field, value, test })
    }

    /// Converts one literal to the field's value type; lists were handled by the caller.
    fn scalar(&self, field: Field, literal: &Literal, position: usize) -> Result<Scalar, FilterError> {
        let field_name = field.name();
        let mismatch = |expected: &str| {
            self.error(position, format!("{field_name} takes {expected}, found {}", literal.describe()))
        };
        match (field.kind(), literal) {
            (_, Literal::List(_)) => Err(self.error(position, "lists cannot be nested")),
            (Kind::Tags, _) => Err(mismatch("only has(tags, \"...\")")),
            (_, Literal::Null) => Ok(Scalar::Null),
            (Kind::Text, Literal::Text(text)) => Ok(Scalar::Text(text.clone())),
            (Kind::Text, _) => Err(mismatch("a string or null")),
            (Kind::Time, Literal::Text(text)) => {
                parse_rfc3339_ms(text).map(|ms| Scalar::Number(ms as f64)).ok_or_else(|| {
                    self.error(
                        position,
                        format!(
                            "{field_name} takes an RFC 3339 timestamp such as \"2026-11-01T00:00:00Z\", found {}",
                            literal.describe()
                        ),
                    )
                })
            }
            (Kind::Time, _) => Err(mismatch("an RFC 3339 timestamp string or null")),
            (Kind::Duration, Literal::Number(seconds)) => Ok(Scalar::Number(seconds * 1_000.0)),
            (Kind::Duration, Literal::Text(text)) => parse_duration_ms(text).map(Scalar::Number).ok_or_else(|| {
                self.error(
                    position,
                    format!(
                        "invalid duration {}: expected a number and a unit (ms, s, m, h or d) such as \"5s\", \
                         or a number of seconds",
                        quoted_excerpt(text)
                    ),
                )
            }),
            (Kind::Duration, _) => Err(mismatch("a number of seconds, a duration string such as \"5s\", or null")),
            (Kind::Number, Literal::Number(value)) => Ok(Scalar::Number(*value)),
            (Kind::Number, _) => Err(mismatch("a number or null")),
            (Kind::Error, Literal::Bool(value)) => Ok(Scalar::Bool(*value)),
            (Kind::Error, Literal::Text(text)) => Ok(Scalar::Text(text.clone())),
            (Kind::Error, _) => Err(mismatch("true, false, null or the error text")),
            (Kind::Json, Literal::Bool(value)) => Ok(Scalar::Bool(*value)),
            (Kind::Json, Literal::Number(value)) => Ok(Scalar::Number(*value)),
            (Kind::Json, Literal::Text(text)) => Ok(Scalar::Text(text.clone())),
        }
    }
}

fn name_excerpt(name: &str) -> String {
    let mut excerpt: String = name.chars().take(40).collect();
    if excerpt.len() < name.len() {
        excerpt.push('…');
    }
    excerpt
}

// ---------------------------------------------------------------------------
// Evaluation tree
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    /// A comparison on a field of the trace itself.
    Trace(Condition),
    HasTag(String),
    /// Some entry of the family satisfies every condition.
    Exists(Family, Vec<Condition>),
    Search(Needle),
}

#[derive(Debug, Clone)]
struct Condition {
    field: Field,
    test: Test,
}

fn compile(expression: &Expression) -> Node {
    match expression {
        Expression::Logical { operator: Logical::And, arguments } => compile_and(arguments),
        Expression::Logical { operator: Logical::Or, arguments } => Node::Any(arguments.iter().map(compile).collect()),
        Expression::Logical { operator: Logical::Not, arguments } => Node::Not(Box::new(match arguments.as_slice() {
            [single] => compile(single),
            // The parser gives `not` exactly one argument; this arm only keeps the match total.
            several => Node::All(several.iter().map(compile).collect()),
        })),
        Expression::Compare { field, test, .. } => {
            let condition = Condition { field: *field, test: test.clone() };
            match field.family() {
                Some(family) => Node::Exists(family, vec![condition]),
                None => Node::Trace(condition),
            }
        }
        Expression::HasTag { tag } => Node::HasTag(tag.clone()),
        Expression::Search { text } => Node::Search(Needle::new(text)),
    }
}

/// Groups the entry comparisons among `arguments` by family so each group binds to one entry.
fn compile_and(arguments: &[Expression]) -> Node {
    let mut nodes = Vec::new();
    let mut groups: [Vec<Condition>; 4] = Default::default();
    for argument in arguments {
        let family = match argument {
            Expression::Compare { field, .. } => field.family(),
            _ => None,
        };
        match (argument, family) {
            // `FAMILIES` lists the families in declaration order, so the discriminant indexes it.
            (Expression::Compare { field, test, .. }, Some(family)) => {
                groups[family as usize].push(Condition { field: *field, test: test.clone() });
            }
            _ => nodes.push(compile(argument)),
        }
    }
    for (family, conditions) in FAMILIES.into_iter().zip(groups) {
        if !conditions.is_empty() {
            nodes.push(Node::Exists(family, conditions));
        }
    }
    // Evaluation is free of side effects, so cheap checks go first and
    // full-text search last.
    nodes.sort_by_key(Node::cost);
    match <[Node; 1]>::try_from(nodes) {
        Ok([single]) => single,
        Err(nodes) => Node::All(nodes),
    }
}

impl Node {
    fn cost(&self) -> u8 {
        match self {
            Node::Trace(_) | Node::HasTag(_) => 0,
            Node::Exists(..) => 1,
            Node::All(_) | Node::Any(_) | Node::Not(_) => 2,
            Node::Search(_) => 3,
        }
    }

    fn matches(&self, trace: &Trace) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|node| node.matches(trace)),
            Node::Any(nodes) => nodes.iter().any(|node| node.matches(trace)),
            Node::Not(node) => !node.matches(trace),
            Node::Trace(condition) => condition.test.holds(trace_value(trace, condition.field)),
            Node::HasTag(tag) => trace.tags.iter().any(|candidate| candidate == tag),
            Node::Exists(family, conditions) => {
                let holds = |entry: &Entry<'_>| {
                    conditions.iter().all(|condition| condition.test.holds(entry.value_of(condition.field)))
                };
                match family {
                    Family::Feedback => trace.feedback.iter().any(|feedback| {
                        holds(&Entry {
                            prefix: "",
                            key: &feedback.key,
                            value: feedback.score.map_or(Actual::Null, Actual::Number),
                        })
                    }),
                    Family::Metadata => trace
                        .metadata
                        .iter()
                        .any(|(key, value)| holds(&Entry { prefix: "", key, value: Actual::Json(value) })),
                    Family::Input => any_input_entry(&trace.inputs, holds),
                    Family::Output => any_output_entry(&trace.outputs, holds),
                }
            }
            Node::Search(needle) => needle.lowered.is_empty() || trace_contains(trace, needle),
        }
    }
}

/// A value read from a trace, borrowed.
#[derive(Debug, Clone, Copy)]
enum Actual<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'a str),
    /// An entry key: `prefix` then `key` (e.g. `context.` and `tier`).
    Key(&'static str, &'a str),
    Json(&'a Value),
    /// The trace's error: a boolean, the text, or null, depending on what it is compared with.
    Error(Option<&'a str>),
    /// A value no literal compares with (a list of messages, a JSON object, an unreadable timestamp).
    Structured,
}

impl<'a> Actual<'a> {
    /// Turns JSON and error values into the primitive compared with `expected`.
    fn resolve(self, expected: &Scalar) -> Actual<'a> {
        match self {
            Actual::Json(Value::Null) => Actual::Null,
            Actual::Json(Value::Bool(value)) => Actual::Bool(*value),
            Actual::Json(Value::Number(number)) => number.as_f64().map_or(Actual::Structured, Actual::Number),
            Actual::Json(Value::String(text)) => Actual::Text(text),
            Actual::Json(_) => Actual::Structured,
            Actual::Error(error) => match expected {
                Scalar::Bool(_) => Actual::Bool(error.is_some()),
                _ => error.map_or(Actual::Null, Actual::Text),
            },
            other => other,
        }
    }
}

impl Test {
    fn holds(&self, actual: Actual<'_>) -> bool {
        match self {
            Test::Compare(operation, expected) => compare(actual, *operation, expected),
            Test::In(candidates) => candidates.iter().any(|expected| compare(actual, Operation::Eq, expected)),
        }
    }
}

fn compare(actual: Actual<'_>, operation: Operation, expected: &Scalar) -> bool {
    let actual = actual.resolve(expected);
    let is_null = matches!(actual, Actual::Null);
    let ordering = match (actual, expected) {
        (_, Scalar::Null) => {
            return match operation {
                Operation::Eq => is_null,
                Operation::Neq => !is_null,
                _ => false,
            };
        }
        (Actual::Number(actual), Scalar::Number(expected)) => actual.partial_cmp(expected),
        (Actual::Text(actual), Scalar::Text(expected)) => Some(actual.cmp(expected.as_str())),
        (Actual::Key("", key), Scalar::Text(expected)) => Some(key.cmp(expected.as_str())),
        (Actual::Key(prefix, key), Scalar::Text(expected)) => {
            Some(prefix.bytes().chain(key.bytes()).cmp(expected.bytes()))
        }
        (Actual::Bool(actual), Scalar::Bool(expected)) => Some(actual.cmp(expected)),
        _ => None,
    };
    ordering.is_some_and(|ordering| operation.accepts(ordering))
}

fn trace_value(trace: &Trace, field: Field) -> Actual<'_> {
    match field {
        Field::Id => Actual::Text(&trace.id),
        Field::Name => trace.name.as_deref().map_or(Actual::Null, Actual::Text),
        Field::StartTime => time_value(Some(&trace.start_time)),
        Field::EndTime => time_value(trace.end_time.as_deref()),
        Field::Latency => latency_ms(trace).map_or(Actual::Null, Actual::Number),
        Field::TotalTokens => trace.total_tokens.map_or(Actual::Null, |tokens| Actual::Number(tokens as f64)),
        Field::Error => Actual::Error(trace.error.as_deref()),
        // Tags and entry fields never reach here: they compile to `HasTag` and `Exists`.
        _ => Actual::Structured,
    }
}

fn time_value(text: Option<&str>) -> Actual<'_> {
    match text {
        None => Actual::Null,
        Some(text) => parse_rfc3339_ms(text).map_or(Actual::Structured, |ms| Actual::Number(ms as f64)),
    }
}

/// The trace's latency: `latency_ms`, else the time between start and end.
fn latency_ms(trace: &Trace) -> Option<f64> {
    if let Some(latency) = trace.latency_ms {
        return Some(latency as f64);
    }
    let start = parse_rfc3339_ms(&trace.start_time)?;
    let end = parse_rfc3339_ms(trace.end_time.as_deref()?)?;
    Some((end - start) as f64)
}

/// One feedback, metadata, input or output entry.
struct Entry<'a> {
    prefix: &'static str,
    key: &'a str,
    value: Actual<'a>,
}

impl<'a> Entry<'a> {
    fn value_of(&self, field: Field) -> Actual<'a> {
        match field {
            Field::FeedbackKey | Field::MetadataKey | Field::InputKey | Field::OutputKey => {
                Actual::Key(self.prefix, self.key)
            }
            _ => self.value,
        }
    }
}

fn any_input_entry(inputs: &Inputs, mut holds: impl FnMut(&Entry<'_>) -> bool) -> bool {
    let structured = |key| Entry { prefix: "", key, value: Actual::Structured };
    holds(&structured("messages"))
        || (!inputs.tools.is_empty() && holds(&structured("tools")))
        || inputs.context.as_ref().is_some_and(|context| {
            holds(&Entry { prefix: "", key: "context", value: Actual::Json(context) })
                || context.as_object().is_some_and(|object| {
                    object
                        .iter()
                        .any(|(key, value)| holds(&Entry { prefix: "context.", key, value: Actual::Json(value) }))
                })
        })
        || inputs.extra.iter().any(|(key, value)| holds(&Entry { prefix: "", key, value: Actual::Json(value) }))
}

fn any_output_entry(outputs: &RunOutputs, mut holds: impl FnMut(&Entry<'_>) -> bool) -> bool {
    let structured = |key| Entry { prefix: "", key, value: Actual::Structured };
    holds(&structured("messages"))
        || (outputs.tool_calls.is_some() && holds(&structured("tool_calls")))
        || outputs.extra.iter().any(|(key, value)| holds(&Entry { prefix: "", key, value: Actual::Json(value) }))
}

// ---------------------------------------------------------------------------
// Full-text search
// ---------------------------------------------------------------------------

/// A search text, lowercased once at parse time.
#[derive(Debug, Clone)]
struct Needle {
    /// Lowercased character by character, as the haystack is, so both sides agree.
    lowered: String,
    ascii: bool,
}

impl Needle {
    fn new(text: &str) -> Needle {
        let lowered: String = text.chars().flat_map(char::to_lowercase).collect();
        Needle { ascii: lowered.is_ascii(), lowered }
    }

    fn found_in(&self, haystack: &str) -> bool {
        let Some(first) = self.lowered.chars().next() else {
            return true;
        };
        // ASCII lowercases to ASCII, so a needle with other characters cannot be in ASCII text.
        if !self.ascii && haystack.is_ascii() {
            return false;
        }
        // Compare bytes while the text is ASCII, and decode characters only
        // where the text has others.
        let needle = self.lowered.as_bytes();
        let bytes = haystack.as_bytes();
        bytes.iter().enumerate().any(|(start, &byte)| {
            if byte.is_ascii() {
                char::from(byte.to_ascii_lowercase()) == first
                    && match bytes.get(start..start + needle.len()) {
                        Some(window) if self.ascii && window.is_ascii() => window.eq_ignore_ascii_case(needle),
                        _ => self.found_at(&haystack[start..]),
                    }
            } else {
                // The first byte of another character; a few (the Kelvin sign) lowercase to ASCII.
                byte >= 0xC0 && self.found_at(&haystack[start..])
            }
        })
    }

    /// Whether `text`, lowercased, starts with the needle.
    fn found_at(&self, text: &str) -> bool {
        let mut lowered = text.chars().flat_map(char::to_lowercase);
        self.lowered.chars().all(|expected| lowered.next() == Some(expected))
    }
}

fn trace_contains(trace: &Trace, needle: &Needle) -> bool {
    let found = |text: &str| needle.found_in(text);
    trace.name.as_deref().is_some_and(found)
        || trace.error.as_deref().is_some_and(found)
        || messages_contain(&trace.inputs.messages, needle)
        || messages_contain(&trace.outputs.messages, needle)
        || trace.outputs.tool_calls.iter().flatten().any(|call| tool_call_contains(call, needle))
}

fn messages_contain(messages: &[Message], needle: &Needle) -> bool {
    messages.iter().any(|message| {
        needle.found_in(&message.content) || message.tool_calls.iter().any(|call| tool_call_contains(call, needle))
    })
}

fn tool_call_contains(call: &ToolCall, needle: &Needle) -> bool {
    needle.found_in(&call.name) || value_contains(&call.args, needle)
}

/// Keys and string values, at any depth (serde_json bounds the depth of parsed values).
fn value_contains(value: &Value, needle: &Needle) -> bool {
    match value {
        Value::String(text) => needle.found_in(text),
        Value::Array(items) => items.iter().any(|item| value_contains(item, needle)),
        Value::Object(object) => {
            object.iter().any(|(key, value)| needle.found_in(key) || value_contains(value, needle))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trace with a user question and nothing else, with `overrides` merged over it.
    fn trace(overrides: Value) -> Trace {
        let mut base = json!({
            "id": "run-1",
            "project": "prod-support",
            "start_time": "2026-11-02T10:00:00Z",
            "inputs": {"messages": [{"role": "user", "content": "What is the status of my refund?"}]},
        });
        if let (Some(base), Value::Object(overrides)) = (base.as_object_mut(), overrides) {
            base.extend(overrides);
        }
        serde_json::from_value(base).expect("test trace is valid")
    }

    fn filter(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
    }

    /// Checks each `(filter, trace, expected)` row and names the failing one.
    fn check_rows(rows: &[(&str, &Trace, bool)]) {
        for (index, (text, trace, expected)) in rows.iter().enumerate() {
            let parsed = filter(text);
            assert_eq!(parsed.matches(trace), *expected, "row {index}: {text} on trace {}", trace.id);
            // The canonical text means the same thing.
            assert_eq!(filter(parsed.text()).matches(trace), *expected, "row {index}: canonical {}", parsed.text());
        }
    }

    fn parse_error(text: &str) -> FilterError {
        match Filter::parse(text) {
            Ok(parsed) => panic!("{text:?} should not parse, got {}", parsed.text()),
            Err(error) => error,
        }
    }

    #[test]
    fn brief_examples_parse_and_evaluate() {
        let low_score = trace(json!({"id": "low", "feedback": [{"key": "user_score", "score": 2}]}));
        let failed = trace(json!({"id": "failed", "error": "tool timeout", "latency_ms": 6_000}));
        let fast = trace(json!({"id": "fast", "latency_ms": 5_000, "end_time": "2026-11-02T10:00:05Z"}));
        let derived = trace(json!({"id": "derived", "end_time": "2026-11-02T10:00:07.250Z"}));
        let tagged = trace(json!({"id": "tagged", "name": "a", "tags": ["beta", "voice"]}));
        let worried =
            trace(json!({"id": "worried", "name": "b", "metadata": {"persona": "worried_parent", "turns": 4}}));
        let october = trace(json!({"id": "october", "start_time": "2026-10-31T23:59:59.999Z"}));
        let rows: &[(&str, &Trace, bool)] = &[
            (r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#, &low_score, true),
            (r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#, &failed, false),
            ("eq(error, true)", &failed, true),
            ("eq(error, true)", &fast, false),
            ("eq(error, false)", &fast, true),
            ("eq(error, null)", &failed, false),
            ("eq(error, null)", &fast, true),
            ("neq(error, null)", &failed, true),
            (r#"eq(error, "tool timeout")"#, &failed, true),
            (r#"in(error, [false, "x"])"#, &fast, true),
            ("gt(latency, 5)", &failed, true),
            ("gt(latency, 5)", &fast, false),
            ("gte(latency, 5)", &fast, true),
            ("gt(latency, 7.2)", &derived, true),
            ("gt(latency, 7.3)", &derived, false),
            ("gt(latency, 5)", &tagged, false),
            ("eq(latency, null)", &tagged, true),
            (r#"gt(latency, "5s")"#, &failed, true),
            (r#"gt(latency, "5s")"#, &fast, false),
            (r#"lt(latency, "5001ms")"#, &fast, true),
            (r#"lt(latency, "0.1m")"#, &failed, false),
            (r#"lt(latency, "1h")"#, &failed, true),
            (r#"lt(latency, "1d")"#, &failed, true),
            (r#"has(tags, "beta")"#, &tagged, true),
            (r#"has(tags, "bet")"#, &tagged, false),
            (r#"has(tags, "beta")"#, &failed, false),
            (r#"search("refund")"#, &tagged, true),
            (r#"search("REFUND")"#, &tagged, true),
            (r#"search("invoice")"#, &tagged, false),
            (r#"in(name, ["a", "b"])"#, &tagged, true),
            (r#"in(name, ["a", "b"])"#, &worried, true),
            (r#"in(name, ["a", "b"])"#, &failed, false),
            (r#"in(name, [])"#, &tagged, false),
            (r#"in(name, [null])"#, &failed, true),
            (r#"eq(metadata_key, "persona")"#, &worried, true),
            (r#"eq(metadata_key, "persona")"#, &tagged, false),
            (r#"and(eq(metadata_key, "persona"), eq(metadata_value, "worried_parent"))"#, &worried, true),
            (r#"and(eq(metadata_key, "persona"), eq(metadata_value, "calm"))"#, &worried, false),
            (r#"and(eq(metadata_key, "turns"), gte(metadata_value, 4))"#, &worried, true),
            (r#"and(eq(metadata_key, "turns"), eq(metadata_value, "4"))"#, &worried, false),
            (r#"and(eq(metadata_key, "turns"), neq(metadata_value, "4"))"#, &worried, false),
            (r#"gte(start_time, "2026-11-01T00:00:00Z")"#, &tagged, true),
            (r#"gte(start_time, "2026-11-01T00:00:00Z")"#, &october, false),
            (r#"gte(start_time, "2026-11-01T00:59:59.999+01:00")"#, &october, true),
            (r#"lt(start_time, "2026-10-31T23:59:59.9991Z")"#, &october, false),
            (r#"eq(start_time, "2026-10-31T19:59:59.999-04:00")"#, &october, true),
            ("eq(end_time, null)", &october, true),
            ("eq(end_time, null)", &fast, false),
            ("neq(end_time, null)", &fast, true),
            (r#"lt(end_time, "2030-01-01T00:00:00Z")"#, &october, false),
        ];
        check_rows(rows);
    }

    #[test]
    fn feedback_comparisons_in_one_and_bind_to_one_entry() {
        let split = trace(json!({"feedback": [{"key": "user_score", "score": 4}, {"key": "correctness", "score": 0}]}));
        let low = trace(json!({"feedback": [{"key": "correctness", "score": 1}, {"key": "user_score", "score": 1}]}));
        let unscored = trace(json!({"feedback": [{"key": "user_score", "comment": "meh"}]}));
        check_rows(&[
            (r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#, &split, false),
            (r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#, &low, true),
            // Outside one `and`, each comparison finds its own entry.
            (r#"and(and(eq(feedback_key, "user_score")), and(lt(feedback_score, 3)))"#, &split, true),
            // A `not` is its own group: no entry at all may have a score of 3 or more.
            (r#"and(eq(feedback_key, "user_score"), not(gte(feedback_score, 3)))"#, &split, false),
            (r#"and(eq(feedback_key, "correctness"), not(gte(feedback_score, 5)))"#, &split, true),
            (r#"eq(feedback_key, "correctness")"#, &split, true),
            (r#"eq(feedback_key, "helpfulness")"#, &split, false),
            (r#"neq(feedback_key, "user_score")"#, &split, true),
            (r#"neq(feedback_key, "user_score")"#, &unscored, false),
            // Two keys on one entry can never both hold.
            (r#"and(eq(feedback_key, "user_score"), eq(feedback_key, "correctness"))"#, &split, false),
            (
                r#"and(and(eq(feedback_key, "user_score"), gt(feedback_score, 3)), and(eq(feedback_key, "correctness"), eq(feedback_score, 0)))"#,
                &split,
                true,
            ),
            (r#"and(eq(feedback_key, "user_score"), eq(feedback_score, null))"#, &unscored, true),
            (r#"and(eq(feedback_key, "user_score"), eq(feedback_score, null))"#, &split, false),
            (r#"and(eq(feedback_key, "user_score"), gte(feedback_score, 0))"#, &unscored, false),
            // Trace fields and entry groups mix in one `and`.
            (r#"and(eq(error, false), eq(feedback_key, "correctness"), lt(feedback_score, 1))"#, &split, true),
        ]);
    }

    #[test]
    fn langsmith_documentation_examples() {
        let correctness_zero = trace(json!({
            "start_time": "2023-07-16T00:00:00Z",
            "feedback": [{"key": "Correctness", "score": 0.0}],
        }));
        let old_error = trace(json!({"start_time": "2023-07-15T12:34:56Z", "error": "boom"}));
        let new_error = trace(json!({"start_time": "2023-07-15T12:34:56.001Z", "error": "boom"}));
        let correct =
            trace(json!({"start_time": "2024-01-01T00:00:00Z", "feedback": [{"key": "Correctness", "score": 1}]}));
        let extractor = trace(json!({
            "name": "extractor",
            "tags": ["experimental"],
            "latency_ms": 5_001,
            "metadata": {"session_id": "abc"},
        }));
        let docs = r#"and(gt(start_time, "2023-07-15T12:34:56Z"), or(neq(error, null), and(eq(feedback_key, "Correctness"), eq(feedback_score, 0.0))))"#;
        check_rows(&[
            (docs, &correctness_zero, true),
            (docs, &old_error, false),
            (docs, &new_error, true),
            (docs, &correct, false),
            (r#"has(tags, "experimental")"#, &extractor, true),
            (r#"has(tags, "experimental")"#, &correct, false),
            (r#"search("What is")"#, &correct, true),
            (r#"search("what IS the")"#, &correct, true),
            (r#"search("What was")"#, &correct, false),
            (r#"eq(name, "extractor")"#, &extractor, true),
            (r#"eq(name, "extractor")"#, &correct, false),
            (r#"gt(latency, "5s")"#, &extractor, true),
            (r#"and(eq(metadata_key, "session_id"), eq(metadata_value, "abc"))"#, &extractor, true),
            (r#"and(eq(metadata_key, "session_id"), eq(metadata_value, "abd"))"#, &extractor, false),
        ]);
        assert_eq!(
            filter(docs).text(),
            r#"and(gt(start_time, "2023-07-15T12:34:56Z"), or(neq(error, null), and(eq(feedback_key, "Correctness"), eq(feedback_score, 0))))"#
        );
    }

    #[test]
    fn search_reads_every_text_of_the_trace() {
        let body = trace(json!({
            "name": "Billing Agent",
            "error": "Upstream TIMEOUT",
            "inputs": {"messages": [
                {"role": "user", "content": "Ça coûte combien ?"},
                {"role": "assistant", "content": "", "tool_calls": [{"name": "lookup_price", "args": {"sku": "SKU-42"}}]},
            ]},
            "outputs": {
                "messages": [{"role": "assistant", "content": "It costs 12 €."}],
                "tool_calls": [{"name": "issue_refund", "args": {"reason": ["Damaged Box"], "amount": 12}}],
            },
        }));
        check_rows(&[
            (r#"search("billing")"#, &body, true),
            (r#"search("timeout")"#, &body, true),
            (r#"search("ÇA COÛTE")"#, &body, true),
            (r#"search("coûte combien")"#, &body, true),
            (r#"search("LOOKUP_price")"#, &body, true),
            (r#"search("sku-42")"#, &body, true),
            (r#"search("sku")"#, &body, true),
            (r#"search("12 €")"#, &body, true),
            (r#"search("issue_refund")"#, &body, true),
            (r#"search("damaged box")"#, &body, true),
            // Numbers in tool arguments are not text.
            (r#"search("amount\": 12")"#, &body, false),
            (r#"search("nowhere")"#, &body, false),
            (r#"search("")"#, &body, true),
            // The Kelvin sign lowercases to an ASCII 'k'.
            (r#"search("lookup_price")"#, &trace(json!({"name": "LOO\u{212A}UP_PRICE"})), true),
            (r#"search("look")"#, &trace(json!({"name": "€ lOoK"})), true),
            (r#"search("éT")"#, &trace(json!({"name": "L'ÉTÉ"})), true),
            (r#"search("été")"#, &trace(json!({"name": "ete"})), false),
        ]);
    }

    #[test]
    fn input_and_output_entries() {
        let body = trace(json!({
            "inputs": {
                "messages": [{"role": "user", "content": "hi"}],
                "context": {"clinic_id": "clinic_482", "patient_age": 4},
                "locale": "fr-FR",
            },
            "outputs": {"messages": [], "final_answer": "bonjour", "confidence": 0.25},
        }));
        check_rows(&[
            (r#"eq(input_key, "messages")"#, &body, true),
            (r#"eq(input_key, "tools")"#, &body, false),
            (r#"eq(input_key, "context")"#, &body, true),
            (r#"eq(input_key, "context.clinic_id")"#, &body, true),
            (r#"eq(input_key, "context.clinic")"#, &body, false),
            (r#"eq(input_key, "clinic_id")"#, &body, false),
            (r#"and(eq(input_key, "context.patient_age"), lt(input_value, 5))"#, &body, true),
            (r#"and(eq(input_key, "context.patient_age"), gt(input_value, 5))"#, &body, false),
            (r#"and(eq(input_key, "locale"), eq(input_value, "fr-FR"))"#, &body, true),
            (r#"and(eq(input_key, "messages"), eq(input_value, "hi"))"#, &body, false),
            (r#"and(eq(input_key, "messages"), neq(input_value, null))"#, &body, true),
            (
                r#"and(gte(input_key, "context."), lt(input_key, "context/"), eq(input_value, "clinic_482"))"#,
                &body,
                true,
            ),
            (r#"in(output_key, ["final_answer", "answer"])"#, &body, true),
            (r#"eq(output_key, "tool_calls")"#, &body, false),
            (r#"and(eq(output_key, "confidence"), lt(output_value, 0.5))"#, &body, true),
            (r#"and(eq(output_key, "final_answer"), eq(output_value, "bonjour"))"#, &body, true),
        ]);
    }

    #[test]
    fn needs_body_only_for_search_inputs_and_outputs() {
        for text in [r#"search("x")"#, r#"eq(input_key, "a")"#, r#"or(eq(error, true), eq(output_value, 1))"#] {
            assert!(filter(text).needs_body(), "{text}");
        }
        for text in [r#"and(eq(feedback_key, "a"), eq(metadata_value, 1))"#, r#"has(tags, "x")"#, "gt(latency, 1)"] {
            assert!(!filter(text).needs_body(), "{text}");
        }
    }

    #[test]
    fn canonical_text_normalises_spacing_quotes_and_numbers() {
        let rows = [
            (" and ( eq ( name , 'a\\'b' ) ,\n\tgt(latency,5.50) ) ", r#"and(eq(name, "a'b"), gt(latency, 5.5))"#),
            (r#"in(name,["a","b\"c",null])"#, r#"in(name, ["a", "b\"c", null])"#),
            (r#"eq(metadata_value, -0.0)"#, r#"eq(metadata_value, 0)"#),
            (r#"eq(metadata_value, 1e20)"#, r#"eq(metadata_value, 1e20)"#),
            (r#"eq(metadata_value, 0.000001)"#, r#"eq(metadata_value, 1e-6)"#),
            (r#"eq(metadata_value, 007)"#, r#"eq(metadata_value, 7)"#),
            (r#"search("\u00e9\ud83d\ude42\n\u0001")"#, "search(\"é🙂\\n\\u0001\")"),
            ("not(or(eq(error, true)))", "not(or(eq(error, true)))"),
        ];
        for (input, canonical) in rows {
            let parsed = filter(input);
            assert_eq!(parsed.text(), canonical, "{input}");
            assert_eq!(filter(canonical), parsed);
            assert_eq!(parsed.to_string(), canonical);
            assert_eq!(input.parse::<Filter>().as_ref().map(Filter::text), Ok(canonical));
        }
    }

    #[test]
    fn serializes_as_its_text() {
        let parsed = filter(r#"and( has(tags,'beta'), gt(latency, "5s") )"#);
        let json = serde_json::to_value(&parsed).expect("serializes");
        assert_eq!(json, json!(r#"and(has(tags, "beta"), gt(latency, "5s"))"#));
        assert_eq!(serde_json::from_value::<Filter>(json).expect("deserializes"), parsed);
        let refused = serde_json::from_value::<Filter>(json!("eq(nope, 1)")).expect_err("unknown field");
        assert!(refused.to_string().starts_with("at column 4: unknown field 'nope'"), "{refused}");
    }

    #[test]
    fn syntax_errors_name_position_and_expectation() {
        let known = known_fields();
        // (input, byte position, message); the inputs are ASCII, so the column is the position plus one.
        let rows: Vec<(&str, usize, String)> = vec![
            ("", 0, "the filter is empty; expected an operator such as eq(...), and(...) or search(...)".into()),
            ("   ", 3, "the filter is empty; expected an operator such as eq(...), and(...) or search(...)".into()),
            (r#"eq(name, "x""#, 12, "expected ')' after the value, found end of input".into()),
            (r#"and(eq(name, "x") x)"#, 18, "expected ',' or ')' after argument, found 'x'".into()),
            (r#"and(eq(name, "x"), eq(name, "y")"#, 32, "expected ',' or ')' after argument, found end of input".into()),
            ("equals(name, 1)", 0, format!("unknown operator 'equals'; expected one of {OPERATOR_NAMES}")),
            (r#"EQ(name, "x")"#, 0, format!("unknown operator 'EQ' (operators are lowercase); expected one of {OPERATOR_NAMES}")),
            (r#"eq(nme, "x")"#, 3, format!("unknown field 'nme'; known fields: {known}")),
            (r#"eq(name, "abc)"#, 9, "unterminated string: expected a closing \"".into()),
            ("eq(name, 'abc\\')", 9, "unterminated string: expected a closing '".into()),
            (r#"eq(name, "x") x"#, 14, "expected end of input after the filter, found 'x'".into()),
            (r#"eq(name, "x"))"#, 13, "expected end of input after the filter, found ')'".into()),
            (r#"not(eq(error, true), eq(error, false))"#, 19, "not takes exactly one argument, found ','".into()),
            ("not()", 4, "not needs exactly one argument, found ')'".into()),
            ("and()", 4, "and needs at least one argument, found ')'".into()),
            ("eq(name)", 7, "eq needs a field and a value, found ')'".into()),
            ("eq()", 3, "eq needs a field and a value, found ')'".into()),
            (r#"eq(name, "a", "b")"#, 12, "eq takes exactly two arguments, found ',' after the value".into()),
            (r#"search("a", "b")"#, 10, "search takes exactly one argument, found ','".into()),
            ("search()", 7, "search needs one string argument, found ')'".into()),
            (r#"gt(latency, "5x")"#, 12, "invalid duration \"5x\": expected a number and a unit (ms, s, m, h or d) such as \"5s\", or a number of seconds".into()),
            (r#"gt(latency, "5")"#, 12, "invalid duration \"5\": expected a number and a unit (ms, s, m, h or d) such as \"5s\", or a number of seconds".into()),
            ("gt(latency, 5s)", 12, "malformed number '5s'; durations are strings, e.g. \"5s\" or \"500ms\"".into()),
            ("eq(name \"x\")", 8, "expected ',' after the field, found string \"x\"".into()),
            ("eq name", 3, "expected '(' after 'eq', found 'name'".into()),
            (r#"eq("name", "x")"#, 3, "expected a field name, found string \"name\"".into()),
            ("eq(name, x)", 9, "expected a value (a string, a number, true, false, null or a list), found 'x'".into()),
            (r#""x""#, 0, "expected an operator such as eq(...), and(...) or search(...), found string \"x\"".into()),
            ("eq(name, \"a\\q\")", 11, "invalid escape '\\q' in string; valid escapes are \\\" \\' \\\\ \\/ \\n \\r \\t \\b \\f \\uXXXX".into()),
            (r#"eq(name, "\ud800")"#, 10, "invalid unicode escape: expected \\u and four hex digits naming a character".into()),
            ("eq(name, -)", 9, "expected a digit after '-'".into()),
            ("eq(total_tokens, 1e999)", 17, "number out of range".into()),
            (r#"in(name, ["a" "b"])"#, 14, "expected ',' or ']' in a list, found string \"b\"".into()),
            (r#"in(name, [["a"]])"#, 10, "lists cannot be nested".into()),
            ("eq(name, %)", 9, "unexpected character '%'".into()),
        ];
        for (input, position, message) in rows {
            let column = position + 1;
            let error = parse_error(input);
            assert_eq!(
                (error.position, error.column, error.message.as_str()),
                (position, column, message.as_str()),
                "{input:?}"
            );
            assert_eq!(error.to_string(), format!("at column {column}: {message}"));
        }
    }

    #[test]
    fn error_positions_count_multi_byte_characters() {
        let error = parse_error(r#"eq(name, "éé") 🙂"#);
        assert_eq!((error.position, error.column), (17, 16));
        assert_eq!(error.message, "unexpected character '🙂'");
        let error = parse_error("and(eq(name, 'é'), 🙂)");
        assert_eq!((error.position, error.column), (20, 20));
    }

    #[test]
    fn type_errors_are_parse_errors() {
        let rows = [
            ("gt(tags, 3)", 0, "tags supports only has(tags, \"...\"), not gt"),
            (r#"eq(tags, "x")"#, 0, "tags supports only has(tags, \"...\"), not eq"),
            (r#"has(latency, "x")"#, 0, "has applies only to tags, not to latency"),
            ("has(tags, 3)", 10, "has(tags, ...) takes a string, found number 3"),
            ("search(3)", 7, "search takes a string, found number 3"),
            ("search([1])", 7, "search takes a string, found a list"),
            ("eq(name, 3)", 9, "name takes a string or null, found number 3"),
            (r#"eq(total_tokens, "3")"#, 17, "total_tokens takes a number or null, found string \"3\""),
            ("eq(error, 1)", 10, "error takes true, false, null or the error text, found number 1"),
            ("gt(error, true)", 0, "error supports only eq, neq and in, not gt"),
            ("gt(latency, null)", 12, "gt cannot compare with null; use eq(latency, null) or neq(latency, null)"),
            ("lt(metadata_value, true)", 19, "lt cannot order booleans; use eq or neq"),
            (r#"in(name, "a")"#, 9, "in takes a list such as [\"a\", \"b\"], found string \"a\""),
            (r#"eq(name, ["a"])"#, 9, "a list is only valid with in, not with eq"),
            (r#"in(name, ["a", 1])"#, 15, "name takes a string or null, found number 1"),
            (
                r#"gte(start_time, "2026-11-01")"#,
                16,
                "start_time takes an RFC 3339 timestamp such as \"2026-11-01T00:00:00Z\", found string \"2026-11-01\"",
            ),
            (
                "gte(start_time, 1700000000)",
                16,
                "start_time takes an RFC 3339 timestamp string or null, found number 1700000000",
            ),
        ];
        for (input, position, message) in rows {
            let error = parse_error(input);
            assert_eq!((error.position, error.message.as_str()), (position, message), "{input:?}");
        }
    }

    #[test]
    fn limits_refuse_long_and_deep_filters() {
        let deep = "not(".repeat(100_000);
        let error = parse_error(&deep);
        assert!(error.message.contains("the limit is 16384 bytes"), "{error}");
        assert!(error.position <= deep.len());

        let deep = format!("{}eq(error, true){}", "not(".repeat(1_000), ")".repeat(1_000));
        let error = parse_error(&deep);
        assert_eq!(error.message, "the filter nests deeper than 64 levels");
        assert_eq!(error.position, 64 * 4 + 3);

        let deepest = format!("{}eq(error, true){}", "not(".repeat(63), ")".repeat(63));
        assert!(!filter(&deepest).matches(&trace(json!({"error": "x"}))));
        let list_too_deep = format!("{}in(name, []){}", "not(".repeat(63), ")".repeat(63));
        assert_eq!(parse_error(&list_too_deep).message, "the filter nests deeper than 64 levels");

        let long_string = format!(r#"search("{}")"#, "a".repeat(FILTER_BYTES_MAX));
        assert!(parse_error(&long_string).message.contains("the limit is 16384 bytes"));
        let multi_byte = format!(r#"search("{}")"#, "é".repeat(FILTER_BYTES_MAX));
        let error = parse_error(&multi_byte);
        assert!(multi_byte.is_char_boundary(error.position));
        // Escaping can make the canonical text longer than the input: still refused.
        let controls = format!(r#"search("{}")"#, "\u{1}".repeat(FILTER_BYTES_MAX - 10));
        assert!(Filter::parse(&controls).is_err());
    }

    #[test]
    fn rfc3339_known_instants_and_refusals() {
        let rows = [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
            ("2024-02-29t23:59:59.9999999z", 1_709_251_199_999),
            ("2024-02-29 23:59:59.5Z", 1_709_251_199_500),
            ("2026-11-01T02:00:00+02:00", 1_793_491_200_000),
            ("2026-10-31T19:30:00-04:30", 1_793_491_200_000),
            ("2026-11-01T00:00:00Z", 1_793_491_200_000),
            ("1969-12-31T23:59:59Z", -1_000),
            ("0000-03-01T00:00:00Z", -62_162_035_200_000),
            ("2016-12-31T23:59:60Z", 1_483_228_800_000),
        ];
        for (text, expected) in rows {
            assert_eq!(parse_rfc3339_ms(text), Some(expected), "{text}");
        }
        for text in [
            "",
            "2026-11-01",
            "2026-11-01T00:00:00",
            "2026-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T00:60:00Z",
            "2026-11-01T00:00:61Z",
            "2026-11-01T00:00:00.Z",
            "2026-11-01T00:00:00+0200",
            "2026-11-01T00:00:00+24:00",
            "2026-11-01T00:00:00Zjunk",
            "2026-11-01X00:00:00Z",
            "+2026-11-01T00:00:00Z",
            "2026-11-1T00:00:00Z",
            "２026-11-01T00:00:00Z",
            "2026-11-01T00:00:00é",
        ] {
            assert_eq!(parse_rfc3339_ms(text), None, "{text}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500.0));
        assert_eq!(parse_duration_ms("1.5s"), Some(1_500.0));
        assert_eq!(parse_duration_ms("2m"), Some(120_000.0));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000.0));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000.0));
        for text in ["", "5", "s", ".5s", "5.s", "1.2.3s", "5 s", "-5s", "5sec", "5é", "1h30m"] {
            assert_eq!(parse_duration_ms(text), None, "{text}");
        }
    }

    /// xorshift64*: deterministic and dependency-free.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const VALID: &[&str] = &[
        r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#,
        "eq(error, true)",
        "gt(latency, 5)",
        r#"gt(latency, "5s")"#,
        r#"has(tags, "beta")"#,
        r#"search("refund")"#,
        r#"in(name, ["a", "b"])"#,
        r#"and(eq(metadata_key, "persona"), eq(metadata_value, "worried_parent"))"#,
        r#"gte(start_time, "2026-11-01T00:00:00Z")"#,
        "eq(end_time, null)",
        r#"and(gt(start_time, "2023-07-15T12:34:56Z"), or(neq(error, null), and(eq(feedback_key, "Correctness"), eq(feedback_score, 0.0))))"#,
        r#"not(and(eq(input_key, 'context.tier'), eq(input_value, -1.5e3)))"#,
        r#"or(search("é🙂"), lte(total_tokens, 1000), eq(output_key, "answer"))"#,
    ];

    /// Writes a random filter that follows the grammar's shape, though not
    /// always its types, with random spacing and quoting.
    fn random_filter(random: &mut Random, depth: usize, out: &mut String) {
        const SPACES: [&str; 5] = ["", "", " ", "  ", "\n\t"];
        let space = |random: &mut Random, out: &mut String| out.push_str(SPACES[random.below(SPACES.len())]);
        let shape = if depth >= 4 { 3 + random.below(4) } else { random.below(7) };
        match shape {
            0..=2 => {
                let operator = ["and", "or", "not"][shape];
                out.push_str(operator);
                space(random, out);
                out.push('(');
                let count = if operator == "not" { 1 } else { 1 + random.below(3) };
                for index in 0..count {
                    if index > 0 {
                        out.push(',');
                    }
                    space(random, out);
                    random_filter(random, depth + 1, out);
                    space(random, out);
                }
                out.push(')');
            }
            3 => {
                out.push_str("search(");
                random_string(random, out);
                out.push(')');
            }
            _ => {
                let comparators = ["eq", "neq", "gt", "gte", "lt", "lte", "in", "has"];
                out.push_str(comparators[random.below(comparators.len())]);
                out.push('(');
                space(random, out);
                out.push_str(FIELDS[random.below(FIELDS.len())].name());
                out.push(',');
                space(random, out);
                if random.below(4) == 0 {
                    out.push('[');
                    for index in 0..random.below(4) {
                        if index > 0 {
                            out.push_str(", ");
                        }
                        random_value(random, out);
                    }
                    out.push(']');
                } else {
                    random_value(random, out);
                }
                space(random, out);
                out.push(')');
            }
        }
    }

    fn random_value(random: &mut Random, out: &mut String) {
        const VALUES: [&str; 16] = [
            "true",
            "false",
            "null",
            "0",
            "-1",
            "3",
            "0.5",
            "-2.25e-3",
            "1e21",
            "123456789012345678",
            "\"5s\"",
            "'500ms'",
            "\"1.5h\"",
            "\"2026-11-01T00:00:00Z\"",
            "'2023-07-15T12:34:56.5+02:00'",
            "00",
        ];
        if random.below(3) == 0 {
            random_string(random, out);
        } else {
            out.push_str(VALUES[random.below(VALUES.len())]);
        }
    }

    fn random_string(random: &mut Random, out: &mut String) {
        const PIECES: [&str; 12] =
            ["a", "Refund", " ", "é", "🙂", "\\n", "\\u00e9", "\\ud83d\\ude42", "\\\\", "x_1", "\\t", "\u{1}"];
        let quote = if random.below(2) == 0 { '"' } else { '\'' };
        out.push(quote);
        for _ in 0..random.below(5) {
            match random.below(8) {
                0 => {
                    out.push('\\');
                    out.push(if random.below(2) == 0 { '"' } else { '\'' });
                }
                1 => out.push(if quote == '"' { '\'' } else { '"' }),
                _ => out.push_str(PIECES[random.below(PIECES.len())]),
            }
        }
        out.push(quote);
    }

    /// Parses `input`; on success checks the canonical round trip and that evaluation runs.
    fn check_no_panic(input: &str, traces: &[Trace]) -> bool {
        match Filter::parse(input) {
            Err(error) => {
                assert!(error.position <= input.len(), "{input:?}: {error:?}");
                assert!(input.is_char_boundary(error.position), "{input:?}: {error:?}");
                false
            }
            Ok(parsed) => {
                let again = Filter::parse(parsed.text())
                    .unwrap_or_else(|error| panic!("{input:?} → {:?} does not reparse: {error}", parsed.text()));
                assert_eq!(again.text(), parsed.text(), "{input:?}");
                for trace in traces {
                    assert_eq!(again.matches(trace), parsed.matches(trace), "{input:?}");
                }
                true
            }
        }
    }

    #[test]
    fn fuzz_never_panics_and_round_trips() {
        let traces = [
            trace(json!({})),
            trace(json!({
                "name": "a", "error": "x", "tags": ["beta"], "latency_ms": 6000, "total_tokens": 10,
                "end_time": "2026-11-02T10:00:09Z",
                "metadata": {"persona": "worried_parent"},
                "feedback": [{"key": "user_score", "score": 2}],
                "inputs": {"messages": [], "context": {"tier": -1500}},
                "outputs": {"messages": [{"role": "assistant", "content": "Refund é🙂"}], "answer": 1},
            })),
        ];
        let mut random = Random(0x9E37_79B9_7F4A_7C15);
        let characters: Vec<char> = "()[],\"' \\-.0123456789abeglnqrstuvxyz_EéZ:T🙂\n".chars().collect();
        let words = [
            "and(",
            "or(",
            "not(",
            "eq(",
            "neq(",
            "gt(",
            "gte(",
            "lt(",
            "lte(",
            "has(",
            "search(",
            "in(",
            ")",
            ")",
            ", ",
            ",",
            "[",
            "]",
            "name",
            "tags",
            "latency",
            "error",
            "feedback_key",
            "feedback_score",
            "metadata_value",
            "start_time",
            "input_key",
            "\"x\"",
            "'y'",
            "\"5s\"",
            "\"2026-11-01T00:00:00Z\"",
            "3",
            "-0.5",
            "1e3",
            "true",
            "null",
            " ",
            "é",
            "🙂",
            "\"",
        ];
        let mut parsed = 0;
        let mut input = String::new();
        for round in 0..200_000 {
            input.clear();
            if round % 2 == 0 {
                for _ in 0..random.below(24) {
                    input.push(*random.pick(&characters));
                }
            } else {
                for _ in 0..random.below(16) {
                    input.push_str(words[random.below(words.len())]);
                }
            }
            parsed += usize::from(check_no_panic(&input, &traces));
        }
        let mut corpus: Vec<String> = VALID.iter().map(|valid| valid.to_string()).collect();
        for _ in 0..15_000 {
            input.clear();
            random_filter(&mut random, 0, &mut input);
            if check_no_panic(&input, &traces) {
                parsed += 1;
                if corpus.len() < 200 {
                    corpus.push(input.clone());
                }
            }
        }
        for _ in 0..20_000 {
            let mut mutant = random.pick(&corpus).clone();
            for _ in 0..1 + random.below(3) {
                let boundaries: Vec<usize> =
                    mutant.char_indices().map(|(index, _)| index).chain([mutant.len()]).collect();
                let mut range = [*random.pick(&boundaries), *random.pick(&boundaries)];
                range.sort_unstable();
                let [start, end] = range;
                match random.below(3) {
                    0 => mutant.replace_range(start..end, ""),
                    1 => mutant.insert_str(start, words[random.below(words.len())]),
                    _ => {
                        // Swap [start, end) with the range that follows it, of the same count of characters.
                        let taken: String = mutant[start..end].to_owned();
                        let rest = &mutant[end..];
                        let following: String = rest.chars().take(taken.chars().count()).collect();
                        mutant.replace_range(start..end + following.len(), &format!("{following}{taken}"));
                    }
                }
            }
            parsed += usize::from(check_no_panic(&mutant, &traces));
        }
        for valid in VALID {
            assert!(check_no_panic(valid, &traces), "{valid}");
        }
        // The generators must reach the evaluator, not only the error paths.
        assert!(parsed > 5_000, "only {parsed} inputs parsed");
    }
}
