//! Production traces: idempotent batch ingest, feedback (also before its
//! trace), time-ordered scans, projects with counts, retention and
//! compaction.
//!
//! # Layout
//!
//! Built around two measured costs of sled: every entry written or visited
//! costs a few microseconds whatever its size (about as much as decoding a
//! trace's record), while large values move at hundreds of MB/s. So traces
//! are stored many to a sled value:
//!
//! - `traces`: `project \0 hour \0 segment id` → a **segment**: the compact
//!   records (`traces/record.rs`) of traces of that project starting in
//!   that hour, in (start, id) order. A record is the trace without its
//!   conversation — all a filter on errors, latency, tokens, tags, metadata
//!   or feedback reads — plus where its body is. `hour` is the bucket's
//!   start in milliseconds as a big-endian i64 with the sign bit flipped, so
//!   sled's order is time order. A scan visits a few segments per hour
//!   and sorts the records of each hour.
//! - `trace_bodies`: block id → the full JSON bodies (with `latency_ms`
//!   derived, without feedback) of traces ingested together, concatenated,
//!   about 1 MiB a block; `trace_body_refs` counts the traces still pointing
//!   into each block, and the block goes with its last trace.
//! - `trace_ids`: `project \0 id` → the trace's hour: idempotency, and
//!   lookups by id (which search that hour's segments).
//! - `trace_projects`: `project` → trace count (kept in step inside every
//!   ingest and retention transaction) and retention.
//!
//! An ingest call writes one id entry per trace, one segment per hour it
//! touches and one block per MiB of bodies. Small calls make small
//! segments; [`Store::compact_traces`], run by the server with retention,
//! merges them. Project names never contain a zero byte and hours are fixed
//! width, so every prefix is unambiguous.
//!
//! # Ingest
//!
//! Idempotent by (project, id): the first trace stored under an id stays;
//! a trace sent again is a `duplicate` and changes nothing, except that
//! feedback it carries which the stored trace lacks is added (identical
//! entries are kept once), which reports it `updated`. Each trace is
//! validated on its own and a refused one is reported with its fields;
//! the new traces are written in one sled transaction and flushed once per
//! call, so an acknowledged batch survives `kill -9` and a failed one leaves
//! nothing behind. (Feedback merged from re-sent traces, a rare case, is
//! applied after that transaction, one trace at a time, before the call
//! returns.) Feedback for a trace not yet seen waits in `pending_feedback`
//! and is attached when the trace arrives.

mod record;

use super::{Store, StoreError, clock, from_transaction, layout};
use crate::model::FieldError;
use crate::traces::{FEEDBACK_PER_TRACE_MAX, Feedback, Trace, format_rfc3339_ms, project_name_problem};
use record::{BodyPointer, Entry};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

/// Largest stored trace, as JSON, in bytes.
pub const TRACE_BYTES_MAX: usize = 4 << 20;
/// Longest retention a project may have, in days (ten years).
pub const RETENTION_DAYS_MAX: u32 = 3_650;
/// How long feedback waits for its trace before retention drops it, in seconds.
pub const PENDING_FEEDBACK_SECONDS: i64 = 7 * 86_400;
/// How long spans wait for their root span before retention drops them, in seconds.
pub const PENDING_SPANS_SECONDS: i64 = 3_600;
/// The time span of one bucket of segments, in milliseconds.
const BUCKET_MS: i64 = 3_600_000;
/// Most traces in one segment.
const SEGMENT_TRACES_MAX: usize = 4_096;
/// Segments with fewer traces are merged by compaction.
const SEGMENT_TRACES_SMALL: usize = 512;
/// A block of bodies is closed once it holds this many bytes.
const BLOCK_BYTES_MAX: usize = 1 << 20;
/// Blocks a whole-trace scan keeps at hand: consecutive traces mostly share one.
const SCAN_BLOCKS_CACHED: usize = 4;
/// Attempts of a feedback update that races a compaction or retention run.
const FEEDBACK_ATTEMPTS_MAX: usize = 16;
const TIME_BYTES: usize = 8;
const SEPARATOR: u8 = 0;

/// What happened to each trace of an ingest batch, in input order, with totals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestReport {
    /// Traces stored for the first time.
    pub accepted: usize,
    /// Traces already stored, unchanged.
    pub duplicates: usize,
    /// Traces already stored that gained feedback.
    pub updated: usize,
    pub outcomes: Vec<IngestOutcome>,
}

/// The fate of one trace of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    Accepted,
    Duplicate,
    /// Already stored; this many new feedback entries were added.
    Updated {
        feedback_added: usize,
    },
    /// Refused; nothing of it was stored.
    Rejected(Vec<FieldError>),
}

/// Where feedback went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum FeedbackOutcome {
    /// The trace exists; `added` entries were new to it.
    Attached { added: usize },
    /// The trace has not arrived; `waiting` entries wait for it.
    Pending { waiting: usize },
}

/// A project of traces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceProject {
    pub name: String,
    pub trace_count: u64,
    /// Traces older than this many days are dropped; `None` keeps them all.
    pub retention_days: Option<u32>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Start times of its oldest and newest traces, RFC 3339 UTC.
    pub oldest_start_time: Option<String>,
    pub newest_start_time: Option<String>,
}

/// Which traces of a project a scan visits, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceScan {
    /// Traces starting at or after this instant (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// Traces starting before this instant.
    pub until_ms: Option<i64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Visit traces without their conversation (`inputs.messages` and
    /// `outputs` empty), from their records alone: several times faster.
    pub summary_only: bool,
}

/// What one retention run removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RetentionReport {
    pub traces: u64,
    pub pending_feedback: u64,
    pub pending_spans: u64,
}

/// What one compaction run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CompactionReport {
    /// Segments merged away.
    pub segments_merged: u64,
    /// Segments written in their place.
    pub segments_written: u64,
}

/// The stored record of a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProjectRecord {
    trace_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention_days: Option<u32>,
    created_at: String,
}

/// Feedback waiting for its trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingFeedback {
    /// When the newest entry arrived, milliseconds since the epoch.
    received_ms: i64,
    feedback: Vec<Feedback>,
}

/// A validated trace with its keys and body, ready for the transaction.
struct PreparedTrace {
    index: usize,
    /// With its feedback, which the body leaves out.
    trace: Trace,
    start_ms: i64,
    id_key: Vec<u8>,
    body: Vec<u8>,
}

/// A block of bodies being filled inside an ingest transaction.
struct Block {
    id: u64,
    bytes: Vec<u8>,
    traces: u32,
}

/// A record placed inside an ingest transaction, waiting for its segment.
struct Placed<'a> {
    id: &'a str,
    start_ms: i64,
    record: Vec<u8>,
}

/// Where a stored trace's record is.
struct Located {
    segment_key: sled::IVec,
    segment: sled::IVec,
}

impl Store {
    /// Stores a batch of traces: see the module documentation. A trace with
    /// no project takes `project_default`. Refused traces are reported in
    /// `outcomes`, never as an error; an error means no new trace was stored.
    pub fn ingest_traces(&self, project_default: Option<&str>, traces: Vec<Trace>) -> Result<IngestReport, StoreError> {
        let mut outcomes: Vec<IngestOutcome> = Vec::with_capacity(traces.len());
        let mut prepared = Vec::with_capacity(traces.len());
        for (index, mut trace) in traces.into_iter().enumerate() {
            if trace.project.is_empty()
                && let Some(project) = project_default
            {
                trace.project = project.to_owned();
            }
            match prepare(index, trace) {
                Ok(ready) => {
                    prepared.push(ready);
                    outcomes.push(IngestOutcome::Accepted);
                }
                Err(errors) => outcomes.push(IngestOutcome::Rejected(errors)),
            }
        }
        if prepared.is_empty() {
            return Ok(IngestReport { outcomes, ..IngestReport::default() });
        }
        let created_at = clock::now_rfc3339();
        let trees = &self.trees;
        // Per prepared trace: `Some(outcome)`, or `None` when it is stored
        // already and carries feedback to merge after the transaction.
        let written: Vec<Option<IngestOutcome>> = (
            &trees.traces,
            &trees.trace_bodies,
            &trees.trace_body_refs,
            &trees.trace_ids,
            &trees.pending_feedback,
            &trees.trace_projects,
        )
            .transaction(|(segments, bodies, body_refs, ids, pending, projects)| {
                let mut results = Vec::with_capacity(prepared.len());
                let mut added_per_project: HashMap<&str, u64> = HashMap::new();
                let mut buckets: BTreeMap<(&str, i64), Vec<Placed>> = BTreeMap::new();
                let mut blocks: Vec<Block> = Vec::new();
                for ready in &prepared {
                    if ids.get(&ready.id_key)?.is_some() {
                        results.push(if ready.trace.feedback.is_empty() {
                            Some(IngestOutcome::Duplicate)
                        } else {
                            None
                        });
                        continue;
                    }
                    let mut feedback = ready.trace.feedback.clone();
                    // A read first: a removal is a write even when nothing waits.
                    if let Some(bytes) = pending.get(ready.id_key.as_slice())? {
                        pending.remove(ready.id_key.as_slice())?;
                        let waiting: PendingFeedback = layout::decode_json(&bytes, "pending feedback")?;
                        for entry in waiting.feedback {
                            if !feedback.contains(&entry) {
                                feedback.push(entry);
                            }
                        }
                        feedback.truncate(FEEDBACK_PER_TRACE_MAX);
                    }
                    if blocks.last().is_none_or(|block| {
                        !block.bytes.is_empty() && block.bytes.len() + ready.body.len() > BLOCK_BYTES_MAX
                    }) {
                        let capacity = BLOCK_BYTES_MAX.max(ready.body.len());
                        blocks.push(Block {
                            id: bodies.generate_id()?,
                            bytes: Vec::with_capacity(capacity),
                            traces: 0,
                        });
                    }
                    let Some(block) = blocks.last_mut() else {
                        return Err(StoreError::Storage("no block for a trace body".into()).into());
                    };
                    let pointer = BodyPointer {
                        block: block.id,
                        offset: to_u32(block.bytes.len())?,
                        length: to_u32(ready.body.len())?,
                    };
                    block.bytes.extend_from_slice(&ready.body);
                    block.traces += 1;
                    let bucket = bucket_of(ready.start_ms);
                    buckets.entry((ready.trace.project.as_str(), bucket)).or_default().push(Placed {
                        id: &ready.trace.id,
                        start_ms: ready.start_ms,
                        record: record::encode(pointer, &ready.trace, &feedback),
                    });
                    ids.insert(ready.id_key.as_slice(), &encode_time(bucket)[..])?;
                    *added_per_project.entry(ready.trace.project.as_str()).or_default() += 1;
                    results.push(Some(IngestOutcome::Accepted));
                }
                for ((project, bucket), mut placed) in buckets {
                    placed.sort_by(|left, right| (left.start_ms, left.id).cmp(&(right.start_ms, right.id)));
                    for chunk in placed.chunks(SEGMENT_TRACES_MAX) {
                        let entries: Vec<Entry> = chunk
                            .iter()
                            .map(|placed| Entry { id: placed.id, start_ms: placed.start_ms, record: &placed.record })
                            .collect();
                        let key = segment_key(project, bucket, segments.generate_id()?);
                        segments.insert(key, record::encode_segment(&entries))?;
                    }
                }
                for block in &blocks {
                    bodies.insert(&block.id.to_be_bytes()[..], block.bytes.as_slice())?;
                    body_refs.insert(&block.id.to_be_bytes()[..], &block.traces.to_be_bytes()[..])?;
                }
                for (project, added) in &added_per_project {
                    let mut record = match projects.get(project.as_bytes())? {
                        Some(bytes) => layout::decode_json::<ProjectRecord>(&bytes, "project record")?,
                        None => ProjectRecord { trace_count: 0, retention_days: None, created_at: created_at.clone() },
                    };
                    record.trace_count += added;
                    projects.insert(project.as_bytes(), layout::encode_json(&record, "project record")?)?;
                }
                Ok(results)
            })
            .map_err(from_transaction)?;
        self.flush()?;
        for (ready, outcome) in prepared.iter().zip(written) {
            outcomes[ready.index] = match outcome {
                Some(outcome) => outcome,
                None => match self.merge_feedback(&ready.trace.project, &ready.trace.id, &ready.trace.feedback)? {
                    Some(0) => IngestOutcome::Duplicate,
                    Some(feedback_added) => IngestOutcome::Updated { feedback_added },
                    None => IngestOutcome::Rejected(vec![too_much_feedback()]),
                },
            };
        }
        let mut report = IngestReport::default();
        for outcome in &outcomes {
            match outcome {
                IngestOutcome::Accepted => report.accepted += 1,
                IngestOutcome::Duplicate => report.duplicates += 1,
                IngestOutcome::Updated { .. } => report.updated += 1,
                IngestOutcome::Rejected(_) => {}
            }
        }
        report.outcomes = outcomes;
        Ok(report)
    }

    /// Adds feedback to a trace, or keeps it until the trace arrives (for at
    /// most [`PENDING_FEEDBACK_SECONDS`]). Entries the trace already carries
    /// are not added twice.
    pub fn add_feedback(
        &self,
        project: &str,
        trace_id: &str,
        feedback: Vec<Feedback>,
    ) -> Result<FeedbackOutcome, StoreError> {
        let mut errors = Vec::new();
        if let Some(reason) = project_name_problem(project) {
            errors.push(FieldError { field: "project".into(), reason });
        }
        if let Some(reason) = trace_id_problem(trace_id) {
            errors.push(FieldError { field: "id".into(), reason });
        }
        if feedback.is_empty() {
            errors.push(FieldError { field: "feedback".into(), reason: "must hold at least one entry".into() });
        } else if feedback.len() > FEEDBACK_PER_TRACE_MAX {
            errors.push(too_much_feedback());
        }
        for (index, entry) in feedback.iter().enumerate() {
            if let Err(problem) = entry.validate() {
                errors
                    .push(FieldError { field: format!("feedback[{index}].{}", problem.field), reason: problem.reason });
            }
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        let id_key = id_key(project, trace_id);
        for _ in 0..FEEDBACK_ATTEMPTS_MAX {
            if self.trees.trace_ids.contains_key(&id_key)? {
                return match self.merge_feedback(project, trace_id, &feedback)? {
                    Some(added) => Ok(FeedbackOutcome::Attached { added }),
                    None => Err(StoreError::Invalid(vec![too_much_feedback()])),
                };
            }
            let now = super::now_ms();
            let outcome = (&self.trees.trace_ids, &self.trees.pending_feedback)
                .transaction(|(ids, pending)| {
                    if ids.get(&id_key)?.is_some() {
                        // The trace arrived meanwhile: attach instead.
                        return Ok(None);
                    }
                    let mut waiting = match pending.get(&id_key)? {
                        Some(bytes) => layout::decode_json::<PendingFeedback>(&bytes, "pending feedback")?,
                        None => PendingFeedback { received_ms: now, feedback: Vec::new() },
                    };
                    for entry in &feedback {
                        if !waiting.feedback.contains(entry) {
                            waiting.feedback.push(entry.clone());
                        }
                    }
                    if waiting.feedback.len() > FEEDBACK_PER_TRACE_MAX {
                        return Err(StoreError::Invalid(vec![too_much_feedback()]).into());
                    }
                    waiting.received_ms = now;
                    pending.insert(id_key.as_slice(), layout::encode_json(&waiting, "pending feedback")?)?;
                    Ok(Some(FeedbackOutcome::Pending { waiting: waiting.feedback.len() }))
                })
                .map_err(from_transaction)?;
            if let Some(outcome) = outcome {
                self.flush()?;
                return Ok(outcome);
            }
        }
        Err(busy())
    }

    /// One trace, whole.
    pub fn trace(&self, project: &str, trace_id: &str) -> Result<Trace, StoreError> {
        let not_found = || StoreError::NotFound { what: format!("trace `{trace_id}` in project `{project}`") };
        if project_name_problem(project).is_some() || trace_id_problem(trace_id).is_some() {
            return Err(not_found());
        }
        let Some(located) = self.locate(project, trace_id)? else {
            return Err(not_found());
        };
        let entry = record::decode_segment(&located.segment)?
            .into_iter()
            .find(|entry| entry.id == trace_id)
            .ok_or_else(|| indexed_but_missing(project, trace_id))?;
        let (pointer, summary) = record::decode(project, trace_id, entry.record)?;
        self.whole_trace(pointer, summary, &mut BlockCache::default())
    }

    /// Calls `visit` with each trace of `project` that starts in the scan's
    /// window, in (start, id) order, until it returns `Break`. An unknown
    /// project has no traces.
    pub fn scan_traces(
        &self,
        project: &str,
        scan: &TraceScan,
        mut visit: impl FnMut(Trace) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if project_name_problem(project).is_some() {
            return Ok(());
        }
        let mut blocks = BlockCache::default();
        let mut flow = ControlFlow::Continue(());
        self.visit_buckets(project, scan.since_ms, scan.until_ms, scan.newest_first, |entries| {
            for entry in entries {
                let (pointer, summary) = record::decode(project, entry.id, entry.record)?;
                let trace = if scan.summary_only {
                    summary
                } else {
                    match self.whole_trace(pointer, summary, &mut blocks) {
                        Ok(trace) => trace,
                        // Retention removed it (and its block) after its segment was read.
                        Err(StoreError::Storage(_))
                            if !self.trees.trace_ids.contains_key(id_key(project, entry.id))? =>
                        {
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                };
                flow = visit(trace);
                if flow.is_break() {
                    break;
                }
            }
            Ok(flow)
        })
    }

    /// How many traces of `project` start in `[since_ms, until_ms)`.
    pub fn count_traces(&self, project: &str, since_ms: Option<i64>, until_ms: Option<i64>) -> Result<u64, StoreError> {
        if project_name_problem(project).is_some() {
            return Ok(0);
        }
        if since_ms.is_none() && until_ms.is_none() {
            return Ok(self.project_record(project)?.map_or(0, |record| record.trace_count));
        }
        let mut count = 0;
        self.visit_buckets(project, since_ms, until_ms, false, |entries| {
            count += entries.len() as u64;
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(count)
    }

    /// Every project that has (or had) traces or a retention, by name.
    pub fn list_projects(&self) -> Result<Vec<TraceProject>, StoreError> {
        let mut projects = Vec::new();
        for entry in self.trees.trace_projects.iter() {
            let (key, value) = entry?;
            let name = std::str::from_utf8(&key)
                .map_err(|_| StoreError::Storage(format!("corrupt project key {}", hex::encode(&key))))?;
            let record: ProjectRecord = layout::decode_json(&value, "project record")?;
            projects.push(self.describe_project(name, record)?);
        }
        Ok(projects)
    }

    /// One project.
    pub fn trace_project(&self, project: &str) -> Result<TraceProject, StoreError> {
        match self.project_record(project)? {
            Some(record) => self.describe_project(project, record),
            None => Err(StoreError::NotFound { what: format!("project `{project}`") }),
        }
    }

    /// Sets how long a project keeps its traces (`None`: forever). A project
    /// that has no traces yet is created.
    pub fn set_retention(&self, project: &str, days: Option<u32>) -> Result<TraceProject, StoreError> {
        let mut errors = Vec::new();
        if let Some(reason) = project_name_problem(project) {
            errors.push(FieldError { field: "project".into(), reason });
        }
        if let Some(days) = days
            && !(1..=RETENTION_DAYS_MAX).contains(&days)
        {
            errors.push(FieldError { field: "days".into(), reason: format!("must be 1 to {RETENTION_DAYS_MAX}") });
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        let created_at = clock::now_rfc3339();
        let record = self
            .trees
            .trace_projects
            .transaction(|projects| {
                let mut record = match projects.get(project.as_bytes())? {
                    Some(bytes) => layout::decode_json::<ProjectRecord>(&bytes, "project record")?,
                    None => ProjectRecord { trace_count: 0, retention_days: None, created_at: created_at.clone() },
                };
                record.retention_days = days;
                projects.insert(project.as_bytes(), layout::encode_json(&record, "project record")?)?;
                Ok(record)
            })
            .map_err(from_transaction)?;
        self.flush()?;
        self.describe_project(project, record)
    }

    /// Drops every trace older than its project's retention (by start
    /// time, relative to `now_ms`), feedback that waited longer than
    /// [`PENDING_FEEDBACK_SECONDS`] and spans that waited longer than
    /// [`PENDING_SPANS_SECONDS`]. Segments are rewritten (or removed) one
    /// transaction each, which also removes the id index entries, releases
    /// body blocks no trace points into any more, and keeps the count.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        for project in self.list_projects()? {
            let Some(days) = project.retention_days else { continue };
            let cutoff = now_ms.saturating_sub(i64::from(days) * 86_400_000);
            report.traces += self.remove_traces_before(&project.name, cutoff)?;
        }
        let feedback_cutoff = now_ms.saturating_sub(PENDING_FEEDBACK_SECONDS * 1_000);
        let mut expired = Vec::new();
        for entry in self.trees.pending_feedback.iter() {
            let (key, value) = entry?;
            let waiting: PendingFeedback = layout::decode_json(&value, "pending feedback")?;
            if waiting.received_ms < feedback_cutoff {
                expired.push(key);
            }
        }
        report.pending_feedback = remove_keys(&self.trees.pending_feedback, expired)?;
        let spans_cutoff = now_ms.saturating_sub(PENDING_SPANS_SECONDS * 1_000);
        let mut expired = Vec::new();
        for entry in self.trees.pending_spans.iter() {
            let (key, value) = entry?;
            if value.get(..TIME_BYTES).is_none_or(|time| decode_time(time) < spans_cutoff) {
                expired.push(key);
            }
        }
        report.pending_spans = remove_keys(&self.trees.pending_spans, expired)?;
        self.flush()?;
        Ok(report)
    }

    /// Merges the small segments of each hour (left by small ingest calls,
    /// such as OTLP exports of a few spans) into large ones, so scans visit
    /// few sled entries. Each hour's merge is one transaction that first
    /// checks its segments are unchanged; a segment changed meanwhile is
    /// left for the next run.
    pub fn compact_traces(&self) -> Result<CompactionReport, StoreError> {
        let mut report = CompactionReport::default();
        for project in self.list_projects()? {
            let prefix = project_prefix(&project.name);
            let mut hour: Option<(i64, Vec<(sled::IVec, sled::IVec)>)> = None;
            let mut merge = |hour: Option<(i64, Vec<(sled::IVec, sled::IVec)>)>| -> Result<(), StoreError> {
                if let Some((bucket, small)) = hour
                    && small.len() > 1
                {
                    report.segments_written += self.merge_segments(&project.name, bucket, &small)?;
                    report.segments_merged += small.len() as u64;
                }
                Ok(())
            };
            for entry in self.trees.traces.scan_prefix(&prefix) {
                let (key, value) = entry?;
                let bucket = segment_bucket(&key, prefix.len())?;
                if record::decode_segment(&value)?.len() >= SEGMENT_TRACES_SMALL {
                    continue;
                }
                match &mut hour {
                    Some((current, small)) if *current == bucket => small.push((key, value)),
                    _ => merge(hour.replace((bucket, vec![(key, value)])))?,
                }
            }
            merge(hour)?;
        }
        self.flush()?;
        Ok(report)
    }

    /// Spans kept for a trace whose root span has not arrived: the bytes
    /// given to [`Store::keep_pending_spans`] (the store does not read them).
    pub fn pending_spans(&self, trace_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .trees
            .pending_spans
            .get(trace_id.as_bytes())?
            .and_then(|value| value.get(TIME_BYTES..).map(<[u8]>::to_vec)))
    }

    /// Keeps (replacing) spans waiting for their root, and forgets those of
    /// `done` (traces now stored), in one batch, flushed.
    pub fn keep_pending_spans(&self, keep: Vec<(String, Vec<u8>)>, done: Vec<String>) -> Result<(), StoreError> {
        if keep.is_empty() && done.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let time = encode_time(super::now_ms());
        for (trace_id, bytes) in keep {
            let mut value = Vec::with_capacity(TIME_BYTES + bytes.len());
            value.extend_from_slice(&time);
            value.extend_from_slice(&bytes);
            batch.insert(trace_id.as_bytes(), value);
        }
        for trace_id in done {
            batch.remove(trace_id.as_bytes());
        }
        self.trees.pending_spans.apply_batch(batch)?;
        self.flush()
    }

    /// Calls `visit` with the entries of each hour of `project` that
    /// overlaps `[since, until)`, in order, each hour's entries sorted and
    /// cut to the window, until it returns `Break`.
    fn visit_buckets(
        &self,
        project: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
        newest_first: bool,
        mut visit: impl FnMut(&[Entry]) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = project_prefix(project);
        let mut low = prefix.clone();
        low.extend_from_slice(&encode_time(bucket_of(since_ms.unwrap_or(i64::MIN))));
        let high = match until_ms {
            // Just past every segment of the hour holding `until - 1`.
            Some(until) => {
                let mut high = prefix.clone();
                high.extend_from_slice(&encode_time(bucket_of(until.saturating_sub(1)).saturating_add(1)));
                high
            }
            // Just past every key of the project: `project \1`.
            None => {
                let mut high = project.as_bytes().to_vec();
                high.push(SEPARATOR + 1);
                high
            }
        };
        let since = since_ms.unwrap_or(i64::MIN);
        let until = until_ms.unwrap_or(i64::MAX);
        let mut hour: Vec<sled::IVec> = Vec::new();
        let mut current: Option<i64> = None;
        let mut flush_hour = |hour: &mut Vec<sled::IVec>| -> Result<ControlFlow<()>, StoreError> {
            let mut entries = Vec::new();
            for segment in hour.iter() {
                entries.extend(
                    record::decode_segment(segment)?
                        .into_iter()
                        .filter(|entry| entry.start_ms >= since && entry.start_ms < until),
                );
            }
            // Segments of one hour may overlap in time: order their union.
            entries.sort_unstable_by(|left, right| (left.start_ms, left.id).cmp(&(right.start_ms, right.id)));
            if newest_first {
                entries.reverse();
            }
            let flow = if entries.is_empty() { ControlFlow::Continue(()) } else { visit(&entries)? };
            hour.clear();
            Ok(flow)
        };
        let range = self.trees.traces.range(low..high);
        let mut handle = |entry: sled::Result<(sled::IVec, sled::IVec)>| -> Result<ControlFlow<()>, StoreError> {
            let (key, value) = entry?;
            let bucket = segment_bucket(&key, prefix.len())?;
            let mut flow = ControlFlow::Continue(());
            if current.is_some_and(|current| current != bucket) {
                flow = flush_hour(&mut hour)?;
            }
            current = Some(bucket);
            hour.push(value);
            Ok(flow)
        };
        if newest_first {
            for entry in range.rev() {
                if handle(entry)?.is_break() {
                    return Ok(());
                }
            }
        } else {
            for entry in range {
                if handle(entry)?.is_break() {
                    return Ok(());
                }
            }
        }
        // The last hour: nothing follows it, whatever the visitor answers.
        let _ = flush_hour(&mut hour)?;
        Ok(())
    }

    /// The segment holding a stored trace, found through its hour.
    fn locate(&self, project: &str, trace_id: &str) -> Result<Option<Located>, StoreError> {
        let Some(bucket) = self.trees.trace_ids.get(id_key(project, trace_id))? else {
            return Ok(None);
        };
        let mut prefix = project_prefix(project);
        prefix.extend_from_slice(&bucket);
        prefix.push(SEPARATOR);
        for entry in self.trees.traces.scan_prefix(&prefix) {
            let (segment_key, segment) = entry?;
            if record::decode_segment(&segment)?.iter().any(|entry| entry.id == trace_id) {
                return Ok(Some(Located { segment_key, segment }));
            }
        }
        Err(indexed_but_missing(project, trace_id))
    }

    /// Adds feedback to a stored trace by rewriting its segment. `None` when
    /// the trace would hold too much feedback (nothing is written).
    fn merge_feedback(
        &self,
        project: &str,
        trace_id: &str,
        feedback: &[Feedback],
    ) -> Result<Option<usize>, StoreError> {
        for _ in 0..FEEDBACK_ATTEMPTS_MAX {
            let Some(located) = self.locate(project, trace_id)? else {
                return Err(indexed_but_missing(project, trace_id));
            };
            let entries = record::decode_segment(&located.segment)?;
            let mut records: Vec<Vec<u8>> = Vec::new();
            let mut added = 0;
            for entry in &entries {
                if entry.id != trace_id {
                    records.push(entry.record.to_vec());
                    continue;
                }
                let (pointer, mut stored) = record::decode(project, trace_id, entry.record)?;
                added = stored.merge_feedback(feedback);
                if stored.feedback.len() > FEEDBACK_PER_TRACE_MAX {
                    return Ok(None);
                }
                records.push(record::encode(pointer, &stored, &stored.feedback));
            }
            if added == 0 {
                return Ok(Some(0));
            }
            let rewritten: Vec<Entry> = entries
                .iter()
                .zip(&records)
                .map(|(entry, record)| Entry { id: entry.id, start_ms: entry.start_ms, record })
                .collect();
            let segment = record::encode_segment(&rewritten);
            let swapped = self
                .trees
                .traces
                .compare_and_swap(&located.segment_key, Some(&located.segment), Some(segment))?
                .is_ok();
            if swapped {
                self.flush()?;
                return Ok(Some(added));
            }
        }
        Err(busy())
    }

    /// Replaces the small segments of one hour by merged ones (see
    /// [`Store::compact_traces`]); returns how many were written.
    fn merge_segments(
        &self,
        project: &str,
        bucket: i64,
        small: &[(sled::IVec, sled::IVec)],
    ) -> Result<u64, StoreError> {
        let mut entries = Vec::new();
        for (_, segment) in small {
            entries.extend(record::decode_segment(segment)?);
        }
        entries.sort_unstable_by(|left, right| (left.start_ms, left.id).cmp(&(right.start_ms, right.id)));
        let merged: Vec<Vec<u8>> = entries.chunks(SEGMENT_TRACES_MAX).map(record::encode_segment).collect();
        let written = self
            .trees
            .traces
            .transaction(|segments| {
                for (key, value) in small {
                    if segments.get(key)?.as_ref() != Some(value) {
                        return Ok(0);
                    }
                }
                for (key, _) in small {
                    segments.remove(key)?;
                }
                for segment in &merged {
                    segments.insert(segment_key(project, bucket, segments.generate_id()?), segment.as_slice())?;
                }
                Ok(merged.len() as u64)
            })
            .map_err(from_transaction)?;
        Ok(written)
    }

    /// The whole trace: its body, with the record's feedback.
    fn whole_trace(&self, pointer: BodyPointer, summary: Trace, blocks: &mut BlockCache) -> Result<Trace, StoreError> {
        let block = blocks.get(&self.trees.trace_bodies, pointer.block)?;
        let start = usize::try_from(pointer.offset).map_err(|_| corrupt_body(&summary))?;
        let end = start.checked_add(usize::try_from(pointer.length).map_err(|_| corrupt_body(&summary))?);
        let body = end.and_then(|end| block.get(start..end)).ok_or_else(|| corrupt_body(&summary))?;
        let mut trace: Trace = layout::decode_json(body, "trace body")?;
        if trace.id != summary.id {
            return Err(corrupt_body(&summary));
        }
        trace.feedback = summary.feedback;
        Ok(trace)
    }

    fn project_record(&self, project: &str) -> Result<Option<ProjectRecord>, StoreError> {
        if project_name_problem(project).is_some() {
            return Ok(None);
        }
        self.trees
            .trace_projects
            .get(project.as_bytes())?
            .map(|bytes| layout::decode_json(&bytes, "project record"))
            .transpose()
    }

    fn describe_project(&self, name: &str, record: ProjectRecord) -> Result<TraceProject, StoreError> {
        let mut oldest = None;
        self.visit_buckets(name, None, None, false, |entries| {
            oldest = entries.first().map(|entry| format_rfc3339_ms(entry.start_ms));
            Ok(ControlFlow::Break(()))
        })?;
        let mut newest = None;
        self.visit_buckets(name, None, None, true, |entries| {
            newest = entries.first().map(|entry| format_rfc3339_ms(entry.start_ms));
            Ok(ControlFlow::Break(()))
        })?;
        Ok(TraceProject {
            name: name.to_owned(),
            trace_count: record.trace_count,
            retention_days: record.retention_days,
            created_at: record.created_at,
            oldest_start_time: oldest,
            newest_start_time: newest,
        })
    }

    /// Removes the traces of `project` that start before `cutoff_ms`, one
    /// segment (one transaction) at a time.
    fn remove_traces_before(&self, project: &str, cutoff_ms: i64) -> Result<u64, StoreError> {
        let prefix = project_prefix(project);
        let mut high = prefix.clone();
        high.extend_from_slice(&encode_time(bucket_of(cutoff_ms).saturating_add(1)));
        let mut segment_keys = Vec::new();
        for key in self.trees.traces.range(prefix.clone()..high).keys() {
            segment_keys.push(key?);
        }
        let trees = &self.trees;
        let mut removed_total = 0;
        for segment_key in segment_keys {
            let bucket = encode_time(segment_bucket(&segment_key, prefix.len())?);
            let removed =
                (&trees.traces, &trees.trace_bodies, &trees.trace_body_refs, &trees.trace_ids, &trees.trace_projects)
                    .transaction(|(segments, bodies, body_refs, ids, projects)| {
                        let Some(segment) = segments.get(&segment_key)? else { return Ok(0) };
                        let entries = record::decode_segment(&segment)?;
                        let (expired, kept): (Vec<Entry>, Vec<Entry>) =
                            entries.into_iter().partition(|entry| entry.start_ms < cutoff_ms);
                        if expired.is_empty() {
                            return Ok(0);
                        }
                        if kept.is_empty() {
                            segments.remove(&segment_key)?;
                        } else {
                            segments.insert(&segment_key, record::encode_segment(&kept))?;
                        }
                        let mut released: HashMap<u64, u32> = HashMap::new();
                        for entry in &expired {
                            *released.entry(record::pointer(entry.record)?.block).or_default() += 1;
                            let id_key = id_key(project, entry.id);
                            // The index entry goes only if it points at this hour.
                            if ids.get(id_key.as_slice())?.is_some_and(|hour| hour[..] == bucket[..]) {
                                ids.remove(id_key.as_slice())?;
                            }
                        }
                        for (block, count) in released {
                            let block_key = block.to_be_bytes();
                            let remaining = match body_refs.get(block_key)? {
                                Some(bytes) => u32::from_be_bytes(
                                    bytes
                                        .as_ref()
                                        .try_into()
                                        .map_err(|_| StoreError::Storage("corrupt block count".into()))?,
                                )
                                .saturating_sub(count),
                                None => 0,
                            };
                            if remaining == 0 {
                                body_refs.remove(&block_key[..])?;
                                bodies.remove(&block_key[..])?;
                            } else {
                                body_refs.insert(&block_key[..], &remaining.to_be_bytes()[..])?;
                            }
                        }
                        let removed = expired.len() as u64;
                        if let Some(bytes) = projects.get(project.as_bytes())? {
                            let mut record: ProjectRecord = layout::decode_json(&bytes, "project record")?;
                            record.trace_count = record.trace_count.saturating_sub(removed);
                            projects.insert(project.as_bytes(), layout::encode_json(&record, "project record")?)?;
                        }
                        Ok(removed)
                    })
                    .map_err(from_transaction)?;
            removed_total += removed;
        }
        Ok(removed_total)
    }
}

/// The last few body blocks read, for scans (and one-off reads).
#[derive(Default)]
struct BlockCache {
    blocks: Vec<(u64, sled::IVec)>,
}

impl BlockCache {
    fn get(&mut self, tree: &sled::Tree, block: u64) -> Result<sled::IVec, StoreError> {
        if let Some((_, bytes)) = self.blocks.iter().find(|(id, _)| *id == block) {
            return Ok(bytes.clone());
        }
        let bytes = tree
            .get(block.to_be_bytes())?
            .ok_or_else(|| StoreError::Storage(format!("trace body block {block} is missing")))?;
        if self.blocks.len() == SCAN_BLOCKS_CACHED {
            self.blocks.remove(0);
        }
        self.blocks.push((block, bytes.clone()));
        Ok(bytes)
    }
}

/// Validates one trace and encodes its body (without feedback, which lives
/// in the record). Errors name the trace's own fields.
fn prepare(index: usize, mut trace: Trace) -> Result<PreparedTrace, Vec<FieldError>> {
    trace.validate()?;
    let start_ms = trace
        .start_ms()
        .ok_or_else(|| vec![FieldError { field: "start_time".into(), reason: "is not an RFC 3339 time".into() }])?;
    trace.derive_latency();
    let feedback = std::mem::take(&mut trace.feedback);
    let body = layout::encode_json(&trace, "trace")
        .map_err(|error| vec![FieldError { field: "$".into(), reason: error.to_string() }])?;
    trace.feedback = feedback;
    if body.len() > TRACE_BYTES_MAX {
        return Err(vec![FieldError {
            field: "$".into(),
            reason: format!("the trace is {} bytes; at most {TRACE_BYTES_MAX}", body.len()),
        }]);
    }
    Ok(PreparedTrace { index, start_ms, id_key: id_key(&trace.project, &trace.id), body, trace })
}

fn to_u32(value: usize) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Storage("a body block outgrew 4 GiB".into()))
}

fn busy() -> StoreError {
    StoreError::Conflict("the trace changed too often meanwhile; try again".into())
}

fn indexed_but_missing(project: &str, id: &str) -> StoreError {
    StoreError::Storage(format!("trace `{id}` of `{project}` is indexed but missing"))
}

fn corrupt_body(summary: &Trace) -> StoreError {
    StoreError::Storage(format!("the body of trace `{}` of `{}` is corrupt", summary.id, summary.project))
}

fn trace_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > crate::traces::TRACE_ID_BYTES_MAX {
        Some(format!("must be 1 to {} bytes", crate::traces::TRACE_ID_BYTES_MAX))
    } else if id.contains('\0') {
        Some("must not contain the NUL character".into())
    } else {
        None
    }
}

fn too_much_feedback() -> FieldError {
    FieldError { field: "feedback".into(), reason: format!("a trace holds at most {FEEDBACK_PER_TRACE_MAX} entries") }
}

/// The start of the hour bucket holding `milliseconds`.
fn bucket_of(milliseconds: i64) -> i64 {
    milliseconds.div_euclid(BUCKET_MS).saturating_mul(BUCKET_MS)
}

/// Milliseconds as big-endian bytes that sort in time order (sign bit flipped).
fn encode_time(milliseconds: i64) -> [u8; TIME_BYTES] {
    (milliseconds.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

fn decode_time(bytes: &[u8]) -> i64 {
    let mut array = [0u8; TIME_BYTES];
    array.copy_from_slice(&bytes[..TIME_BYTES]);
    (u64::from_be_bytes(array) ^ (1 << 63)).cast_signed()
}

/// `project \0`.
fn project_prefix(project: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(project.len() + 1 + TIME_BYTES + 1 + TIME_BYTES);
    key.extend_from_slice(project.as_bytes());
    key.push(SEPARATOR);
    key
}

/// `project \0 hour \0 segment id`.
fn segment_key(project: &str, bucket: i64, segment: u64) -> Vec<u8> {
    let mut key = project_prefix(project);
    key.extend_from_slice(&encode_time(bucket));
    key.push(SEPARATOR);
    key.extend_from_slice(&segment.to_be_bytes());
    key
}

/// The hour of a segment key whose project prefix is `prefix_length` bytes.
fn segment_bucket(key: &[u8], prefix_length: usize) -> Result<i64, StoreError> {
    let time = key.get(prefix_length..prefix_length + TIME_BYTES).ok_or_else(|| corrupt_key(key))?;
    Ok(decode_time(time))
}

/// `project \0 id`.
fn id_key(project: &str, id: &str) -> Vec<u8> {
    let mut key = project_prefix(project);
    key.extend_from_slice(id.as_bytes());
    key
}

fn remove_keys(tree: &sled::Tree, keys: Vec<sled::IVec>) -> Result<u64, StoreError> {
    let count = keys.len() as u64;
    let mut batch = sled::Batch::default();
    for key in keys {
        batch.remove(key);
    }
    tree.apply_batch(batch)?;
    Ok(count)
}

fn corrupt_key(key: &[u8]) -> StoreError {
    StoreError::Storage(format!("corrupt trace key {}", hex::encode(key)))
}

#[cfg(test)]
mod tests;
