//! Tests of trace storage against a real sled database in a temporary directory.

use super::*;
use serde_json::json;

/// A store and its directory, which must outlive it: sled writes large
/// values to files of their own, created as they come.
struct Fixture {
    store: Store,
    _directory: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(directory.path()).expect("store opens");
    Fixture { store, _directory: directory }
}

const DAY_MS: i64 = 86_400_000;
/// 2025-06-01T00:00:00Z.
const JUNE_FIRST_MS: i64 = 1_748_736_000_000;

fn trace_at(project: &str, id: &str, start_ms: i64, extra: serde_json::Value) -> Trace {
    let mut value = json!({
        "id": id, "project": project,
        "start_time": format_rfc3339_ms(start_ms), "end_time": format_rfc3339_ms(start_ms + 1_500),
        "inputs": {"messages": [{"role": "user", "content": format!("question {id}")}]},
        "outputs": {"messages": [{"role": "assistant", "content": format!("answer {id}")}]}
    });
    for (key, field) in extra.as_object().expect("an object") {
        value[key] = field.clone();
    }
    serde_json::from_value(value).expect("a trace")
}

fn feedback(key: &str, score: f64) -> Feedback {
    Feedback { key: key.into(), score: Some(score), value: None, comment: None }
}

fn ids(store: &Store, project: &str, scan: TraceScan) -> Vec<String> {
    let mut seen = Vec::new();
    store
        .scan_traces(project, &scan, |trace| {
            seen.push(trace.id);
            ControlFlow::Continue(())
        })
        .expect("scan");
    seen
}

#[test]
fn ingest_is_idempotent_and_merges_new_feedback() {
    let Fixture { store, _directory: _kept } = fixture();
    let batch = vec![
        trace_at("triage", "a", JUNE_FIRST_MS, json!({})),
        trace_at("triage", "b", JUNE_FIRST_MS + 1_000, json!({"feedback": [{"key": "user_score", "score": 2}]})),
        trace_at("", "c", JUNE_FIRST_MS + 2_000, json!({})),
    ];
    let first = store.ingest_traces(Some("triage"), batch.clone()).expect("ingest");
    assert_eq!((first.accepted, first.duplicates, first.updated), (3, 0, 0));
    let stored = store.trace("triage", "a").expect("stored");
    assert_eq!(stored.latency_ms, Some(1_500), "latency is derived from the times");

    let again = store.ingest_traces(Some("triage"), batch).expect("ingest again");
    assert_eq!((again.accepted, again.duplicates, again.updated), (0, 3, 0));
    assert_eq!(store.trace_project("triage").expect("project").trace_count, 3);

    // New feedback on a known trace is merged; the rest of the re-sent trace is ignored.
    let resent = trace_at(
        "triage",
        "b",
        JUNE_FIRST_MS + 1_000,
        json!({"name": "changed", "feedback": [{"key": "user_score", "score": 2}, {"key": "judge", "score": 0.5}]}),
    );
    let merged = store.ingest_traces(None, vec![resent]).expect("merge");
    assert_eq!(merged.outcomes, vec![IngestOutcome::Updated { feedback_added: 1 }]);
    let b = store.trace("triage", "b").expect("b");
    assert_eq!(b.feedback, vec![feedback("user_score", 2.0), feedback("judge", 0.5)]);
    assert_eq!(b.name, None);

    // The same id twice in one batch is one trace.
    let twice =
        vec![trace_at("triage", "d", JUNE_FIRST_MS, json!({})), trace_at("triage", "d", JUNE_FIRST_MS, json!({}))];
    let report = store.ingest_traces(None, twice).expect("ingest");
    assert_eq!(report.outcomes, vec![IngestOutcome::Accepted, IngestOutcome::Duplicate]);
    assert_eq!(store.count_traces("triage", None, None).expect("count"), 4);
}

#[test]
fn refused_traces_are_reported_and_the_rest_stored() {
    let Fixture { store, _directory: _kept } = fixture();
    let mut bad_time = trace_at("triage", "bad-time", JUNE_FIRST_MS, json!({}));
    bad_time.start_time = "yesterday".into();
    let no_project = trace_at("", "orphan", JUNE_FIRST_MS, json!({}));
    let good = trace_at("triage", "good", JUNE_FIRST_MS, json!({}));
    let report = store.ingest_traces(None, vec![bad_time, good, no_project]).expect("ingest");
    assert_eq!(report.accepted, 1);
    let IngestOutcome::Rejected(errors) = &report.outcomes[0] else { panic!("{report:?}") };
    assert_eq!(errors[0].field, "start_time");
    let IngestOutcome::Rejected(errors) = &report.outcomes[2] else { panic!("{report:?}") };
    assert_eq!(errors[0].field, "project");
    assert!(matches!(store.trace("triage", "bad-time"), Err(StoreError::NotFound { .. })));
    assert_eq!(store.list_projects().expect("projects").len(), 1);

    let all_bad = store.ingest_traces(None, vec![trace_at("Bad!", "x", JUNE_FIRST_MS, json!({}))]).expect("ingest");
    assert_eq!(all_bad.accepted, 0);
    assert!(matches!(all_bad.outcomes[0], IngestOutcome::Rejected(_)));
}

#[test]
fn feedback_waits_for_its_trace() {
    let Fixture { store, _directory: _kept } = fixture();
    let early = store.add_feedback("support", "t1", vec![feedback("user_score", 1.0)]).expect("kept");
    assert_eq!(early, FeedbackOutcome::Pending { waiting: 1 });
    let again = store.add_feedback("support", "t1", vec![feedback("user_score", 1.0)]).expect("kept");
    assert_eq!(again, FeedbackOutcome::Pending { waiting: 1 });
    store.ingest_traces(None, vec![trace_at("support", "t1", JUNE_FIRST_MS, json!({}))]).expect("ingest");
    assert_eq!(store.trace("support", "t1").expect("trace").feedback, vec![feedback("user_score", 1.0)]);

    let late = store.add_feedback("support", "t1", vec![feedback("user_score", 1.0), feedback("judge", 0.0)]);
    assert_eq!(late.expect("attached"), FeedbackOutcome::Attached { added: 1 });
    let mut summaries = Vec::new();
    store
        .scan_traces("support", &TraceScan { summary_only: true, ..TraceScan::default() }, |trace| {
            summaries.push(trace);
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(summaries[0].feedback.len(), 2, "the summary follows the feedback");
    assert!(summaries[0].inputs.messages.is_empty(), "a summary has no conversation");

    let refused = store.add_feedback("support", "t1", vec![feedback("", 1.0)]);
    assert!(matches!(refused, Err(StoreError::Invalid(errors)) if errors[0].field == "feedback[0].key"));
    assert!(matches!(store.add_feedback("support", "t1", vec![]), Err(StoreError::Invalid(_))));
}

#[test]
fn scans_follow_time_order_and_windows() {
    let Fixture { store, _directory: _kept } = fixture();
    // Before the epoch, in random order, with another project whose name is a prefix.
    let starts = [3 * DAY_MS, -DAY_MS, 0, DAY_MS, 2 * DAY_MS];
    let batch: Vec<Trace> =
        starts.iter().map(|start| trace_at("agent", &format!("t{start}"), *start, json!({}))).collect();
    store.ingest_traces(None, batch).expect("ingest");
    store.ingest_traces(None, vec![trace_at("agent-2", "other", DAY_MS, json!({}))]).expect("ingest");
    let name = |start: i64| format!("t{start}");
    assert_eq!(ids(&store, "agent", TraceScan::default()), [-DAY_MS, 0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS].map(name));
    let window = TraceScan { since_ms: Some(0), until_ms: Some(2 * DAY_MS), newest_first: true, summary_only: false };
    assert_eq!(ids(&store, "agent", window), [DAY_MS, 0].map(name));
    assert_eq!(store.count_traces("agent", Some(0), Some(2 * DAY_MS)).expect("count"), 2);
    assert_eq!(store.count_traces("agent", None, None).expect("count"), 5);
    assert_eq!(ids(&store, "agent-2", TraceScan::default()), ["other"]);
    assert!(ids(&store, "nobody", TraceScan::default()).is_empty());

    let mut first_two = Vec::new();
    store
        .scan_traces("agent", &TraceScan { newest_first: true, ..TraceScan::default() }, |trace| {
            first_two.push(trace.id);
            if first_two.len() == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .expect("scan");
    assert_eq!(first_two, [3 * DAY_MS, 2 * DAY_MS].map(name));

    let project = store.trace_project("agent").expect("project");
    assert_eq!(project.oldest_start_time.as_deref(), Some("1969-12-31T00:00:00.000Z"));
    assert_eq!(project.newest_start_time.as_deref(), Some("1970-01-04T00:00:00.000Z"));
}

#[test]
fn retention_drops_old_traces_only() {
    let Fixture { store, _directory: _kept } = fixture();
    // Half past the hour: the cutoff falls inside an hour's segment.
    let now = JUNE_FIRST_MS + 100 * DAY_MS + 1_800_000;
    let cutoff = now - 7 * DAY_MS;
    let batch: Vec<Trace> = (0..12)
        .map(|age_days| trace_at("voice", &format!("age{age_days}"), now - age_days * DAY_MS - 1, json!({})))
        .chain([trace_at("voice", "edge-old", cutoff - 2, json!({})), trace_at("voice", "edge-new", cutoff, json!({}))])
        .collect();
    store.ingest_traces(None, batch).expect("ingest");
    store.ingest_traces(None, vec![trace_at("keep-all", "ancient", 0, json!({}))]).expect("ingest");
    assert!(matches!(store.set_retention("voice", Some(0)), Err(StoreError::Invalid(_))));
    assert_eq!(store.set_retention("voice", Some(7)).expect("set").retention_days, Some(7));
    store.add_feedback("voice", "never-comes", vec![feedback("user_score", 1.0)]).expect("pending");
    store.keep_pending_spans(vec![("abc".into(), b"spans".to_vec())], vec![]).expect("kept");
    assert_eq!(store.pending_spans("abc").expect("read"), Some(b"spans".to_vec()));

    let report = store.apply_retention(now).expect("retention");
    assert_eq!(report.traces, 6, "ages 7 to 11 days and edge-old are past a 7-day retention");
    let kept = ids(&store, "voice", TraceScan::default());
    let mut expected = vec!["edge-new".to_owned()];
    expected.extend((0..7).rev().map(|age| format!("age{age}")));
    assert_eq!(kept, expected);
    assert_eq!(store.trace_project("voice").expect("project").trace_count, 8);
    assert!(matches!(store.trace("voice", "edge-old"), Err(StoreError::NotFound { .. })));
    assert_eq!(store.trace("voice", "edge-new").expect("kept").id, "edge-new");
    assert!(matches!(store.trace("voice", "age8"), Err(StoreError::NotFound { .. })));
    assert_eq!(store.count_traces("keep-all", None, None).expect("count"), 1, "no retention: kept");
    // Feedback and spans that waited are not yet old by the wall clock here.
    assert_eq!((report.pending_feedback, report.pending_spans), (0, 0));

    // A re-sent expired trace is stored again (its index went with it).
    let back = store.ingest_traces(None, vec![trace_at("voice", "age8", now - 8 * DAY_MS, json!({}))]).expect("ingest");
    assert_eq!(back.accepted, 1);

    let far_future = crate::store::now_ms() + 30 * DAY_MS;
    let report = store.apply_retention(far_future).expect("retention");
    assert_eq!((report.pending_feedback, report.pending_spans), (1, 1));
    assert_eq!(store.pending_spans("abc").expect("read"), None);
    assert_eq!(store.trace_project("voice").expect("project").trace_count, 0);
    // Body blocks go with their last trace; the kept project's block stays.
    assert_eq!((store.trees.trace_bodies.len(), store.trees.trace_body_refs.len()), (1, 1));
    assert_eq!(store.trace("keep-all", "ancient").expect("kept").inputs.messages[0].content, "question ancient");
}

#[test]
fn bodies_share_blocks_and_read_back_whole() {
    let Fixture { store, _directory: _kept } = fixture();
    let large = "x".repeat(400 << 10);
    let batch: Vec<Trace> = (0..5)
        .map(|index| {
            let mut trace = trace_at("big", &format!("big-{index}"), JUNE_FIRST_MS + index, json!({}));
            trace.outputs.messages[0].content = format!("{index}{large}");
            trace
        })
        .chain((0..20).map(|index| trace_at("small", &format!("small-{index}"), JUNE_FIRST_MS + index, json!({}))))
        .collect();
    store.ingest_traces(None, batch).expect("ingest");
    // Two 400 KiB bodies fill a block: 5 large traces and 20 small ones need 3 blocks.
    assert_eq!(store.trees.trace_bodies.len(), 3);
    for index in 0..5 {
        let whole = store.trace("big", &format!("big-{index}")).expect("read");
        assert!(whole.outputs.messages[0].content.starts_with(&index.to_string()));
        assert_eq!(whole.outputs.messages[0].content.len(), large.len() + 1);
    }
    let mut whole = Vec::new();
    store
        .scan_traces("small", &TraceScan::default(), |trace| {
            whole.push(trace.outputs.messages[0].content.clone());
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(whole, (0..20).map(|index| format!("answer small-{index}")).collect::<Vec<_>>());
    // A body never holds feedback: added feedback shows in whole reads all the same.
    store.add_feedback("small", "small-3", vec![feedback("user_score", 4.0)]).expect("feedback");
    assert_eq!(store.trace("small", "small-3").expect("read").feedback, vec![feedback("user_score", 4.0)]);
}

#[test]
fn acknowledged_traces_survive_reopening() {
    let directory = tempfile::tempdir().expect("temporary directory");
    {
        let store = Store::open(directory.path()).expect("store opens");
        store.ingest_traces(None, vec![trace_at("triage", "kept", JUNE_FIRST_MS, json!({}))]).expect("ingest");
        store.set_retention("triage", Some(30)).expect("retention");
    }
    let store = Store::open(directory.path()).expect("store reopens");
    assert_eq!(store.trace("triage", "kept").expect("trace").inputs.messages[0].content, "question kept");
    assert_eq!(store.trace_project("triage").expect("project").retention_days, Some(30));
}

#[test]
fn time_keys_sort_like_times() {
    let times = [i64::MIN, -DAY_MS, -1, 0, 1, JUNE_FIRST_MS, i64::MAX];
    for pair in times.windows(2) {
        assert!(encode_time(pair[0]) < encode_time(pair[1]), "{pair:?}");
    }
    for time in times {
        assert_eq!(decode_time(&encode_time(time)), time);
    }
}

#[test]
fn small_ingests_are_compacted_and_stay_readable() {
    let Fixture { store, _directory: _kept } = fixture();
    // Thirty one-trace calls over two hours, out of order, as an OTLP exporter sends them.
    for index in (0..30).rev() {
        let start = JUNE_FIRST_MS + index * 240_000;
        store.ingest_traces(None, vec![trace_at("otel", &format!("t{index:02}"), start, json!({}))]).expect("ingest");
    }
    assert_eq!(store.trees.traces.len(), 30, "one segment per call");
    let before = ids(&store, "otel", TraceScan::default());
    assert_eq!(before, (0..30).map(|index| format!("t{index:02}")).collect::<Vec<_>>());

    let report = store.compact_traces().expect("compaction");
    assert_eq!((report.segments_merged, report.segments_written), (30, 2));
    assert_eq!(store.trees.traces.len(), 2, "one segment per hour");
    assert_eq!(ids(&store, "otel", TraceScan::default()), before);
    assert_eq!(store.compact_traces().expect("again"), CompactionReport::default());

    // Lookups, feedback and windows work on merged segments.
    store.add_feedback("otel", "t07", vec![feedback("user_score", 1.0)]).expect("feedback");
    assert_eq!(store.trace("otel", "t07").expect("read").feedback, vec![feedback("user_score", 1.0)]);
    let window = TraceScan {
        since_ms: Some(JUNE_FIRST_MS + 10 * 240_000 + 1),
        until_ms: Some(JUNE_FIRST_MS + 16 * 240_000),
        newest_first: true,
        summary_only: true,
    };
    assert_eq!(ids(&store, "otel", window), ["t15", "t14", "t13", "t12", "t11"]);
    assert_eq!(store.count_traces("otel", window.since_ms, window.until_ms).expect("count"), 5);
    let project = store.trace_project("otel").expect("project");
    assert_eq!(project.oldest_start_time.as_deref(), Some("2025-06-01T00:00:00.000Z"));
    assert_eq!(project.newest_start_time.as_deref(), Some("2025-06-01T01:56:00.000Z"));
}
