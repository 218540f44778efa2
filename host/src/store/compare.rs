//! Comparing example bodies (for diffs) and matching metadata (for filters).

use serde_json::Value;

/// Dotted paths, at most two levels deep, where two example bodies differ:
/// `outputs.reference`, `metadata.severity`, or `inputs` when one side is not
/// an object. Sorted, because both bodies come from sorted maps.
pub(super) fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let mut fields = Vec::new();
    for key in union_of_keys(before, after) {
        let (left, right) = (before.get(&key), after.get(&key));
        if left == right {
            continue;
        }
        match (left, right) {
            (Some(left @ Value::Object(_)), Some(right @ Value::Object(_))) => {
                for second in union_of_keys(left, right) {
                    if left.get(&second) != right.get(&second) {
                        fields.push(format!("{key}.{second}"));
                    }
                }
            }
            _ => fields.push(key),
        }
    }
    fields
}

/// Whether a metadata value equals the text a filter asked for. Strings
/// compare as text; numbers compare by value (`"3"` matches `3` and `3.0`);
/// booleans as `true` / `false`.
pub(super) fn metadata_value_matches(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        Some(Value::String(text)) => text == wanted,
        Some(Value::Number(number)) => {
            number.to_string() == wanted
                || matches!(wanted.parse::<f64>(), Ok(parsed) if Some(parsed) == number.as_f64())
        }
        Some(Value::Bool(flag)) => flag.to_string() == wanted,
        _ => false,
    }
}

/// Whether an example's `metadata.split` names `wanted`: the split itself, or
/// one entry of a list of splits (LangSmith keeps a list).
pub(super) fn split_matches(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        Some(Value::Array(splits)) => splits.iter().any(|split| split.as_str() == Some(wanted)),
        other => metadata_value_matches(other, wanted),
    }
}

fn union_of_keys(left: &Value, right: &Value) -> Vec<String> {
    let mut keys: Vec<String> =
        [left, right].into_iter().filter_map(Value::as_object).flat_map(|object| object.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_fields_are_two_levels_deep() {
        let before = json!({"inputs": {"messages": [1]}, "outputs": {"reference": "a", "must_call": ["x"]},
                            "metadata": {"severity": "p1", "source": "production"}});
        let after = json!({"inputs": {"messages": [1]}, "outputs": {"reference": "b", "must_call": ["x"]},
                           "metadata": {"severity": "p0"}});
        assert_eq!(changed_fields(&before, &after), vec!["metadata.severity", "metadata.source", "outputs.reference"]);
        assert_eq!(changed_fields(&json!({"inputs": 1}), &json!({"inputs": {"a": 1}})), vec!["inputs"]);
        assert!(changed_fields(&before, &before).is_empty());
    }

    #[test]
    fn metadata_values_match_as_text_or_number() {
        assert!(metadata_value_matches(Some(&json!("p0")), "p0"));
        assert!(!metadata_value_matches(Some(&json!("p0")), "p1"));
        assert!(metadata_value_matches(Some(&json!(3)), "3"));
        assert!(metadata_value_matches(Some(&json!(3.0)), "3"));
        assert!(metadata_value_matches(Some(&json!(true)), "true"));
        assert!(!metadata_value_matches(Some(&json!(["p0"])), "p0"));
        assert!(!metadata_value_matches(None, "p0"));
        assert!(split_matches(Some(&json!(["train", "test"])), "test"));
        assert!(split_matches(Some(&json!("test")), "test"));
        assert!(!split_matches(Some(&json!(["train"])), "test"));
    }
}
