//! Annotation queues: production traces waiting for a domain expert's review.
//!
//! An item is `pending`, `reserved` by one reviewer until a deadline,
//! `accepted` (promoted into the queue's dataset as a new version) or
//! `rejected` (with a reason, in the discard log). Every state change is a
//! compare-and-swap of the item's record, so two reviewers can never hold or
//! decide the same item; an accepted example takes the trace id as its
//! example id, so even a reviewer whose reservation ran out while accepting
//! cannot add the trace to the dataset twice. A trace is queued at most once
//! per queue.

use super::layout;
use super::{Change, Commit, Store, StoreError};
use crate::model::{Example, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;

/// Longest queue name.
pub const QUEUE_NAME_BYTES_MAX: usize = 100;
/// Longest reason, instructions or description.
pub const QUEUE_TEXT_BYTES_MAX: usize = 16 << 10;
/// Items added by one call.
pub const QUEUE_ITEMS_PER_ADD_MAX: usize = 10_000;
/// The reservation of `next` when the queue does not set one.
pub const RESERVATION_SECONDS_DEFAULT: u64 = 15 * 60;
/// The longest reservation a queue may set.
pub const RESERVATION_SECONDS_MAX: u64 = 24 * 60 * 60;

/// A queue of traces for review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Where accepted examples go.
    pub dataset: String,
    /// The rubric reviewers follow.
    #[serde(default)]
    pub instructions: String,
    /// Metadata fields a reviewer must set before accepting (e.g. `severity`, `persona`).
    #[serde(default)]
    pub required_metadata: Vec<String>,
    #[serde(default = "default_reservation")]
    pub reservation_seconds: u64,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub created_at: String,
}

fn default_reservation() -> u64 {
    RESERVATION_SECONDS_DEFAULT
}

/// Where an item is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Pending,
    Reserved,
    Accepted,
    Rejected,
}

/// One trace in a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Decimal sequence number within the queue (queue order).
    pub id: String,
    pub queue: String,
    pub project: String,
    pub trace_id: String,
    pub state: ItemState,
    /// Who queued it: a mining rule (`rule:NAME`) or a token name.
    pub added_by: String,
    pub added_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_by: Option<String>,
    /// Unix milliseconds; the reservation holds until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_until_ms: Option<i64>,
    /// Reviewers who skipped it; it is not offered to them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The dataset version its acceptance created, and the example's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_id: Option<String>,
}

/// Counts of a queue's items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub pending: u64,
    /// Held by a reviewer whose reservation has not run out.
    pub reserved: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// One reviewer's work in a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewerCounts {
    pub accepted: u64,
    pub rejected: u64,
    pub skipped: u64,
}

/// A queue with its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    #[serde(flatten)]
    pub queue: Queue,
    pub counts: QueueCounts,
    pub reviewers: BTreeMap<String, ReviewerCounts>,
}

/// What happened to an item, for the discard log and reviewer counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEvent {
    pub item_id: String,
    pub project: String,
    pub trace_id: String,
    pub reviewer: String,
    /// `accepted`, `rejected` or `skipped`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: String,
}

/// The outcome of adding traces to a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AddReport {
    pub queued: u64,
    /// Traces this queue already had (in any state).
    pub already_queued: u64,
    pub item_ids: Vec<String>,
}

/// An acceptance: the new dataset version and the example's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub dataset: String,
    pub version: u64,
    pub example_id: String,
}

/// Why a reviewer's decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The reviewer's reservation ran out (someone else may hold the item now).
    #[error("your reservation of item {item} ran out; take the next item")]
    ReservationExpired { item: String },
    /// Another reviewer holds the item.
    #[error("item {item} is reserved by another reviewer")]
    NotReservedByYou { item: String },
    /// The item was accepted or rejected already.
    #[error("item {item} was already {state}")]
    AlreadyDecided { item: String, state: String },
}

impl From<sled::Error> for ReviewError {
    fn from(error: sled::Error) -> ReviewError {
        ReviewError::Store(error.into())
    }
}

impl ReviewError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            ReviewError::Store(_) => "store",
            ReviewError::ReservationExpired { .. } => "reservation_expired",
            ReviewError::NotReservedByYou { .. } => "not_reserved_by_you",
            ReviewError::AlreadyDecided { .. } => "already_decided",
        }
    }
}

impl Store {
    /// Creates a queue feeding an existing dataset.
    pub fn create_queue(&self, mut queue: Queue, by: &str) -> Result<Queue, StoreError> {
        let mut errors = Vec::new();
        if queue.name.is_empty()
            || queue.name.len() > QUEUE_NAME_BYTES_MAX
            || !queue.name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        {
            errors.push(FieldError {
                field: "name".into(),
                reason: format!("must be 1 to {QUEUE_NAME_BYTES_MAX} ASCII letters, digits, `-`, `_` or `.`"),
            });
        }
        for (field, text) in [("description", &queue.description), ("instructions", &queue.instructions)] {
            if text.len() > QUEUE_TEXT_BYTES_MAX {
                errors
                    .push(FieldError { field: field.into(), reason: format!("is over {QUEUE_TEXT_BYTES_MAX} bytes") });
            }
        }
        for (index, key) in queue.required_metadata.iter().enumerate() {
            if key.trim().is_empty() || key.len() > 64 {
                errors.push(FieldError {
                    field: format!("required_metadata[{index}]"),
                    reason: "must be 1 to 64 bytes".into(),
                });
            }
        }
        if !(1..=RESERVATION_SECONDS_MAX).contains(&queue.reservation_seconds) {
            errors.push(FieldError {
                field: "reservation_seconds".into(),
                reason: format!("must be 1 to {RESERVATION_SECONDS_MAX}"),
            });
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        self.dataset(&queue.dataset).map_err(|_| {
            StoreError::Invalid(vec![FieldError {
                field: "dataset".into(),
                reason: format!("no dataset called {:?}; create it first", queue.dataset),
            }])
        })?;
        queue.created_by = by.to_owned();
        queue.created_at = super::now_rfc3339();
        let encoded = layout::encode_json(&queue, "queue")?;
        self.trees
            .queues
            .compare_and_swap(queue.name.as_bytes(), None::<&[u8]>, Some(encoded))?
            .map_err(|_| StoreError::Conflict(format!("a queue called {:?} exists already", queue.name)))?;
        self.flush()?;
        Ok(queue)
    }

    /// One queue.
    pub fn queue(&self, name: &str) -> Result<Queue, StoreError> {
        match self.trees.queues.get(name.as_bytes())? {
            Some(bytes) => layout::decode_json(&bytes, "queue"),
            None => Err(StoreError::NotFound { what: format!("queue `{name}`") }),
        }
    }

    /// Every queue with its progress, by name.
    pub fn list_queues(&self, now_ms: i64) -> Result<Vec<QueueStatus>, StoreError> {
        let mut queues = Vec::new();
        for entry in self.trees.queues.iter() {
            let (_, bytes) = entry?;
            let queue: Queue = layout::decode_json(&bytes, "queue")?;
            queues.push(self.queue_status_of(queue, now_ms)?);
        }
        Ok(queues)
    }

    /// One queue with its progress: counts by state and per reviewer.
    pub fn queue_status(&self, name: &str, now_ms: i64) -> Result<QueueStatus, StoreError> {
        let queue = self.queue(name)?;
        self.queue_status_of(queue, now_ms)
    }

    fn queue_status_of(&self, queue: Queue, now_ms: i64) -> Result<QueueStatus, StoreError> {
        let mut counts = QueueCounts::default();
        for item in self.queue_items(&queue.name)? {
            match item.state {
                ItemState::Reserved if item.reserved_until_ms.is_some_and(|until| until >= now_ms) => {
                    counts.reserved += 1
                }
                ItemState::Pending | ItemState::Reserved => counts.pending += 1,
                ItemState::Accepted => counts.accepted += 1,
                ItemState::Rejected => counts.rejected += 1,
            }
        }
        let mut reviewers: BTreeMap<String, ReviewerCounts> = BTreeMap::new();
        for event in self.queue_events(&queue.name)? {
            let counts = reviewers.entry(event.reviewer).or_default();
            match event.action.as_str() {
                "accepted" => counts.accepted += 1,
                "rejected" => counts.rejected += 1,
                _ => counts.skipped += 1,
            }
        }
        Ok(QueueStatus { queue, counts, reviewers })
    }

    /// Every item of a queue, in queue order.
    pub fn queue_items(&self, name: &str) -> Result<Vec<QueueItem>, StoreError> {
        let mut items = Vec::new();
        for entry in self.trees.queue_items.scan_prefix(layout::dataset_prefix(name)) {
            let (_, bytes) = entry?;
            items.push(layout::decode_json(&bytes, "queue item")?);
        }
        Ok(items)
    }

    /// One item.
    pub fn queue_item(&self, name: &str, item_id: &str) -> Result<QueueItem, StoreError> {
        let key = item_key(name, item_id)?;
        match self.trees.queue_items.get(key)? {
            Some(bytes) => layout::decode_json(&bytes, "queue item"),
            None => Err(StoreError::NotFound { what: format!("item {item_id} of queue `{name}`") }),
        }
    }

    /// Whether `project`/`trace_id` is in queue `name` (in any state).
    pub fn is_queued(&self, name: &str, project: &str, trace_id: &str) -> Result<bool, StoreError> {
        Ok(self.trees.queue_traces.get(trace_index_key(name, project, trace_id))?.is_some())
    }

    /// Adds traces to a queue, in order, skipping those it already has. One transaction.
    pub fn add_to_queue(
        &self,
        name: &str,
        traces: &[(String, String)],
        added_by: &str,
    ) -> Result<AddReport, StoreError> {
        self.queue(name)?;
        if traces.len() > QUEUE_ITEMS_PER_ADD_MAX {
            return Err(StoreError::Invalid(vec![FieldError {
                field: "items".into(),
                reason: format!("{} traces; at most {QUEUE_ITEMS_PER_ADD_MAX} per call", traces.len()),
            }]));
        }
        let added_at = super::now_rfc3339();
        let trees = &self.trees;
        let report = (&trees.queue_items, &trees.queue_traces, &trees.queue_sequences)
            .transaction(|(items, index, sequences)| {
                let mut report = AddReport::default();
                let mut next = match sequences.get(name.as_bytes())? {
                    Some(bytes) => {
                        layout::decode_version(&bytes, "queue sequence").map_err(ConflictableTransactionError::Abort)?
                    }
                    None => 0,
                };
                for (project, trace_id) in traces {
                    let index_key = trace_index_key(name, project, trace_id);
                    if index.get(&index_key)?.is_some() {
                        report.already_queued += 1;
                        continue;
                    }
                    next += 1;
                    let id = next.to_string();
                    let item = QueueItem {
                        id: id.clone(),
                        queue: name.into(),
                        project: project.clone(),
                        trace_id: trace_id.clone(),
                        state: ItemState::Pending,
                        added_by: added_by.into(),
                        added_at: added_at.clone(),
                        reserved_by: None,
                        reserved_until_ms: None,
                        skipped_by: Vec::new(),
                        decided_by: None,
                        decided_at: None,
                        reason: None,
                        dataset_version: None,
                        example_id: None,
                    };
                    let encoded =
                        layout::encode_json(&item, "queue item").map_err(ConflictableTransactionError::Abort)?;
                    items.insert(sequence_key(name, next), encoded)?;
                    index.insert(index_key, id.as_bytes())?;
                    report.queued += 1;
                    report.item_ids.push(id);
                }
                sequences.insert(name.as_bytes(), &layout::encode_version(next))?;
                Ok(report)
            })
            .map_err(super::from_transaction)?;
        self.flush()?;
        Ok(report)
    }

    /// Reserves the next item for `reviewer` until `now_ms` plus the queue's
    /// reservation: the item the reviewer already holds, else the first
    /// pending (or expired) item the reviewer did not skip. `None` when there is none.
    pub fn next_in_queue(&self, name: &str, reviewer: &str, now_ms: i64) -> Result<Option<QueueItem>, StoreError> {
        let queue = self.queue(name)?;
        let until = now_ms.saturating_add((queue.reservation_seconds * 1_000) as i64);
        for entry in self.trees.queue_items.scan_prefix(layout::dataset_prefix(name)) {
            let (_, bytes) = entry?;
            let item: QueueItem = layout::decode_json(&bytes, "queue item")?;
            let live_reservation =
                item.state == ItemState::Reserved && item.reserved_until_ms.is_some_and(|t| t >= now_ms);
            if live_reservation && item.reserved_by.as_deref() == Some(reviewer) {
                return Ok(Some(item));
            }
        }
        for entry in self.trees.queue_items.scan_prefix(layout::dataset_prefix(name)) {
            let (key, bytes) = entry?;
            let item: QueueItem = layout::decode_json(&bytes, "queue item")?;
            let available = match item.state {
                ItemState::Pending => true,
                ItemState::Reserved => item.reserved_until_ms.is_none_or(|t| t < now_ms),
                ItemState::Accepted | ItemState::Rejected => false,
            };
            if !available || item.skipped_by.iter().any(|skipper| skipper == reviewer) {
                continue;
            }
            let reserved = QueueItem {
                state: ItemState::Reserved,
                reserved_by: Some(reviewer.to_owned()),
                reserved_until_ms: Some(until),
                ..item
            };
            let encoded = layout::encode_json(&reserved, "queue item")?;
            // Lost to another reviewer: look further.
            if self.trees.queue_items.compare_and_swap(&key, Some(&bytes), Some(encoded))?.is_ok() {
                self.flush()?;
                return Ok(Some(reserved));
            }
        }
        Ok(None)
    }

    /// Accepts a reserved item: commits `example` into the queue's dataset as
    /// a new version (id = the trace id; metadata `source`, `trace_id` and
    /// `annotator` filled in) and marks the item accepted.
    pub fn accept_item(
        &self,
        name: &str,
        item_id: &str,
        reviewer: &str,
        mut example: Example,
        note: &str,
        now_ms: i64,
    ) -> Result<Accepted, ReviewError> {
        let queue = self.queue(name)?;
        let (key, bytes, item) = self.held_item(name, item_id, reviewer, now_ms)?;
        let mut errors = Vec::new();
        for field in &queue.required_metadata {
            let set = match example.metadata.get(field) {
                Some(Value::String(text)) => !text.trim().is_empty(),
                Some(Value::Null) | None => false,
                Some(_) => true,
            };
            if !set {
                errors.push(FieldError {
                    field: format!("example.metadata.{field}"),
                    reason: format!("queue {name} requires the reviewer to set it"),
                });
            }
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors).into());
        }
        example.id = Some(item.trace_id.clone());
        example.metadata.entry("source").or_insert_with(|| Value::String("production".into()));
        example.metadata.insert("trace_id".into(), Value::String(item.trace_id.clone()));
        example.metadata.insert("annotator".into(), Value::String(reviewer.to_owned()));
        let note = if note.trim().is_empty() {
            format!("from queue {name}: trace {} reviewed by {reviewer}", item.trace_id)
        } else {
            note.to_owned()
        };
        let committed =
            self.commit(&queue.dataset, Commit { author: reviewer.into(), note, changes: vec![Change::Add(example)] });
        let version = match committed {
            Ok(version) => version.version,
            Err(StoreError::Conflict(_)) if self.example_holds_trace(&queue.dataset, &item.trace_id)? => {
                // Accepted already (by this item or another path): never twice.
                self.mark_accepted_elsewhere(&key, &bytes, &item)?;
                return Err(ReviewError::AlreadyDecided { item: item_id.into(), state: "accepted".into() });
            }
            Err(error) => return Err(error.into()),
        };
        let accepted = QueueItem {
            state: ItemState::Accepted,
            decided_by: Some(reviewer.to_owned()),
            decided_at: Some(super::now_rfc3339()),
            dataset_version: Some(version),
            example_id: Some(item.trace_id.clone()),
            reserved_until_ms: None,
            ..item.clone()
        };
        self.decide(&key, &bytes, &accepted, "accepted", None)?;
        Ok(Accepted { dataset: queue.dataset, version, example_id: item.trace_id })
    }

    /// Rejects a reserved item with a reason, kept in the discard log.
    pub fn reject_item(
        &self,
        name: &str,
        item_id: &str,
        reviewer: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<QueueItem, ReviewError> {
        if reason.trim().is_empty() || reason.len() > QUEUE_TEXT_BYTES_MAX {
            return Err(StoreError::Invalid(vec![FieldError {
                field: "reason".into(),
                reason: format!("say why, in 1 to {QUEUE_TEXT_BYTES_MAX} bytes"),
            }])
            .into());
        }
        let (key, bytes, item) = self.held_item(name, item_id, reviewer, now_ms)?;
        let rejected = QueueItem {
            state: ItemState::Rejected,
            decided_by: Some(reviewer.to_owned()),
            decided_at: Some(super::now_rfc3339()),
            reason: Some(reason.to_owned()),
            reserved_until_ms: None,
            ..item
        };
        self.decide(&key, &bytes, &rejected, "rejected", Some(reason))?;
        Ok(rejected)
    }

    /// Releases a reserved item without a decision; it is not offered to this reviewer again.
    pub fn skip_item(&self, name: &str, item_id: &str, reviewer: &str, now_ms: i64) -> Result<QueueItem, ReviewError> {
        let (key, bytes, item) = self.held_item(name, item_id, reviewer, now_ms)?;
        let mut skipped_by = item.skipped_by.clone();
        skipped_by.push(reviewer.to_owned());
        let released =
            QueueItem { state: ItemState::Pending, reserved_by: None, reserved_until_ms: None, skipped_by, ..item };
        self.decide(&key, &bytes, &released, "skipped", None)?;
        Ok(released)
    }

    /// The discard log: every rejection, oldest first.
    pub fn discard_log(&self, name: &str) -> Result<Vec<QueueEvent>, StoreError> {
        self.queue(name)?;
        Ok(self.queue_events(name)?.into_iter().filter(|event| event.action == "rejected").collect())
    }

    fn queue_events(&self, name: &str) -> Result<Vec<QueueEvent>, StoreError> {
        let mut events = Vec::new();
        for entry in self.trees.queue_events.scan_prefix(layout::dataset_prefix(name)) {
            let (_, bytes) = entry?;
            events.push(layout::decode_json(&bytes, "queue event")?);
        }
        Ok(events)
    }

    /// The item, if `reviewer` holds a live reservation of it.
    fn held_item(
        &self,
        name: &str,
        item_id: &str,
        reviewer: &str,
        now_ms: i64,
    ) -> Result<(Vec<u8>, sled::IVec, QueueItem), ReviewError> {
        let key = item_key(name, item_id)?;
        let bytes = self
            .trees
            .queue_items
            .get(&key)?
            .ok_or_else(|| StoreError::NotFound { what: format!("item {item_id} of queue `{name}`") })?;
        let item: QueueItem = layout::decode_json(&bytes, "queue item")?;
        match item.state {
            ItemState::Accepted | ItemState::Rejected => Err(ReviewError::AlreadyDecided {
                item: item_id.into(),
                state: if item.state == ItemState::Accepted { "accepted" } else { "rejected" }.into(),
            }),
            ItemState::Reserved if item.reserved_by.as_deref() == Some(reviewer) => {
                if item.reserved_until_ms.is_some_and(|until| until >= now_ms) {
                    Ok((key, bytes, item))
                } else {
                    Err(ReviewError::ReservationExpired { item: item_id.into() })
                }
            }
            ItemState::Reserved if item.reserved_until_ms.is_some_and(|until| until >= now_ms) => {
                Err(ReviewError::NotReservedByYou { item: item_id.into() })
            }
            // Pending, or someone else's reservation that ran out: this reviewer's ran out too.
            _ => Err(ReviewError::ReservationExpired { item: item_id.into() }),
        }
    }

    /// Writes an item's new state if it is still as read, with its event, in one transaction.
    fn decide(
        &self,
        key: &[u8],
        before: &sled::IVec,
        after: &QueueItem,
        action: &str,
        reason: Option<&str>,
    ) -> Result<(), ReviewError> {
        let encoded = layout::encode_json(after, "queue item")?;
        let event = QueueEvent {
            item_id: after.id.clone(),
            project: after.project.clone(),
            trace_id: after.trace_id.clone(),
            reviewer: after.decided_by.clone().or_else(|| after.skipped_by.last().cloned()).unwrap_or_default(),
            action: action.into(),
            reason: reason.map(str::to_owned),
            at: super::now_rfc3339(),
        };
        let encoded_event = layout::encode_json(&event, "queue event")?;
        let queue = after.queue.as_str();
        let trees = &self.trees;
        let changed = (&trees.queue_items, &trees.queue_events)
            .transaction(|(items, events)| {
                if items.get(key)?.as_ref() != Some(before) {
                    return Ok(false);
                }
                items.insert(key, encoded.as_slice())?;
                let sequence = events.generate_id()?;
                let mut event_key = layout::dataset_prefix(queue);
                event_key.extend_from_slice(&sequence.to_be_bytes());
                events.insert(event_key, encoded_event.as_slice())?;
                Ok(true)
            })
            .map_err(super::from_transaction)?;
        if !changed {
            // Someone moved it meanwhile; say what it is now.
            let now: QueueItem = match self.trees.queue_items.get(key)? {
                Some(bytes) => layout::decode_json(&bytes, "queue item")?,
                None => return Err(StoreError::NotFound { what: format!("item {}", after.id) }.into()),
            };
            return Err(match now.state {
                ItemState::Accepted | ItemState::Rejected => ReviewError::AlreadyDecided {
                    item: after.id.clone(),
                    state: format!("{:?}", now.state).to_lowercase(),
                },
                _ => ReviewError::NotReservedByYou { item: after.id.clone() },
            });
        }
        self.flush()?;
        Ok(())
    }

    /// Marks an item accepted when its trace reached the dataset by another acceptance.
    fn mark_accepted_elsewhere(&self, key: &[u8], before: &sled::IVec, item: &QueueItem) -> Result<(), StoreError> {
        let accepted = QueueItem { state: ItemState::Accepted, reserved_until_ms: None, ..item.clone() };
        let encoded = layout::encode_json(&accepted, "queue item")?;
        let _ = self.trees.queue_items.compare_and_swap(key, Some(before), Some(encoded))?;
        self.flush()
    }

    /// Whether the dataset's latest version holds an example for this trace.
    fn example_holds_trace(&self, dataset: &str, trace_id: &str) -> Result<bool, StoreError> {
        let latest = self.dataset(dataset)?.latest_version;
        match self.example(dataset, latest, trace_id) {
            Ok(stored) => Ok(stored.example.metadata_text("trace_id") == Some(trace_id)),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

fn sequence_key(name: &str, sequence: u64) -> Vec<u8> {
    let mut key = layout::dataset_prefix(name);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

fn item_key(name: &str, item_id: &str) -> Result<Vec<u8>, StoreError> {
    let sequence: u64 =
        item_id.parse().map_err(|_| StoreError::NotFound { what: format!("item {item_id:?} of queue `{name}`") })?;
    Ok(sequence_key(name, sequence))
}

fn trace_index_key(name: &str, project: &str, trace_id: &str) -> Vec<u8> {
    let mut key = layout::dataset_prefix(name);
    key.extend_from_slice(project.as_bytes());
    key.push(0);
    key.extend_from_slice(trace_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DatasetKind, NewDataset};

    fn store_with_queue(reservation_seconds: u64) -> (tempfile::TempDir, Store) {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        store
            .create_dataset(NewDataset {
                name: "triage".into(),
                description: String::new(),
                kind: DatasetKind::Golden,
                schema: Default::default(),
            })
            .unwrap();
        let queue = Queue {
            name: "triage-review".into(),
            description: "negative feedback".into(),
            dataset: "triage".into(),
            instructions: "check escalation".into(),
            required_metadata: vec!["severity".into()],
            reservation_seconds,
            created_by: String::new(),
            created_at: String::new(),
        };
        store.create_queue(queue, "lead").unwrap();
        (directory, store)
    }

    fn example(severity: Option<&str>) -> Example {
        let mut value = serde_json::json!({"inputs": {"messages": [{"role": "user", "content": "fever"}]},
            "outputs": {"reference": "I'm paging the on-call physician."}});
        if let Some(severity) = severity {
            value["metadata"] = serde_json::json!({"severity": severity});
        }
        serde_json::from_value(value).unwrap()
    }

    fn traces(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter().map(|id| ("prod".to_owned(), (*id).to_owned())).collect()
    }

    #[test]
    fn traces_are_queued_once_and_reviewed_into_the_dataset() {
        let (_directory, store) = store_with_queue(600);
        let added = store.add_to_queue("triage-review", &traces(&["t1", "t2", "t3"]), "rule:negative").unwrap();
        assert_eq!((added.queued, added.already_queued), (3, 0));
        let again = store.add_to_queue("triage-review", &traces(&["t2", "t4"]), "rule:negative").unwrap();
        assert_eq!((again.queued, again.already_queued, again.item_ids.clone()), (1, 1, vec!["4".to_owned()]));
        assert!(store.is_queued("triage-review", "prod", "t4").unwrap());
        assert!(!store.is_queued("triage-review", "other", "t4").unwrap());

        let now = 1_000_000;
        let first = store.next_in_queue("triage-review", "rn_kelly", now).unwrap().unwrap();
        assert_eq!((first.trace_id.as_str(), first.reserved_until_ms), ("t1", Some(now + 600_000)));
        // Asking again gives the item already held, not a second one.
        assert_eq!(store.next_in_queue("triage-review", "rn_kelly", now).unwrap().unwrap().id, first.id);
        let second = store.next_in_queue("triage-review", "dr_ames", now).unwrap().unwrap();
        assert_eq!(second.trace_id, "t2");

        // Required metadata is enforced; then the example lands with provenance filled in.
        let missing = store.accept_item("triage-review", &first.id, "rn_kelly", example(None), "", now);
        assert!(
            matches!(&missing, Err(ReviewError::Store(StoreError::Invalid(fields))) if fields[0].field == "example.metadata.severity")
        );
        let accepted = store.accept_item("triage-review", &first.id, "rn_kelly", example(Some("p0")), "", now).unwrap();
        assert_eq!((accepted.version, accepted.example_id.as_str()), (1, "t1"));
        let stored = store.example("triage", 1, "t1").unwrap().example;
        assert_eq!(stored.metadata_text("annotator"), Some("rn_kelly"));
        assert_eq!(stored.metadata_text("trace_id"), Some("t1"));
        assert_eq!(stored.metadata_text("source"), Some("production"));
        let twice = store.accept_item("triage-review", &first.id, "rn_kelly", example(Some("p0")), "", now);
        assert!(matches!(twice, Err(ReviewError::AlreadyDecided { .. })), "{twice:?}");
        // Someone else's item.
        let stolen = store.reject_item("triage-review", &second.id, "rn_kelly", "not mine", now);
        assert!(matches!(stolen, Err(ReviewError::NotReservedByYou { .. })), "{stolen:?}");
        let rejected = store.reject_item("triage-review", &second.id, "dr_ames", "duplicate of t1", now).unwrap();
        assert_eq!(rejected.state, ItemState::Rejected);
        assert!(matches!(
            store.reject_item("triage-review", &second.id, "dr_ames", " ", now),
            Err(ReviewError::Store(StoreError::Invalid(_)))
        ));

        // Skip releases it, and it is not offered to the same reviewer again.
        let third = store.next_in_queue("triage-review", "rn_kelly", now).unwrap().unwrap();
        assert_eq!(third.trace_id, "t3");
        store.skip_item("triage-review", &third.id, "rn_kelly", now).unwrap();
        assert_eq!(store.next_in_queue("triage-review", "rn_kelly", now).unwrap().unwrap().trace_id, "t4");
        assert_eq!(store.next_in_queue("triage-review", "dr_ames", now).unwrap().unwrap().trace_id, "t3");

        let status = store.queue_status("triage-review", now).unwrap();
        assert_eq!(status.counts, QueueCounts { pending: 0, reserved: 2, accepted: 1, rejected: 1 });
        assert_eq!(status.reviewers["rn_kelly"], ReviewerCounts { accepted: 1, rejected: 0, skipped: 1 });
        assert_eq!(status.reviewers["dr_ames"], ReviewerCounts { accepted: 0, rejected: 1, skipped: 0 });
        let log = store.discard_log("triage-review").unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].trace_id.as_str(), log[0].reason.as_deref()), ("t2", Some("duplicate of t1")));
    }

    #[test]
    fn an_expired_reservation_returns_the_item_and_its_holder_cannot_decide_it() {
        let (_directory, store) = store_with_queue(60);
        store.add_to_queue("triage-review", &traces(&["t1"]), "lead").unwrap();
        let held = store.next_in_queue("triage-review", "rn_kelly", 0).unwrap().unwrap();
        assert!(store.next_in_queue("triage-review", "dr_ames", 59_999).unwrap().is_none(), "still reserved");
        let taken = store.next_in_queue("triage-review", "dr_ames", 60_001).unwrap().unwrap();
        assert_eq!(taken.id, held.id);
        let late = store.accept_item("triage-review", &held.id, "rn_kelly", example(Some("p1")), "", 60_002);
        assert!(matches!(late, Err(ReviewError::NotReservedByYou { .. })), "{late:?}");
        let expired = store.skip_item("triage-review", &held.id, "dr_ames", 200_000);
        assert!(matches!(expired, Err(ReviewError::ReservationExpired { .. })), "{expired:?}");
        assert_eq!(store.queue_status("triage-review", 200_000).unwrap().counts.pending, 1);
    }

    #[test]
    fn concurrent_reviewers_never_hold_or_accept_the_same_item() {
        let (_directory, store) = store_with_queue(600);
        let ids: Vec<String> = (0..40).map(|index| format!("t{index}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        store.add_to_queue("triage-review", &traces(&ids), "lead").unwrap();
        let reviewers: Vec<_> = (0..4)
            .map(|reviewer| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let name = format!("reviewer-{reviewer}");
                    let mut accepted = Vec::new();
                    while let Some(item) = store.next_in_queue("triage-review", &name, 1_000).unwrap() {
                        match store.accept_item("triage-review", &item.id, &name, example(Some("p2")), "", 1_000) {
                            Ok(done) => accepted.push(done.example_id),
                            Err(error) => panic!("{name} lost item {} it held: {error}", item.id),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let mut all: Vec<String> = reviewers.into_iter().flat_map(|thread| thread.join().unwrap()).collect();
        all.sort();
        let mut expected: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        expected.sort();
        assert_eq!(all, expected, "every trace accepted exactly once");
        assert_eq!(store.dataset("triage").unwrap().example_count, 40);
        assert_eq!(store.dataset("triage").unwrap().latest_version, 40);
    }

    #[test]
    fn bad_queues_are_refused_with_the_field_named() {
        let (_directory, store) = store_with_queue(600);
        let base = store.queue("triage-review").unwrap();
        for (queue, field) in [
            (Queue { name: "bad name".into(), ..base.clone() }, "name"),
            (Queue { name: "q2".into(), dataset: "missing".into(), ..base.clone() }, "dataset"),
            (Queue { name: "q3".into(), reservation_seconds: 0, ..base.clone() }, "reservation_seconds"),
            (Queue { name: "q4".into(), required_metadata: vec![" ".into()], ..base.clone() }, "required_metadata[0]"),
        ] {
            let refused = store.create_queue(queue, "lead");
            assert!(
                matches!(&refused, Err(StoreError::Invalid(fields)) if fields[0].field == field),
                "{field}: {refused:?}"
            );
        }
        assert!(matches!(store.create_queue(base, "lead"), Err(StoreError::Conflict(_))));
        assert!(matches!(store.next_in_queue("nope", "a", 0), Err(StoreError::NotFound { .. })));
        assert!(matches!(store.queue_item("triage-review", "not-a-number"), Err(StoreError::NotFound { .. })));
    }
}
