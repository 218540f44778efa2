//! Mining production traces into annotation queues: a LangSmith filter over a
//! time window of one project, a deterministic random sample, and routing of
//! what is left into a queue, skipping traces already in the queue's dataset
//! (by `trace_id`) and traces the queue already has.
//!
//! Saved rules (`store::MiningRule`) run the same way, on demand or on their
//! schedule (`run_due_rules`, called by the server).

use crate::store::{MiningRule, Store, StoreError, TraceScan};
use crate::traces::Trace;
use crate::traces::filter::{Filter, FilterError, parse_rfc3339_ms};
use serde::Serialize;
use serde_json::json;
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Trace ids listed in a report (the counts cover all of them).
pub const REPORT_IDS_MAX: usize = 50;
/// The shortest schedule a rule may have.
pub const SCHEDULE_MS_MIN: i64 = 60_000;

/// The standard rules of the playbook, as templates: name, filter, sample rate.
pub const TEMPLATES: &[(&str, Option<&str>, f64, &str)] = &[
    (
        "negative-feedback",
        Some(r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#),
        1.0,
        "Users rated the answer below 3",
    ),
    ("errors", Some("eq(error, true)"), 1.0, "The agent failed"),
    ("latency-outliers", Some(r#"gt(latency, "5s")"#), 1.0, "Slower than 5 seconds"),
    (
        "low-judge-score",
        Some(r#"and(eq(feedback_key, "judge_score"), lt(feedback_score, 0.5))"#),
        1.0,
        "An LLM judge scored it below 0.5",
    ),
    ("random-sample", None, 0.01, "A random 1% of all traffic"),
];

/// One mining run's request.
#[derive(Debug, Clone)]
pub struct MineRequest<'a> {
    /// Names the run in reports and seeds the sample (`adhoc` for `assay mine`).
    pub rule: &'a str,
    pub project: &'a str,
    pub filter: Option<&'a Filter>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// In (0, 1].
    pub sample_rate: f64,
    pub queue: Option<&'a str>,
    /// Count only; queue nothing.
    pub dry_run: bool,
}

/// What a run found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MiningReport {
    pub rule: String,
    pub project: String,
    pub filter: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub queue: Option<String>,
    pub dry_run: bool,
    /// Traces in the window.
    pub scanned: u64,
    pub matched: u64,
    /// Matched traces the sample kept.
    pub sampled: u64,
    /// Sampled traces whose `trace_id` is already in the queue's dataset.
    pub skipped_in_dataset: u64,
    /// Sampled traces the queue already has.
    pub skipped_already_queued: u64,
    /// Newly queued (what would be, in a dry run).
    pub queued: u64,
    /// The first [`REPORT_IDS_MAX`] trace ids queued (or that would be).
    pub trace_ids: Vec<String>,
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum MiningError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("filter {0}")]
    Filter(#[from] FilterError),
    #[error("{0}")]
    Invalid(String),
}

/// Runs one mining pass.
pub fn mine(store: &Store, request: &MineRequest<'_>) -> Result<MiningReport, MiningError> {
    if !(request.sample_rate > 0.0 && request.sample_rate <= 1.0) {
        return Err(MiningError::Invalid(format!("the sample rate must be in (0, 1], not {}", request.sample_rate)));
    }
    store.trace_project(request.project)?;
    let in_dataset: HashSet<String> = match request.queue {
        Some(queue) => trace_ids_in_dataset(store, &store.queue(queue)?.dataset)?,
        None => HashSet::new(),
    };
    let scan = TraceScan {
        since_ms: request.since_ms,
        until_ms: request.until_ms,
        newest_first: false,
        summary_only: !request.filter.is_some_and(Filter::needs_body),
    };
    let threshold = (request.sample_rate * u64::MAX as f64) as u64;
    let mut report = MiningReport {
        rule: request.rule.to_owned(),
        project: request.project.to_owned(),
        filter: request.filter.map(|filter| filter.text().to_owned()),
        since: request.since_ms.map(crate::traces::format_rfc3339_ms),
        until: request.until_ms.map(crate::traces::format_rfc3339_ms),
        queue: request.queue.map(str::to_owned),
        dry_run: request.dry_run,
        scanned: 0,
        matched: 0,
        sampled: 0,
        skipped_in_dataset: 0,
        skipped_already_queued: 0,
        queued: 0,
        trace_ids: Vec::new(),
    };
    let mut keep: Vec<String> = Vec::new();
    let mut failure = None;
    store.scan_traces(request.project, &scan, |trace: Trace| {
        report.scanned += 1;
        if !request.filter.is_none_or(|filter| filter.matches(&trace)) {
            return ControlFlow::Continue(());
        }
        report.matched += 1;
        if request.sample_rate < 1.0 && sample_point(request.rule, &trace.id) > threshold {
            return ControlFlow::Continue(());
        }
        report.sampled += 1;
        if in_dataset.contains(&trace.id) {
            report.skipped_in_dataset += 1;
            return ControlFlow::Continue(());
        }
        if let Some(queue) = request.queue {
            match store.is_queued(queue, request.project, &trace.id) {
                Ok(true) => {
                    report.skipped_already_queued += 1;
                    return ControlFlow::Continue(());
                }
                Ok(false) => {}
                Err(error) => {
                    failure = Some(error);
                    return ControlFlow::Break(());
                }
            }
        }
        keep.push(trace.id);
        ControlFlow::Continue(())
    })?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    report.trace_ids = keep.iter().take(REPORT_IDS_MAX).cloned().collect();
    match (request.queue, request.dry_run) {
        (Some(queue), false) => {
            let added_by = format!("rule:{}", request.rule);
            for chunk in keep.chunks(crate::store::QUEUE_ITEMS_PER_ADD_MAX) {
                let traces: Vec<(String, String)> =
                    chunk.iter().map(|id| (request.project.to_owned(), id.clone())).collect();
                report.queued += store.add_to_queue(queue, &traces, &added_by)?.queued;
            }
        }
        _ => report.queued = keep.len() as u64,
    }
    Ok(report)
}

/// Runs a saved rule now, over its window back from `now_ms`, and records the run.
pub fn run_rule(store: &Store, rule: &MiningRule, now_ms: i64, dry_run: bool) -> Result<MiningReport, MiningError> {
    let filter = rule.filter.as_deref().map(Filter::parse).transpose()?;
    let window = duration_ms(&rule.window).ok_or_else(|| {
        MiningError::Invalid(format!("rule {}: window {:?} is not a duration", rule.name, rule.window))
    })?;
    let report = mine(
        store,
        &MineRequest {
            rule: &rule.name,
            project: &rule.project,
            filter: filter.as_ref(),
            since_ms: Some(now_ms.saturating_sub(window)),
            until_ms: None,
            sample_rate: rule.sample_rate,
            queue: rule.queue.as_deref(),
            dry_run,
        },
    )?;
    if !dry_run {
        store.record_rule_run(&rule.name, now_ms, json!(report))?;
    }
    Ok(report)
}

/// Runs every scheduled rule whose schedule has come round; returns their reports.
/// A failing rule is logged and does not stop the others.
pub fn run_due_rules(store: &Store, now_ms: i64) -> Result<Vec<MiningReport>, StoreError> {
    let mut reports = Vec::new();
    for rule in store.rules()? {
        let Some(every) = rule.schedule.as_deref().and_then(duration_ms) else { continue };
        if rule.last_run_ms.is_some_and(|last| now_ms - last < every) {
            continue;
        }
        match run_rule(store, &rule, now_ms, false) {
            Ok(report) => reports.push(report),
            Err(error) => tracing::warn!(rule = %rule.name, %error, "a scheduled mining rule failed"),
        }
    }
    Ok(reports)
}

/// Checks a rule before it is saved; the filter is normalised to its canonical text.
pub fn check_rule(store: &Store, rule: &mut MiningRule) -> Result<(), MiningError> {
    if let Some(text) = &rule.filter {
        rule.filter = Some(Filter::parse(text)?.text().to_owned());
    }
    if duration_ms(&rule.window).is_none() {
        return Err(MiningError::Invalid(format!("window {:?} is not a duration such as 7d or 24h", rule.window)));
    }
    if let Some(schedule) = &rule.schedule {
        match duration_ms(schedule) {
            Some(every) if every >= SCHEDULE_MS_MIN => {}
            _ => return Err(MiningError::Invalid(format!("schedule {schedule:?} must be a duration of at least 1m"))),
        }
    }
    if !(rule.sample_rate > 0.0 && rule.sample_rate <= 1.0) {
        return Err(MiningError::Invalid(format!("the sample rate must be in (0, 1], not {}", rule.sample_rate)));
    }
    if let Some(queue) = &rule.queue {
        store.queue(queue)?;
    }
    Ok(())
}

/// Milliseconds of a duration `N` + `s|m|h|d|w` (`7d`, `24h`, `90s`).
pub fn duration_ms(text: &str) -> Option<i64> {
    let unit_ms = match text.chars().last()? {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    let amount: i64 = text[..text.len() - 1].parse().ok()?;
    (amount >= 0).then(|| amount.saturating_mul(unit_ms))
}

/// An instant given as RFC 3339 or as a duration back from `now_ms`.
pub fn instant_ms(text: &str, now_ms: i64) -> Option<i64> {
    parse_rfc3339_ms(text).or_else(|| duration_ms(text).map(|back| now_ms.saturating_sub(back)))
}

/// Where a trace falls in [0, 2^64) for a rule's sample: FNV-1a of the rule
/// and trace id, so a rule samples the same traces every run.
fn sample_point(rule: &str, trace_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rule.bytes().chain([0]).chain(trace_id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits are weak; a final mix spreads them.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// The trace ids already in a dataset's latest version: each example's
/// `metadata.trace_id`, and its id (queue acceptances use the trace id).
fn trace_ids_in_dataset(store: &Store, dataset: &str) -> Result<HashSet<String>, StoreError> {
    let latest = store.dataset(dataset)?.latest_version;
    let mut ids = HashSet::new();
    for stored in store.read_version(dataset, latest)? {
        if let Some(trace_id) = stored.example.metadata_text("trace_id") {
            ids.insert(trace_id.to_owned());
        }
        ids.insert(stored.id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_instants() {
        assert_eq!(duration_ms("7d"), Some(7 * 86_400_000));
        assert_eq!(duration_ms("90s"), Some(90_000));
        assert_eq!(duration_ms("2w"), Some(14 * 86_400_000));
        for bad in ["", "d", "7", "-1d", "1.5h", "7x", "h7"] {
            assert_eq!(duration_ms(bad), None, "{bad}");
        }
        assert_eq!(instant_ms("1h", 10_000_000), Some(10_000_000 - 3_600_000));
        assert_eq!(instant_ms("1970-01-01T00:00:01Z", 5), Some(1_000));
    }

    #[test]
    fn the_sample_is_deterministic_and_near_its_rate() {
        let threshold = (0.1 * u64::MAX as f64) as u64;
        let kept = (0..20_000).filter(|index| sample_point("rule", &format!("trace-{index}")) <= threshold).count();
        assert!((1_700..=2_300).contains(&kept), "{kept} of 20,000 at 10%");
        assert_eq!(sample_point("rule", "a"), sample_point("rule", "a"));
        assert_ne!(sample_point("rule", "a"), sample_point("other", "a"));
    }

    #[test]
    fn scheduled_rules_run_when_due_and_sample_the_same_traces_every_time() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let traces: Vec<Trace> = (0..200)
            .map(|index| {
                serde_json::from_value(json!({
                    "id": format!("t{index}"), "project": "prod", "start_time": "2026-01-01T00:00:00Z",
                    "inputs": {"messages": [{"role": "user", "content": "hi"}]},
                    "error": if index % 4 == 0 { json!("boom") } else { json!(null) },
                }))
                .unwrap()
            })
            .collect();
        store.ingest_traces(None, traces).unwrap();
        let rule = |name: &str, filter: Option<&str>, sample_rate: f64, schedule: Option<&str>| MiningRule {
            name: name.into(),
            project: "prod".into(),
            filter: filter.map(str::to_owned),
            window: "100000d".into(),
            sample_rate,
            queue: None,
            schedule: schedule.map(str::to_owned),
            created_by: "test".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            last_run_ms: None,
            last_report: None,
        };
        let mut errors = rule("errors", Some("eq(error,true)"), 1.0, Some("1h"));
        check_rule(&store, &mut errors).unwrap();
        assert_eq!(errors.filter.as_deref(), Some("eq(error, true)"), "stored as canonical text");
        store.create_rule(&errors).unwrap();
        store.create_rule(&rule("manual", None, 1.0, None)).unwrap();
        let now = 1_800_000_000_000;
        let first = run_due_rules(&store, now).unwrap();
        assert_eq!(first.len(), 1, "only the scheduled rule");
        assert_eq!((first[0].scanned, first[0].matched), (200, 50));
        assert!(run_due_rules(&store, now + 30 * 60_000).unwrap().is_empty(), "not due yet");
        assert_eq!(run_due_rules(&store, now + 61 * 60_000).unwrap().len(), 1);

        let sample = |name: &str| run_rule(&store, &rule(name, None, 0.25, None), now, true).unwrap();
        let (once, twice) = (sample("sampled"), sample("sampled"));
        assert_eq!(once.trace_ids, twice.trace_ids, "a rule samples the same traces every run");
        assert!((25..=75).contains(&once.sampled), "{} of 200 at 25%", once.sampled);
        assert_eq!(once.queued, once.sampled, "a dry run reports what it would queue");
        let mut bad = rule("bad", Some("gt(latency"), 1.0, None);
        assert!(matches!(check_rule(&store, &mut bad), Err(MiningError::Filter(_))));
        let mut fast = rule("fast", None, 1.0, Some("10s"));
        assert!(matches!(check_rule(&store, &mut fast), Err(MiningError::Invalid(_))));
    }

    #[test]
    fn templates_parse() {
        for (name, filter, rate, _) in TEMPLATES {
            if let Some(filter) = filter {
                Filter::parse(filter).unwrap_or_else(|error| panic!("{name}: {error}"));
            }
            assert!(*rate > 0.0 && *rate <= 1.0);
        }
    }
}
