//! Rules for names, texts, references and dataset schemas, and the limits
//! of the store. The only code that knows `jsonschema`.

use super::{DatasetSchema, StoreError};
use crate::model::{Example, FieldError};
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::{Location, LocationSegment};
use serde_json::Value;

/// Longest dataset name, in bytes.
pub const DATASET_NAME_BYTES_MAX: usize = 128;
/// Longest tag name, in bytes.
pub const TAG_NAME_BYTES_MAX: usize = 128;
/// Longest author of a commit or tag change, in bytes.
pub const AUTHOR_BYTES_MAX: usize = 256;
/// Longest release note of a commit, in bytes.
pub const NOTE_BYTES_MAX: usize = 16 * 1024;
/// Longest dataset description, in bytes.
pub const DESCRIPTION_BYTES_MAX: usize = 4 * 1024;
/// Most changes in one commit or import. A commit is one sled transaction
/// held in memory; this bounds it while leaving room for a 50k drift refresh.
pub const CHANGES_PER_COMMIT_MAX: usize = 100_000;
/// Most field errors one refusal lists; the rest are counted, not listed.
pub const FIELD_ERRORS_MAX: usize = 1_000;
/// Longest JSON Schema of a dataset's inputs or outputs, as compact JSON, in bytes.
pub const SCHEMA_BYTES_MAX: usize = 256 * 1024;
/// Longest reason given for one schema violation: the validator quotes the
/// offending value, which may be large.
const SCHEMA_REASON_BYTES_MAX: usize = 512;

/// What part of a dataset a reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Selector {
    Latest,
    Version(u64),
    Tag(String),
}

/// Why `name` cannot be a dataset name, if it cannot.
pub(super) fn dataset_name_problem(name: &str) -> Option<String> {
    let starts_well = name.bytes().next().is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
    let characters_allowed =
        name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_.-".contains(&byte));
    if name.is_empty() || name.len() > DATASET_NAME_BYTES_MAX {
        Some(format!("must be 1 to {DATASET_NAME_BYTES_MAX} characters"))
    } else if !characters_allowed || !starts_well {
        Some("must use only a-z, 0-9, '_', '.' and '-', and start with a letter or digit".into())
    } else {
        None
    }
}

/// Why `tag` cannot be a tag name, if it cannot. All-digit names are refused
/// so that `name@17` always means version 17.
pub(super) fn tag_name_problem(tag: &str) -> Option<String> {
    if tag.is_empty() || tag.len() > TAG_NAME_BYTES_MAX {
        Some(format!("must be 1 to {TAG_NAME_BYTES_MAX} characters"))
    } else if !tag.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte)) {
        Some("must use only A-Z, a-z, 0-9, '_', '.' and '-'".into())
    } else if tag.bytes().all(|byte| byte.is_ascii_digit()) {
        Some("must not be all digits: `name@17` means version 17".into())
    } else {
        None
    }
}

/// Why `id` cannot be an example id, if it cannot. The model checks the
/// length; the store also refuses the zero byte, its key separator.
pub(super) fn example_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 256 {
        Some("must be 1 to 256 characters".into())
    } else if id.contains('\0') {
        Some("must not contain the NUL character".into())
    } else {
        None
    }
}

/// The errors of a free text field: empty when required, or too long.
pub(super) fn text_problems(field: &str, text: &str, required: bool, bytes_max: usize, errors: &mut Vec<FieldError>) {
    if required && text.trim().is_empty() {
        errors.push(FieldError { field: field.into(), reason: "must not be empty".into() });
    } else if text.len() > bytes_max {
        errors.push(FieldError { field: field.into(), reason: format!("must be at most {bytes_max} bytes") });
    }
}

/// The errors of a dataset's schemas: too large, or not a JSON Schema this
/// build compiles (malformed, or with a `$ref` it cannot resolve: files and
/// URLs are never fetched). Fields `schema.inputs`, `schema.outputs`.
pub(super) fn schema_problems(schema: &DatasetSchema) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (part, schema) in [("inputs", &schema.inputs), ("outputs", &schema.outputs)] {
        let Some(schema) = schema else { continue };
        let field = format!("schema.{part}");
        let size = serde_json::to_vec(schema).map_or(usize::MAX, |bytes| bytes.len());
        if size > SCHEMA_BYTES_MAX {
            errors.push(FieldError { field, reason: format!("must be at most {SCHEMA_BYTES_MAX} bytes") });
        } else if let Err(error) = jsonschema::validator_for(schema) {
            let reason = match error.instance_path() {
                _ if matches!(error.kind(), ValidationErrorKind::Referencing(_)) => format!(
                    "is not a valid JSON Schema: a $ref does not resolve (only references within the schema do; \
                     files and URLs are never fetched): {error}"
                ),
                path if path.is_empty() => format!("is not a valid JSON Schema: {error}"),
                path => format!("is not a valid JSON Schema: at {path}: {error}"),
            };
            errors.push(FieldError { field, reason: bounded(reason) });
        }
    }
    errors
}

/// A dataset's schemas, compiled once for a whole commit or import.
pub(super) struct SchemaValidators {
    inputs: Option<jsonschema::Validator>,
    outputs: Option<jsonschema::Validator>,
}

impl SchemaValidators {
    /// Compiles the schemas; the error says which one failed, and why.
    pub(super) fn compile(schema: &DatasetSchema) -> Result<SchemaValidators, String> {
        let compile = |part: &str, schema: &Option<Value>| {
            schema
                .as_ref()
                .map(jsonschema::validator_for)
                .transpose()
                .map_err(|error| format!("for {part} does not compile: {error}"))
        };
        Ok(SchemaValidators {
            inputs: compile("inputs", &schema.inputs)?,
            outputs: compile("outputs", &schema.outputs)?,
        })
    }

    /// Adds every violation of the schemas by `example`, each naming its
    /// field (`inputs.context.clinic_id`) with the validator's reason.
    pub(super) fn check(&self, example: &Example, errors: &mut Vec<FieldError>) {
        if let Some(validator) = &self.inputs {
            check_part(validator, "inputs", serde_json::to_value(&example.inputs), errors);
        }
        if let Some(validator) = &self.outputs {
            check_part(validator, "outputs", serde_json::to_value(&example.outputs), errors);
        }
    }
}

fn check_part(
    validator: &jsonschema::Validator,
    part: &str,
    value: Result<Value, serde_json::Error>,
    errors: &mut Vec<FieldError>,
) {
    let value = match value {
        Ok(value) => value,
        Err(error) => {
            errors.push(FieldError { field: part.into(), reason: format!("cannot be encoded: {error}") });
            return;
        }
    };
    for error in validator.iter_errors(&value).take(FIELD_ERRORS_MAX) {
        errors.push(FieldError { field: field_path(part, error.instance_path()), reason: bounded(error.to_string()) });
    }
}

/// `inputs` + `/context/clinic_id` → `inputs.context.clinic_id`; array
/// indices as `[2]`, like the model's field paths.
fn field_path(part: &str, location: &Location) -> String {
    let mut path = part.to_owned();
    for segment in location.segments() {
        match segment {
            LocationSegment::Property(name) => {
                path.push('.');
                path.push_str(&name);
            }
            LocationSegment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// Cuts a reason to [`SCHEMA_REASON_BYTES_MAX`] bytes, on a character boundary.
fn bounded(mut reason: String) -> String {
    if reason.len() > SCHEMA_REASON_BYTES_MAX {
        let mut end = SCHEMA_REASON_BYTES_MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// Splits `name`, `name@17`, `name@v3.4` or `name@prod` into its parts.
pub(super) fn parse_reference(reference: &str) -> Result<(&str, Selector), StoreError> {
    let bad = |reason: String| StoreError::BadReference(format!("bad dataset reference {reference:?}: {reason}"));
    let (name, selector) = match reference.split_once('@') {
        None => (reference, None),
        Some((name, selector)) => (name, Some(selector)),
    };
    if let Some(problem) = dataset_name_problem(name) {
        return Err(bad(format!("the dataset name {problem}")));
    }
    let selector = match selector {
        None => Selector::Latest,
        Some("") => return Err(bad("nothing follows '@'; expected a version number or a tag".into())),
        Some(digits) if digits.bytes().all(|byte| byte.is_ascii_digit()) => {
            Selector::Version(digits.parse().map_err(|_| bad(format!("version {digits} is too large")))?)
        }
        Some(tag) => match tag_name_problem(tag) {
            Some(problem) => return Err(bad(format!("the tag name {problem}"))),
            None => Selector::Tag(tag.to_owned()),
        },
    };
    Ok((name, selector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names() {
        for good in ["voice-agent-golden", "a", "9lives", "a.b_c-d", &"x".repeat(128)] {
            assert_eq!(dataset_name_problem(good), None, "{good}");
        }
        for bad in ["", "Upper", "-lead", ".hidden", "_x", "with space", "a@b", "a\0b", "é", &"x".repeat(129)] {
            assert!(dataset_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn tag_names() {
        for good in ["v3.4", "prod", "Release_1", "1.0", "v17"] {
            assert_eq!(tag_name_problem(good), None, "{good}");
        }
        for bad in ["", "17", "a b", "a@b", "tag/x", &"t".repeat(129)] {
            assert!(tag_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn schema_violations_name_the_field_like_the_model() {
        let schema = DatasetSchema {
            inputs: Some(serde_json::json!({
                "properties": {"messages": {"items": {"properties": {"content": {"maxLength": 10}}}}}
            })),
            outputs: Some(serde_json::json!({"properties": {"reference": {"type": "string"}}})),
        };
        let validators = SchemaValidators::compile(&schema).expect("compiles");
        let example = Example::from_json(
            r#"{"inputs": {"messages": [{"role": "user", "content": "short"}, {"role": "user", "content": "much too long"}]},
                "outputs": {"reference": {"text": "x"}}}"#,
        )
        .expect("valid example");
        let mut errors = Vec::new();
        validators.check(&example, &mut errors);
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["inputs.messages[1].content", "outputs.reference"], "{errors:?}");
        assert_eq!(bounded("é".repeat(400)).len(), SCHEMA_REASON_BYTES_MAX + '…'.len_utf8());
    }

    #[test]
    fn references() {
        assert_eq!(parse_reference("golden").expect("ok"), ("golden", Selector::Latest));
        assert_eq!(parse_reference("golden@17").expect("ok"), ("golden", Selector::Version(17)));
        assert_eq!(parse_reference("golden@v3.4").expect("ok"), ("golden", Selector::Tag("v3.4".into())));
        assert_eq!(parse_reference("golden@prod").expect("ok"), ("golden", Selector::Tag("prod".into())));
        for bad in ["", "@1", "golden@", "golden@a@b", "Golden", "golden@99999999999999999999999", "golden@a b"] {
            assert!(matches!(parse_reference(bad), Err(StoreError::BadReference(_))), "{bad:?}");
        }
    }
}
