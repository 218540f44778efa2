//! Tests of the store against a real sled database in a temporary directory.

use super::*;
use serde_json::json;
use std::collections::BTreeSet;

const TRIAGE: &str = r#"{"id": "triage-1",
 "inputs":  {"messages": [{"role": "system", "content": "You are an after-hours triage agent."},
                          {"role": "user", "content": "My 4-year-old has had a fever for 3 days."}],
             "tools": ["lookup_clinic_hours", "page_on_call", "schedule_callback"],
             "context": {"clinic_id": "clinic_482", "patient_age": 4}},
 "outputs": {"reference": "I'm going to page the on-call physician now. Please stay on the line.",
             "must_call": ["page_on_call"], "must_not_say": ["I'm not a doctor", "call 911"]},
 "metadata": {"source": "production", "severity": "p0", "persona": "worried_parent",
              "trace_id": "8f3a", "annotator": "rn_kelly"}}"#;

/// A store in a fresh temporary directory, kept alive as long as the store.
struct Fixture {
    store: Store,
    directory: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(directory.path()).expect("store opens");
    Fixture { store, directory }
}

fn golden(store: &Store, name: &str) -> Dataset {
    store
        .create_dataset(NewDataset {
            name: name.into(),
            description: "test".into(),
            kind: DatasetKind::Golden,
            schema: DatasetSchema::default(),
        })
        .expect("dataset created")
}

/// A small valid example with the given id, reference answer and metadata.
fn example(id: Option<&str>, reference: &str, metadata: serde_json::Value) -> Example {
    let mut value = json!({
        "inputs": {"messages": [{"role": "user", "content": "What are the clinic's hours?"}]},
        "outputs": {"reference": reference},
        "metadata": metadata,
    });
    if let Some(id) = id {
        value["id"] = json!(id);
    }
    Example::from_json(&value.to_string()).expect("test example is valid")
}

fn add(id: &str, reference: &str) -> Change {
    Change::Add(example(Some(id), reference, json!({})))
}

fn commit_of(changes: Vec<Change>) -> Commit {
    Commit { author: "tester".into(), note: "a change".into(), changes }
}

fn ids(examples: &[StoredExample]) -> Vec<&str> {
    examples.iter().map(|stored| stored.id.as_str()).collect()
}

/// How many keys all trees hold together.
fn key_count(store: &Store) -> usize {
    let trees = &store.trees;
    [&trees.datasets, &trees.latest, &trees.versions, &trees.examples, &trees.current, &trees.tags, &trees.tag_events]
        .iter()
        .map(|tree| tree.len())
        .sum()
}

/// The digest of a version computed from scratch, to check the incremental one.
fn recomputed_digest(store: &Store, name: &str, version: u64) -> String {
    let mut total = Digest::default();
    for stored in store.read_version(name, version).expect("version reads") {
        let body = digest::canonical_body(&stored.example).expect("encodes");
        total.add(&digest::content_hash(&stored.id, &body));
    }
    total.to_hex()
}

/// The variant of an error, in words, for tables of expected refusals.
fn kind_of(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound { .. } => "not found",
        StoreError::Conflict(_) => "conflict",
        StoreError::Invalid(_) => "invalid",
        StoreError::BadReference(_) => "bad reference",
        StoreError::Storage(_) => "storage",
    }
}

fn field_errors(error: StoreError) -> Vec<String> {
    match error {
        StoreError::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// The server shares one store across request handlers and threads.
#[test]
fn store_is_clone_send_and_sync() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Store>();
    shareable::<StoreError>();
}

#[test]
fn creates_and_lists_datasets() {
    let Fixture { store, .. } = fixture();
    let created = golden(&store, "voice-agent-golden");
    assert_eq!(created.latest_version, 0);
    assert_eq!(created.example_count, 0);
    store
        .create_dataset(NewDataset {
            name: "drift.v2".into(),
            description: String::new(),
            kind: DatasetKind::Drift,
            schema: DatasetSchema::default(),
        })
        .expect("second dataset");
    let names: Vec<String> = store.list_datasets().expect("lists").into_iter().map(|dataset| dataset.name).collect();
    assert_eq!(names, ["drift.v2", "voice-agent-golden"]);
    assert_eq!(store.dataset("drift.v2").expect("exists").kind, DatasetKind::Drift);

    let duplicate = store.create_dataset(NewDataset {
        name: "voice-agent-golden".into(),
        description: String::new(),
        kind: DatasetKind::Drift,
        schema: DatasetSchema::default(),
    });
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");
    for bad in ["", "Upper", "-x", "a b", "a\0b"] {
        let refused = store.create_dataset(NewDataset {
            name: bad.into(),
            description: String::new(),
            kind: DatasetKind::Golden,
            schema: DatasetSchema::default(),
        });
        assert!(field_errors(refused.expect_err(bad)).iter().any(|error| error.starts_with("name:")), "{bad:?}");
    }
    let too_long = "d".repeat(DESCRIPTION_BYTES_MAX + 1);
    let refused = store.create_dataset(NewDataset {
        name: "x".into(),
        description: too_long,
        kind: DatasetKind::Golden,
        schema: DatasetSchema::default(),
    });
    assert!(field_errors(refused.expect_err("long description"))[0].starts_with("description:"));
    assert!(matches!(store.dataset("missing"), Err(StoreError::NotFound { .. })));

    let history = store.history("voice-agent-golden").expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].version, 0);
    assert_eq!(history[0].digest, Digest::default().to_hex());
    assert!(store.read_version("voice-agent-golden", 0).expect("version 0 reads").is_empty());
    assert_eq!("drift".parse::<DatasetKind>(), Ok(DatasetKind::Drift));
    assert!("gold".parse::<DatasetKind>().is_err());
}

#[test]
fn imports_good_lines() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    let jsonl = format!(
        "{}\n\n{}\n{}\n",
        TRIAGE.replace('\n', " "),
        json!({"inputs": {"messages": [{"role": "user", "content": "no id here"}]}}),
        json!({"id": "b", "inputs": {"messages": [{"role": "user", "content": "b"}]}, "metadata": {"severity": "p2"}}),
    );
    let info = store.import("golden", &jsonl, "rn_kelly", "first import").expect("imports");
    assert_eq!((info.version, info.example_count, info.added, info.modified, info.removed), (1, 3, 3, 0, 0));
    assert_eq!(info.author, "rn_kelly");
    assert_eq!(info.note, "first import");
    assert!(info.created_at.ends_with('Z') && info.created_at.len() == 20, "{}", info.created_at);
    assert_eq!(info.digest, recomputed_digest(&store, "golden", 1));

    let examples = store.read_version("golden", 1).expect("reads");
    assert_eq!(examples.len(), 3);
    let generated = examples.iter().find(|stored| stored.id != "b" && stored.id != "triage-1").expect("generated id");
    assert_eq!(generated.id.len(), 36, "UUID-shaped id: {}", generated.id);
    let triage = store.example("golden", 1, "triage-1").expect("triage example");
    assert_eq!(triage.example, Example::from_json(TRIAGE).expect("valid"));
    assert_eq!((triage.version_added, triage.version_modified), (1, 1));

    // A second import of an existing id edits it.
    let edit =
        json!({"id": "b", "inputs": {"messages": [{"role": "user", "content": "b"}]}, "metadata": {"severity": "p0"}});
    let info = store.import("golden", &edit.to_string(), "rn_kelly", "raise severity").expect("imports");
    assert_eq!((info.version, info.example_count, info.added, info.modified), (2, 3, 0, 1));
}

#[test]
fn import_with_bad_lines_writes_nothing_and_reports_every_line() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    let keys_before = key_count(&store);
    let jsonl = [
        r#"{"id": "ok-1", "inputs": {"messages": [{"role": "user", "content": "fine"}]}}"#,
        r#"{"id": "bad-2", "inputs": {"messages": []}}"#,
        r#"{"id": "ok-3", "inputs": {"messages": [{"role": "user", "content": "fine"}]}}"#,
        r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}, "metadata": {"severity": "p9"}}"#,
        r#"{"id": "ok-1", "inputs": {"messages": [{"role": "user", "content": "again"}]}}"#,
        r#"{not json"#,
    ]
    .join("\n");
    let errors = field_errors(store.import("golden", &jsonl, "tester", "bad").expect_err("refused"));
    assert!(errors.iter().any(|error| error.starts_with("line 2: inputs.messages:")), "{errors:?}");
    assert!(errors.iter().any(|error| error.starts_with("line 4: metadata.severity:")), "{errors:?}");
    assert!(errors.iter().any(|error| error.starts_with("line 5: id:") && error.contains("line 1")), "{errors:?}");
    assert!(errors.iter().any(|error| error.starts_with("line 6: $:")), "{errors:?}");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(store.dataset("golden").expect("exists").latest_version, 0);
    assert_eq!(key_count(&store), keys_before, "a refused import leaves no trace");

    let empty = field_errors(store.import("golden", "\n  \n", "tester", "nothing").expect_err("refused"));
    assert_eq!(empty, ["lines: hold no example"]);
    let anonymous =
        field_errors(store.import("golden", TRIAGE.replace('\n', " ").as_str(), " ", "x").expect_err("no author"));
    assert_eq!(anonymous, ["author: must not be empty"]);
    assert!(matches!(store.import("missing", "{}", "tester", ""), Err(StoreError::NotFound { .. })));
}

#[test]
fn adds_edits_and_deletes() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    let v1 = store.commit("golden", commit_of(vec![add("a", "one"), add("b", "two")])).expect("adds");
    assert_eq!((v1.version, v1.example_count, v1.added), (1, 2, 2));

    let edited = example(None, "one, better", json!({"severity": "p1"}));
    let v2 = store.commit("golden", commit_of(vec![Change::Edit { id: "a".into(), example: edited }])).expect("edits");
    assert_eq!((v2.version, v2.example_count, v2.added, v2.modified, v2.removed), (2, 2, 0, 1, 0));
    let a = store.example("golden", 2, "a").expect("a at v2");
    assert_eq!((a.version_added, a.version_modified), (1, 2));
    assert_eq!(a.example.id.as_deref(), Some("a"));

    let v3 = store.commit("golden", commit_of(vec![Change::Delete { id: "b".into() }])).expect("deletes");
    assert_eq!((v3.version, v3.example_count, v3.removed), (3, 1, 1));
    assert_eq!(ids(&store.read_version("golden", 3).expect("reads")), ["a"]);
    assert!(matches!(store.example("golden", 3, "b"), Err(StoreError::NotFound { .. })));
    assert_eq!(store.example("golden", 2, "b").expect("b still in v2").id, "b");

    // Re-adding a deleted id starts a new life.
    let v4 = store.commit("golden", commit_of(vec![add("b", "back")])).expect("re-adds");
    assert_eq!(v4.added, 1);
    assert_eq!(store.example("golden", 4, "b").expect("b at v4").version_added, 4);

    // Refusals leave no trace.
    let keys_before = key_count(&store);
    let refusals = [
        (commit_of(vec![add("a", "dup")]), "conflict"),
        (commit_of(vec![add("new", "x"), Change::Delete { id: "ghost".into() }]), "not found"),
        (commit_of(vec![Change::Edit { id: "ghost".into(), example: example(None, "x", json!({})) }]), "not found"),
        (commit_of(vec![]), "invalid"),
        (commit_of(vec![Change::Edit { id: "a".into(), example: example(Some("b"), "x", json!({})) }]), "invalid"),
        (commit_of(vec![Change::Delete { id: "nul\0id".into() }]), "invalid"),
    ];
    for (commit, expected) in refusals {
        let error = store.commit("golden", commit.clone()).expect_err("refused");
        assert_eq!(kind_of(&error), expected, "{commit:?} gave {error:?}");
    }
    assert_eq!(key_count(&store), keys_before, "refused commits leave no trace");
    assert_eq!(store.dataset("golden").expect("exists").latest_version, 4);

    // Validation names the change when there are several.
    let mut broken = example(Some("c"), "x", json!({}));
    broken.inputs.messages.clear();
    let errors = field_errors(
        store.commit("golden", commit_of(vec![add("ok", "x"), Change::Add(broken.clone())])).expect_err("refused"),
    );
    assert_eq!(errors, ["changes[1].inputs.messages: must hold at least one message"]);
    let errors = field_errors(store.commit("golden", commit_of(vec![Change::Add(broken)])).expect_err("refused"));
    assert_eq!(errors, ["inputs.messages: must hold at least one message"]);
}

#[test]
fn changes_in_one_commit_apply_in_order() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    store.commit("golden", commit_of(vec![add("keep", "k"), add("gone", "g")])).expect("v1");
    let info = store
        .commit(
            "golden",
            commit_of(vec![
                add("fleeting", "f"),
                Change::Delete { id: "fleeting".into() },
                Change::Delete { id: "gone".into() },
                add("gone", "g"),
                Change::Edit { id: "keep".into(), example: example(None, "k2", json!({})) },
            ]),
        )
        .expect("v2");
    // Net effect: "keep" modified; "gone" deleted and re-added identically is no change.
    assert_eq!((info.added, info.modified, info.removed, info.example_count), (0, 1, 0, 2));
    assert_eq!(store.example("golden", 2, "gone").expect("gone kept").version_added, 1);
    assert_eq!(info.digest, recomputed_digest(&store, "golden", 2));
}

#[test]
fn old_versions_read_exactly_as_they_were() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    store.commit("golden", commit_of(vec![add("a", "a1"), add("b", "b1"), add("c", "c1")])).expect("v1");
    let version_one = store.read_version("golden", 1).expect("v1 reads");
    let export_one = store.export_jsonl("golden", 1).expect("v1 exports");
    store
        .commit("golden", commit_of(vec![Change::Edit { id: "a".into(), example: example(None, "a2", json!({})) }]))
        .expect("v2");
    store.commit("golden", commit_of(vec![Change::Delete { id: "b".into() }])).expect("v3");
    store.commit("golden", commit_of(vec![add("d", "d1")])).expect("v4");
    store
        .commit("golden", commit_of(vec![Change::Edit { id: "c".into(), example: example(None, "c5", json!({})) }]))
        .expect("v5");

    assert_eq!(store.read_version("golden", 1).expect("v1 reads"), version_one);
    assert_eq!(store.export_jsonl("golden", 1).expect("v1 exports"), export_one);
    assert_eq!(ids(&store.read_version("golden", 3).expect("v3")), ["a", "c"]);
    assert_eq!(ids(&store.read_version("golden", 5).expect("v5")), ["a", "c", "d"]);
    let c = store.example("golden", 5, "c").expect("c at v5");
    assert_eq!((c.version_added, c.version_modified), (1, 5));
    assert_eq!(store.example("golden", 4, "c").expect("c at v4").example.outputs.reference, Some(json!("c1")));

    let history = store.history("golden").expect("history");
    let versions: Vec<u64> = history.iter().map(|info| info.version).collect();
    assert_eq!(versions, [5, 4, 3, 2, 1, 0]);
    for info in &history {
        assert_eq!(info.digest, recomputed_digest(&store, "golden", info.version), "v{}", info.version);
        assert_eq!(store.version_info("golden", info.version).expect("info"), *info);
    }
    assert!(matches!(store.read_version("golden", 6), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.version_info("golden", 6), Err(StoreError::NotFound { .. })));
}

#[test]
fn tags_set_move_delete_and_resolve() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    for index in 1..=3 {
        store.commit("golden", commit_of(vec![add(&format!("e{index}"), "x")])).expect("commit");
    }
    let tag = store.set_tag("golden", "v3.4", 2, "release_bot").expect("set");
    assert_eq!((tag.name.as_str(), tag.version, tag.set_by.as_str()), ("v3.4", 2, "release_bot"));
    store.set_tag("golden", "prod", 1, "ops").expect("set prod");
    assert_eq!(store.resolve("golden@prod").expect("resolves"), ("golden".to_owned(), 1));
    store.set_tag("golden", "prod", 3, "ops").expect("move prod");
    store.set_tag("golden", "prod", 3, "ops").expect("same version: no-op");
    assert_eq!(store.resolve("golden@prod").expect("resolves"), ("golden".to_owned(), 3));
    assert_eq!(store.resolve("golden@v3.4").expect("resolves"), ("golden".to_owned(), 2));
    assert_eq!(store.resolve("golden@2").expect("resolves"), ("golden".to_owned(), 2));
    assert_eq!(store.resolve("golden").expect("resolves"), ("golden".to_owned(), 3));

    let names: Vec<String> = store.tags("golden").expect("tags").into_iter().map(|tag| tag.name).collect();
    assert_eq!(names, ["prod", "v3.4"]);
    let removed = store.delete_tag("golden", "v3.4", "ops").expect("deletes");
    assert_eq!(removed.version, 2);
    assert!(matches!(store.resolve("golden@v3.4"), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.delete_tag("golden", "v3.4", "ops"), Err(StoreError::NotFound { .. })));

    let history = store.tag_history("golden").expect("history");
    let summary: Vec<String> = history
        .iter()
        .map(|event| format!("{} {:?} {:?}->{:?} by {}", event.tag, event.action, event.from, event.to, event.author))
        .collect();
    assert_eq!(
        summary,
        [
            "v3.4 Delete Some(2)->None by ops",
            "prod Move Some(1)->Some(3) by ops",
            "prod Set None->Some(1) by ops",
            "v3.4 Set None->Some(2) by release_bot",
        ]
    );
    assert!(history.iter().all(|event| event.at.ends_with('Z')));

    assert!(matches!(store.set_tag("golden", "future", 4, "ops"), Err(StoreError::NotFound { .. })));
    for bad in ["17", "", "a b", "a@b"] {
        assert!(matches!(store.set_tag("golden", bad, 1, "ops"), Err(StoreError::Invalid(_))), "{bad:?}");
    }
    assert!(matches!(store.set_tag("golden", "ok", 1, ""), Err(StoreError::Invalid(_))));
    assert!(matches!(store.set_tag("missing", "ok", 1, "ops"), Err(StoreError::NotFound { .. })));
}

#[test]
fn bad_references_are_refused_clearly() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    store.commit("golden", commit_of(vec![add("a", "x")])).expect("v1");
    for malformed in ["", "golden@", "golden@a@b", "Golden", "golden@a b", "@1"] {
        let error = store.resolve(malformed).expect_err(malformed);
        assert!(matches!(error, StoreError::BadReference(_)), "{malformed:?}: {error:?}");
    }
    let cases = [
        ("missing", "dataset `missing` not found"),
        ("missing@3", "dataset `missing` not found"),
        ("golden@2", "version 2 of dataset `golden` not found"),
        ("golden@prod", "tag `prod` of dataset `golden` not found"),
    ];
    for (reference, message) in cases {
        let error = store.resolve(reference).expect_err(reference);
        assert!(matches!(error, StoreError::NotFound { .. }), "{reference}: {error:?}");
        assert_eq!(error.to_string(), message);
    }
    let error = store.resolve("golden@").expect_err("empty selector");
    assert!(error.to_string().contains("nothing follows '@'"), "{error}");
}

#[test]
fn diff_lists_added_removed_and_changed_fields() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    store
        .commit(
            "golden",
            commit_of(vec![
                Change::Add(example(Some("a"), "a1", json!({"severity": "p1", "source": "production"}))),
                add("b", "b1"),
                add("c", "c1"),
                add("unchanged", "u"),
            ]),
        )
        .expect("v1");
    store
        .commit(
            "golden",
            commit_of(vec![
                Change::Edit {
                    id: "a".into(),
                    example: example(None, "a2", json!({"severity": "p0", "source": "production"})),
                },
                Change::Delete { id: "b".into() },
                add("d", "d1"),
                Change::Edit { id: "c".into(), example: example(None, "c2", json!({})) },
            ]),
        )
        .expect("v2");
    store
        .commit("golden", commit_of(vec![Change::Edit { id: "c".into(), example: example(None, "c1", json!({})) }]))
        .expect("v3");

    let diff = store.diff("golden", 1, 3).expect("diff");
    assert_eq!(diff.added, ["d"]);
    assert_eq!(diff.removed, ["b"]);
    assert_eq!(
        diff.modified,
        [ModifiedExample {
            id: "a".into(),
            changed_fields: vec!["metadata.severity".into(), "outputs.reference".into()]
        }],
        "c was edited and edited back, so it is not modified"
    );
    let backwards = store.diff("golden", 3, 1).expect("diff");
    assert_eq!((backwards.added, backwards.removed), (vec!["b".to_owned()], vec!["d".to_owned()]));
    let diff = store.diff("golden", 0, 1).expect("diff");
    assert_eq!(diff.added.len(), 4);
    assert!(store.diff("golden", 2, 2).expect("diff").modified.is_empty());
    assert!(matches!(store.diff("golden", 1, 9), Err(StoreError::NotFound { .. })));
}

#[test]
fn lists_with_metadata_and_split_filters() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    store
        .commit(
            "golden",
            commit_of(vec![
                Change::Add(example(
                    Some("a"),
                    "x",
                    json!({"severity": "p0", "source": "production", "split": "test"}),
                )),
                Change::Add(example(
                    Some("b"),
                    "x",
                    json!({"severity": "p0", "source": "synthetic", "split": ["train"]}),
                )),
                Change::Add(example(Some("c"), "x", json!({"severity": "p1", "turns": 3, "split": ["train", "test"]}))),
                Change::Add(example(Some("d"), "x", json!({}))),
            ]),
        )
        .expect("v1");
    let list = |filter: ExampleFilter| -> (usize, Vec<String>) {
        let page = store.list_examples("golden", 1, filter).expect("lists");
        (page.total, page.examples.into_iter().map(|stored| stored.id).collect())
    };
    let metadata =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
    assert_eq!(list(ExampleFilter::default()), (4, vec!["a".into(), "b".into(), "c".into(), "d".into()]));
    assert_eq!(
        list(ExampleFilter { metadata: metadata(&[("severity", "p0")]), ..Default::default() }),
        (2, vec!["a".into(), "b".into()])
    );
    assert_eq!(
        list(ExampleFilter {
            metadata: metadata(&[("severity", "p0"), ("source", "synthetic")]),
            ..Default::default()
        }),
        (1, vec!["b".into()])
    );
    assert_eq!(
        list(ExampleFilter { metadata: metadata(&[("turns", "3")]), ..Default::default() }),
        (1, vec!["c".into()])
    );
    assert_eq!(
        list(ExampleFilter { split: Some("test".into()), ..Default::default() }),
        (2, vec!["a".into(), "c".into()])
    );
    assert_eq!(
        list(ExampleFilter { offset: 1, limit: Some(2), ..Default::default() }),
        (4, vec!["b".into(), "c".into()])
    );
    assert_eq!(list(ExampleFilter { offset: 10, ..Default::default() }), (4, vec![]));
}

#[test]
fn export_then_import_gives_the_same_digest() {
    let Fixture { store, .. } = fixture();
    golden(&store, "source");
    let jsonl = format!(
        "{}\n{}\n{}\n",
        TRIAGE.replace('\n', " "),
        json!({"inputs": {"messages": [{"role": "assistant", "content": [{"type": "text", "text": "parts"}],
               "tool_calls": [{"id": "c1", "function": {"name": "page", "arguments": "{\"z\": 1, \"a\": [1.5, -2]}"}}]}],
               "custom_input": {"b": 1, "a": 2}},
               "outputs": {"reference": {"steps": ["x"]}, "custom_output": true},
               "metadata": {"turns": 3, "ratio": 0.25, "split": ["train"]}}),
        json!({"id": "unicode-é", "inputs": {"messages": [{"role": "user", "content": "naïve \"quote\" \n newline"}]}}),
    );
    store.import("source", &jsonl, "tester", "import").expect("v1");
    store.commit("source", commit_of(vec![add("later", "x"), Change::Delete { id: "triage-1".into() }])).expect("v2");
    let source = store.version_info("source", 2).expect("v2");

    let export = store.export_jsonl("source", 2).expect("exports");
    assert_eq!(export.lines().count(), 3);
    for line in export.lines() {
        assert!(line.starts_with(r#"{"id":"#), "{line}");
    }
    golden(&store, "copy");
    let copy = store.import("copy", &export, "tester", "copy").expect("re-imports");
    assert_eq!(copy.digest, source.digest);
    assert_eq!(copy.example_count, 3);
    assert_eq!(store.export_jsonl("copy", 1).expect("exports"), export);
    // Re-importing the same export is a version with nothing changed.
    let again = store.import("copy", &export, "tester", "again").expect("imports");
    assert_eq!((again.version, again.added, again.modified, again.removed), (2, 0, 0, 0));
    assert_eq!(again.digest, source.digest);
}

#[test]
fn digest_changes_on_edit_and_is_restored_when_reverted() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    let original = store.commit("golden", commit_of(vec![add("a", "one"), add("b", "two")])).expect("v1");
    let edited = store
        .commit("golden", commit_of(vec![Change::Edit { id: "a".into(), example: example(None, "uno", json!({})) }]))
        .expect("v2");
    assert_ne!(edited.digest, original.digest);
    let reverted = store
        .commit(
            "golden",
            commit_of(vec![Change::Edit { id: "a".into(), example: example(Some("a"), "one", json!({})) }]),
        )
        .expect("v3");
    assert_eq!(reverted.digest, original.digest);
    assert_eq!(reverted.modified, 1);
    let deleted = store.commit("golden", commit_of(vec![Change::Delete { id: "b".into() }])).expect("v4");
    assert_ne!(deleted.digest, original.digest);
    let restored = store.commit("golden", commit_of(vec![add("b", "two")])).expect("v5");
    assert_eq!(restored.digest, original.digest);
    // An identical edit is a version that changes nothing.
    let same = store
        .commit("golden", commit_of(vec![Change::Edit { id: "a".into(), example: example(None, "one", json!({})) }]))
        .expect("v6");
    assert_eq!((same.modified, same.digest.as_str()), (0, original.digest.as_str()));
    assert_eq!(store.example("golden", 6, "a").expect("a").version_modified, 3);
}

#[test]
fn everything_survives_reopening() {
    let Fixture { store, directory } = fixture();
    golden(&store, "golden");
    store.import("golden", &TRIAGE.replace('\n', " "), "tester", "v1").expect("v1");
    store.commit("golden", commit_of(vec![add("a", "x")])).expect("v2");
    store.set_tag("golden", "prod", 1, "ops").expect("tag");
    store.set_tag("golden", "prod", 2, "ops").expect("move");
    let before = (
        store.list_datasets().expect("datasets"),
        store.history("golden").expect("history"),
        store.read_version("golden", 1).expect("v1"),
        store.read_version("golden", 2).expect("v2"),
        store.tags("golden").expect("tags"),
        store.tag_history("golden").expect("tag history"),
    );
    drop(store);

    let store = Store::open(directory.path()).expect("reopens");
    let after = (
        store.list_datasets().expect("datasets"),
        store.history("golden").expect("history"),
        store.read_version("golden", 1).expect("v1"),
        store.read_version("golden", 2).expect("v2"),
        store.tags("golden").expect("tags"),
        store.tag_history("golden").expect("tag history"),
    );
    assert_eq!(after, before);
    let info = store.commit("golden", commit_of(vec![add("b", "x")])).expect("commits after reopening");
    assert_eq!((info.version, info.example_count), (3, 3));
}

#[test]
fn concurrent_commits_get_distinct_consecutive_versions() {
    const THREADS: usize = 4;
    const COMMITS_PER_THREAD: usize = 15;
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    let versions: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = store.clone();
                scope.spawn(move || {
                    (0..COMMITS_PER_THREAD)
                        .map(|index| {
                            let change = add(&format!("t{thread}-{index:02}"), "x");
                            store.commit("golden", commit_of(vec![change])).expect("commits").version
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("worker finishes")).collect()
    });
    let total = (THREADS * COMMITS_PER_THREAD) as u64;
    let distinct: BTreeSet<u64> = versions.iter().copied().collect();
    assert_eq!(distinct, (1..=total).collect::<BTreeSet<u64>>());
    let latest = store.dataset("golden").expect("exists");
    assert_eq!((latest.latest_version, latest.example_count), (total, total));
    for info in store.history("golden").expect("history") {
        assert_eq!(info.example_count, info.version, "each version adds exactly one example");
    }
    assert_eq!(store.read_version("golden", total).expect("reads").len() as u64, total);
    assert_eq!(latest.digest, recomputed_digest(&store, "golden", total));
}

#[test]
fn commit_cost_does_not_depend_on_dataset_size() {
    let Fixture { store, .. } = fixture();
    let keys_written_by_one_commit = |name: &str, size: usize| -> (usize, usize) {
        golden(&store, name);
        let changes = (0..size).map(|index| add(&format!("e{index:05}"), "x")).collect();
        store.commit(name, commit_of(changes)).expect("bulk commit");
        let (examples_before, all_before) = (store.trees.examples.len(), key_count(&store));
        store.commit(name, commit_of(vec![add("one-more", "x")])).expect("small commit");
        store
            .commit(name, commit_of(vec![Change::Edit { id: "e00001".into(), example: example(None, "y", json!({})) }]))
            .expect("edit");
        (store.trees.examples.len() - examples_before, key_count(&store) - all_before)
    };
    let small = keys_written_by_one_commit("small", 100);
    let large = keys_written_by_one_commit("large", 20_000);
    assert_eq!(small, large);
    // An add writes one example entry, one head and one version record; an
    // edit one example entry and one version record (its head is rewritten).
    assert_eq!(large, (2, 5));
    assert_eq!(store.dataset("large").expect("exists").example_count, 20_001);
}

#[test]
fn corrupt_records_are_storage_errors_not_panics() {
    let Fixture { store, .. } = fixture();
    golden(&store, "golden");
    store.commit("golden", commit_of(vec![add("a", "x")])).expect("v1");
    store.trees.examples.insert(layout::example_key("golden", "a", 1), &b"\x01garbage"[..]).expect("overwrite");
    assert!(matches!(store.read_version("golden", 1), Err(StoreError::Storage(_))));
    assert!(matches!(store.export_jsonl("golden", 1), Err(StoreError::Storage(_))));
    store.trees.versions.insert(layout::version_key("golden", 1), &b"{"[..]).expect("overwrite");
    assert!(matches!(store.history("golden"), Err(StoreError::Storage(_))));
    assert!(matches!(store.commit("golden", commit_of(vec![add("b", "x")])), Err(StoreError::Storage(_))));
    store.trees.latest.insert("golden", &b"short"[..]).expect("overwrite");
    assert!(matches!(store.resolve("golden"), Err(StoreError::Storage(_))));
}

#[test]
fn refuses_a_store_written_in_another_layout() {
    let directory = tempfile::tempdir().expect("temporary directory");
    {
        let db = sled::open(directory.path()).expect("sled opens");
        db.insert(layout::LAYOUT_KEY, &b"99"[..]).expect("insert");
        db.flush().expect("flush");
    }
    let error = Store::open(directory.path()).expect_err("refused");
    assert!(matches!(error, StoreError::Storage(ref message) if message.contains("layout")), "{error:?}");
}

/// Inputs need an integer `context.clinic_id`; outputs a string `reference`.
fn triage_schema() -> DatasetSchema {
    DatasetSchema {
        inputs: Some(json!({
            "type": "object",
            "required": ["context"],
            "properties": {"context": {
                "type": "object",
                "required": ["clinic_id"],
                "properties": {"clinic_id": {"type": "integer"}}
            }}
        })),
        outputs: Some(
            json!({"type": "object", "required": ["reference"], "properties": {"reference": {"type": "string"}}}),
        ),
    }
}

fn with_schema(store: &Store, name: &str, schema: DatasetSchema) -> Result<Dataset, StoreError> {
    store.create_dataset(NewDataset {
        name: name.into(),
        description: String::new(),
        kind: DatasetKind::Golden,
        schema,
    })
}

/// A valid example with the given id, `context.clinic_id` and reference.
fn clinic_example(id: &str, clinic_id: serde_json::Value, reference: Option<&str>) -> Example {
    let mut value = json!({
        "id": id,
        "inputs": {"messages": [{"role": "user", "content": "Is the clinic open?"}], "context": {"clinic_id": clinic_id}},
        "outputs": {},
    });
    if let Some(reference) = reference {
        value["outputs"]["reference"] = json!(reference);
    }
    Example::from_json(&value.to_string()).expect("built-in validation passes")
}

#[test]
fn schema_violations_are_refused_in_commits() {
    let Fixture { store, .. } = fixture();
    let created = with_schema(&store, "triage", triage_schema()).expect("created");
    assert_eq!(created.schema, triage_schema());
    let keys_before = key_count(&store);

    // The issue's own example: clinic_id is a string.
    let triage = Example::from_json(TRIAGE).expect("valid without a schema");
    let errors = field_errors(store.commit("triage", commit_of(vec![Change::Add(triage)])).expect_err("refused"));
    assert_eq!(errors, [r#"inputs.context.clinic_id: "clinic_482" is not of type "integer""#]);

    // Outputs are checked too; with several changes every refusal is listed under its change.
    let changes = vec![
        Change::Add(clinic_example("ok", json!(482), Some("paging now"))),
        Change::Add(clinic_example("no-reference", json!(482), None)),
        Change::Add(clinic_example("both", json!("x"), None)),
    ];
    let errors = field_errors(store.commit("triage", commit_of(changes)).expect_err("refused"));
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("changes[1].outputs: ") && errors[0].contains("reference"), "{errors:?}");
    assert!(errors[1].starts_with("changes[2].inputs.context.clinic_id: "), "{errors:?}");
    assert!(errors[2].starts_with("changes[2].outputs: "), "{errors:?}");

    // Built-in errors and schema errors are reported together.
    let mut both = clinic_example("bad-severity", json!("x"), Some("ok"));
    both.metadata.insert("severity".into(), json!("p9"));
    let errors = field_errors(store.commit("triage", commit_of(vec![Change::Add(both)])).expect_err("refused"));
    assert!(errors.iter().any(|error| error.starts_with("metadata.severity:")), "{errors:?}");
    assert!(errors.iter().any(|error| error.starts_with("inputs.context.clinic_id:")), "{errors:?}");
    assert_eq!(key_count(&store), keys_before, "a refused commit leaves no trace");
    assert_eq!(store.dataset("triage").expect("exists").latest_version, 0);

    // Conforming examples commit; edits are checked as well.
    let v1 = store
        .commit("triage", commit_of(vec![Change::Add(clinic_example("a", json!(482), Some("paging now")))]))
        .expect("conforming example commits");
    assert_eq!((v1.version, v1.example_count), (1, 1));
    let edit = Change::Edit { id: "a".into(), example: clinic_example("a", json!("482"), Some("paging now")) };
    let errors = field_errors(store.commit("triage", commit_of(vec![edit])).expect_err("refused"));
    assert_eq!(errors, [r#"inputs.context.clinic_id: "482" is not of type "integer""#]);
    store.commit("triage", commit_of(vec![Change::Delete { id: "a".into() }])).expect("deletes need no schema");

    // A dataset without a schema takes the same example.
    golden(&store, "plain");
    store.commit("plain", commit_of(vec![Change::Add(Example::from_json(TRIAGE).expect("valid"))])).expect("commits");
}

#[test]
fn schema_violations_in_an_import_name_their_lines_and_write_nothing() {
    let Fixture { store, .. } = fixture();
    with_schema(&store, "triage", triage_schema()).expect("created");
    let keys_before = key_count(&store);
    let line = |example: Example| serde_json::to_string(&example).expect("encodes");
    let jsonl = [
        line(clinic_example("ok-1", json!(1), Some("fine"))),
        TRIAGE.replace('\n', " "),
        line(clinic_example("ok-3", json!(3), Some("fine"))),
        line(clinic_example("no-reference", json!(4), None)),
        r#"{"id": "bad-5", "inputs": {"messages": []}}"#.to_owned(),
    ]
    .join("\n");
    let errors = field_errors(store.import("triage", &jsonl, "tester", "bad").expect_err("refused"));
    assert!(
        errors.contains(&r#"line 2: inputs.context.clinic_id: "clinic_482" is not of type "integer""#.to_owned()),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error.starts_with("line 4: outputs: ") && error.contains("reference")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|error| error.starts_with("line 5: inputs.messages:")), "{errors:?}");
    assert!(!errors.iter().any(|error| error.starts_with("line 1:") || error.starts_with("line 3:")), "{errors:?}");
    assert_eq!(store.dataset("triage").expect("exists").latest_version, 0);
    assert_eq!(key_count(&store), keys_before, "a refused import leaves no trace");

    let good =
        [line(clinic_example("ok-1", json!(1), Some("fine"))), line(clinic_example("ok-2", json!(2), Some("x")))];
    let info = store.import("triage", &good.join("\n"), "tester", "good").expect("conforming lines import");
    assert_eq!((info.version, info.example_count), (1, 2));
}

#[test]
fn invalid_schemas_are_refused_at_creation() {
    let Fixture { store, .. } = fixture();
    let cases = [
        (DatasetSchema { inputs: Some(json!({"type": "integre"})), outputs: None }, "schema.inputs: "),
        (DatasetSchema { inputs: None, outputs: Some(json!(5)) }, "schema.outputs: "),
        (
            DatasetSchema { inputs: Some(json!({"properties": {"x": {"minimum": "one"}}})), outputs: None },
            "schema.inputs: ",
        ),
        // External references are never fetched, so they cannot compile.
        (
            DatasetSchema { inputs: Some(json!({"$ref": "https://example.com/inputs.json"})), outputs: None },
            "schema.inputs: ",
        ),
        (DatasetSchema { inputs: None, outputs: Some(json!({"$ref": "file:///etc/passwd"})) }, "schema.outputs: "),
        (DatasetSchema { inputs: Some(json!({"$ref": "#/$defs/missing"})), outputs: None }, "schema.inputs: "),
    ];
    for (schema, field) in cases {
        let errors = field_errors(with_schema(&store, "triage", schema.clone()).expect_err("refused"));
        assert_eq!(errors.len(), 1, "{schema:?}: {errors:?}");
        assert!(
            errors[0].starts_with(field) && errors[0].contains("not a valid JSON Schema"),
            "{schema:?}: {errors:?}"
        );
    }
    let huge = json!({"enum": vec!["x".repeat(1024); SCHEMA_BYTES_MAX / 1024]});
    let errors = field_errors(
        with_schema(&store, "triage", DatasetSchema { inputs: Some(huge), outputs: None }).expect_err("refused"),
    );
    assert_eq!(errors, [format!("schema.inputs: must be at most {SCHEMA_BYTES_MAX} bytes")]);
    assert!(matches!(store.dataset("triage"), Err(StoreError::NotFound { .. })), "a refused dataset is not created");

    // Booleans and an empty object are valid schemas; an internal $ref resolves.
    let accepted = DatasetSchema {
        inputs: Some(
            json!({"$defs": {"id": {"type": "integer"}}, "properties": {"context": {"properties": {"clinic_id": {"$ref": "#/$defs/id"}}}}}),
        ),
        outputs: Some(json!(true)),
    };
    with_schema(&store, "triage", accepted).expect("created");
    let errors = field_errors(
        store
            .commit("triage", commit_of(vec![Change::Add(clinic_example("a", json!("x"), None))]))
            .expect_err("refused"),
    );
    assert!(errors[0].starts_with("inputs.context.clinic_id: "), "{errors:?}");
    with_schema(&store, "open", DatasetSchema { inputs: Some(json!({})), outputs: None }).expect("created");
}

#[test]
fn schemas_survive_reopening_and_old_records_have_none() {
    let Fixture { store, directory } = fixture();
    with_schema(&store, "triage", triage_schema()).expect("created");
    golden(&store, "plain");
    drop(store);

    let store = Store::open(directory.path()).expect("reopens");
    assert_eq!(store.dataset("triage").expect("exists").schema, triage_schema());
    let listed = store.list_datasets().expect("lists");
    assert_eq!(
        listed.iter().map(|dataset| &dataset.schema).collect::<Vec<_>>(),
        [&DatasetSchema::default(), &triage_schema()]
    );
    let triage = Example::from_json(TRIAGE).expect("valid");
    let errors =
        field_errors(store.commit("triage", commit_of(vec![Change::Add(triage.clone())])).expect_err("refused"));
    assert!(errors[0].starts_with("inputs.context.clinic_id: "), "{errors:?}");

    // A record written before datasets had schemas reads as having none.
    let old_record =
        json!({"name": "plain", "description": "old", "kind": "golden", "created_at": "2025-01-01T00:00:00Z"});
    store.trees.datasets.insert("plain", old_record.to_string().as_bytes()).expect("overwrite");
    let plain = store.dataset("plain").expect("an old record reads");
    assert_eq!((plain.description.as_str(), plain.schema), ("old", DatasetSchema::default()));
    store.commit("plain", commit_of(vec![Change::Add(triage)])).expect("no schema, no extra check");
}
