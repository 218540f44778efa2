//! Versioned datasets on sled: the only code in Assay that knows sled. It
//! knows nothing of HTTP or Wasm; the server and the CLI call this API.
//!
//! # Versions
//!
//! A dataset is a sequence of immutable versions. Version 0 is the empty
//! dataset, recorded when the dataset is created (its author is empty, as
//! creation names none); every commit — add, edit, delete, import — creates
//! the next version, 1, 2, 3 ... The reference `name` resolves to the latest
//! version, `name@17` to version 17, `name@v3.4` or `name@prod` to the version
//! that tag points at.
//!
//! # Layout
//!
//! Examples are not copied per version. The `examples` tree holds one entry
//! per (example, version where it changed), keyed `name \0 id \0 version`,
//! either the example's canonical JSON or a tombstone. Reading version V
//! takes, for each id, the newest entry at or below V and skips tombstones.
//! A commit writes one entry per changed example, updates that example's
//! `current` head (a point lookup, since sled transactions cannot scan), and
//! carries the example count and the content digest forward from the previous
//! version by adding and subtracting the changed examples' hashes. Its cost
//! therefore depends on the size of the change, not of the dataset. See
//! `layout.rs` for every tree and `digest.rs` for the digest.
//!
//! # Atomicity, isolation, durability
//!
//! Every write is one sled transaction over all the trees it touches; sled
//! runs transactions one at a time, and each commit reads and advances the
//! dataset's latest-version pointer inside its transaction, so concurrent
//! commits get distinct consecutive numbers and a failed commit leaves
//! nothing behind. Entries are never rewritten, so a reader of version V is
//! unaffected by commits landing meanwhile (they only add entries above V).
//! The database is flushed before a write returns `Ok`: an acknowledged write
//! survives `kill -9`.

mod clock;
mod compare;
mod digest;
mod experiments;
mod graders;
mod layout;
mod mining;
mod queues;
mod tokens;
mod traces;
mod validation;

#[cfg(test)]
mod tests;

/// Callers that must know an added example's id (to echo it back) assign it
/// with this before committing, instead of leaving `Example::id` empty.
pub use clock::{format_rfc3339, new_example_id, now_ms, now_rfc3339};
pub use experiments::{
    Comparison, Direction, ExampleChange, ExampleResultRecord, Experiment, ExperimentStatus, FailureRecord,
    GradeRecord, GraderProvenance, KeyDelta, ScoreRecord, SideOfChange, compare as compare_experiments, config_hash,
    new_experiment_id,
};
pub use graders::{
    Alias, AliasAction, AliasEvent, GRADER_NAME_BYTES_MAX, GRADER_VERSION_BYTES_MAX, GraderSummary, GraderVersion,
    Published, Retirement, compare_versions, grader_name_problem, version_problem,
};
pub use mining::{MiningRule, RULE_NAME_BYTES_MAX};
pub use queues::{
    Accepted, AddReport, ItemState, QUEUE_ITEMS_PER_ADD_MAX, Queue, QueueCounts, QueueEvent, QueueItem, QueueStatus,
    RESERVATION_SECONDS_DEFAULT, ReviewError, ReviewerCounts,
};
pub use tokens::{NewToken, Role, TokenInfo};
pub use traces::{
    CompactionReport, FeedbackOutcome, IngestOutcome, IngestReport, PENDING_FEEDBACK_SECONDS, PENDING_SPANS_SECONDS,
    RETENTION_DAYS_MAX, RetentionReport, TRACE_BYTES_MAX, TraceProject, TraceScan,
};
pub use validation::{
    AUTHOR_BYTES_MAX, CHANGES_PER_COMMIT_MAX, DATASET_NAME_BYTES_MAX, DESCRIPTION_BYTES_MAX, FIELD_ERRORS_MAX,
    NOTE_BYTES_MAX, SCHEMA_BYTES_MAX, TAG_NAME_BYTES_MAX,
};

use crate::model::{Example, FieldError};
use digest::{ContentHash, Digest};
use layout::{ExampleRecord, Head, Trees};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use validation::{SchemaValidators, Selector};

/// A handle on the dataset store. Cloning is cheap; clones share one database
/// and may be used from many threads at once.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    trees: Trees,
}

/// Why a store operation failed, in terms a caller can act on (the server
/// maps each variant to one HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The dataset, version, tag or example does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The request contradicts what is stored: a duplicate dataset name, an
    /// added example whose id already exists.
    #[error("{0}")]
    Conflict(String),
    /// Refused input, every refused field with its reason. Import errors name
    /// the line: `line 3: inputs.messages`.
    #[error("{}", describe_field_errors(.0))]
    Invalid(Vec<FieldError>),
    /// A dataset reference that cannot be read, such as `name@` or `a@b@c`.
    #[error("{0}")]
    BadReference(String),
    /// The database failed, or holds a record this build cannot read. Not the
    /// caller's fault.
    #[error("storage failure: {0}")]
    Storage(String),
}

/// The two kinds of dataset of SPEC "Versioned datasets".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Curated, 500–1,500 examples, pinned in CI.
    Golden,
    /// 5k–50k examples refreshed from production.
    Drift,
}

/// What it takes to create a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDataset {
    /// 1–128 of `[a-z0-9_.-]`, starting with a letter or digit.
    pub name: String,
    pub description: String,
    pub kind: DatasetKind,
    /// JSON Schemas every example's inputs and outputs must also pass.
    pub schema: DatasetSchema,
}

/// A dataset's own JSON Schemas, checked on top of the built-in example
/// validation: `inputs` against the example's `inputs` object, `outputs`
/// against its `outputs` object. Either may be absent (no extra check).
/// Fixed at creation; external `$ref`s (files, URLs) are not resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<serde_json::Value>,
}

/// A dataset and the state of its latest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub description: String,
    pub kind: DatasetKind,
    /// The dataset's own JSON Schemas (`{}` when it has none).
    #[serde(default)]
    pub schema: DatasetSchema,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub latest_version: u64,
    pub example_count: u64,
    /// Content digest of the latest version.
    pub digest: String,
}

/// One commit: who, why, and what changes, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub author: String,
    /// The release note of the version this commit creates.
    pub note: String,
    pub changes: Vec<Change>,
}

/// One change of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new example. Its id, if given, must not exist in the latest version;
    /// if absent, a random UUID-shaped id is assigned.
    Add(Example),
    /// Replaces an example of the latest version. `example.id`, if given, must equal `id`.
    Edit { id: String, example: Example },
    /// Removes an example of the latest version.
    Delete { id: String },
}

/// One immutable version of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u64,
    pub author: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The release note.
    pub note: String,
    pub example_count: u64,
    /// Examples new in this version, relative to the previous one.
    pub added: u64,
    /// Examples whose content changed in this version.
    pub modified: u64,
    pub removed: u64,
    /// Hex of the sum mod 2^256 of sha256(id ‖ 0 ‖ canonical JSON) over the
    /// version's examples: equal content, equal digest, whatever its history.
    pub digest: String,
}

/// An example as stored in one version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredExample {
    pub id: String,
    /// The example, with `example.id` set to `id`.
    pub example: Example,
    /// The version where this example (last) appeared.
    pub version_added: u64,
    /// The version where its content last changed (its addition counts).
    pub version_modified: u64,
}

/// Which examples of a version to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExampleFilter {
    /// `(key, value)` pairs that must all equal the example's `metadata[key]`.
    /// Strings compare as text, numbers by value (`"3"` matches `3`).
    pub metadata: Vec<(String, String)>,
    /// Matches `metadata.split`, a split name or a list of them.
    pub split: Option<String>,
    /// How many matching examples to skip.
    pub offset: usize,
    /// At most this many examples; all when `None`.
    pub limit: Option<usize>,
}

/// One page of a filtered listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExamplePage {
    /// How many examples match the filter, before `offset` and `limit`.
    pub total: usize,
    pub examples: Vec<StoredExample>,
}

/// What changed between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub from: u64,
    pub to: u64,
    /// Ids present in `to` only, sorted.
    pub added: Vec<String>,
    /// Ids present in `from` only, sorted.
    pub removed: Vec<String>,
    /// Ids present in both with different content, sorted.
    pub modified: Vec<ModifiedExample>,
}

/// An example whose content differs between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifiedExample {
    pub id: String,
    /// Dotted paths, at most two levels deep: `outputs.reference`, `metadata.severity`.
    pub changed_fields: Vec<String>,
}

/// A named pointer at one version of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The tag's name, e.g. `v3.4` or `prod`.
    pub name: String,
    pub version: u64,
    /// Who last set or moved it.
    pub set_by: String,
    /// RFC 3339 UTC.
    pub set_at: String,
}

/// What happened to a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagAction {
    /// Created, pointing at `to`.
    Set,
    /// Moved from `from` to `to`.
    Move,
    /// Deleted; it pointed at `from`.
    Delete,
}

/// One entry of a dataset's tag history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEvent {
    pub tag: String,
    pub action: TagAction,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub author: String,
    /// RFC 3339 UTC.
    pub at: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Store").finish_non_exhaustive()
    }
}

impl DatasetKind {
    /// The name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Golden => "golden",
            DatasetKind::Drift => "drift",
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for DatasetKind {
    type Err = String;

    fn from_str(text: &str) -> Result<DatasetKind, String> {
        match text {
            "golden" => Ok(DatasetKind::Golden),
            "drift" => Ok(DatasetKind::Drift),
            other => Err(format!("unknown dataset kind {other:?}; expected golden or drift")),
        }
    }
}

impl Store {
    /// Opens (or creates) the store in the directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let db = sled::open(path)
            .map_err(|error| StoreError::Storage(format!("cannot open the store at {}: {error}", path.display())))?;
        match db.get(layout::LAYOUT_KEY)? {
            None => {
                db.insert(layout::LAYOUT_KEY, layout::LAYOUT_VERSION)?;
                db.flush()?;
            }
            Some(found) if found == layout::LAYOUT_VERSION => {}
            Some(found) => {
                return Err(StoreError::Storage(format!(
                    "the store at {} has layout {:?}; this build reads layout {:?}",
                    path.display(),
                    String::from_utf8_lossy(&found),
                    String::from_utf8_lossy(layout::LAYOUT_VERSION)
                )));
            }
        }
        let trees = Trees::open(&db)?;
        Ok(Store { db, trees })
    }

    /// Creates a dataset with its empty version 0.
    pub fn create_dataset(&self, new: NewDataset) -> Result<Dataset, StoreError> {
        let mut errors = Vec::new();
        if let Some(reason) = validation::dataset_name_problem(&new.name) {
            errors.push(FieldError { field: "name".into(), reason });
        }
        validation::text_problems("description", &new.description, false, DESCRIPTION_BYTES_MAX, &mut errors);
        errors.extend(validation::schema_problems(&new.schema));
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        let created_at = clock::now_rfc3339();
        let record = DatasetRecord {
            name: new.name,
            description: new.description,
            kind: new.kind,
            schema: new.schema,
            created_at: created_at.clone(),
        };
        let empty = VersionInfo {
            version: 0,
            author: String::new(),
            created_at,
            note: "dataset created".into(),
            example_count: 0,
            added: 0,
            modified: 0,
            removed: 0,
            digest: Digest::default().to_hex(),
        };
        let name = record.name.as_str();
        let record_bytes = layout::encode_json(&record, "dataset record")?;
        let version_bytes = layout::encode_json(&empty, "version record")?;
        (&self.trees.datasets, &self.trees.versions, &self.trees.latest)
            .transaction(|(datasets, versions, latest)| {
                if datasets.get(name.as_bytes())?.is_some() {
                    return Err(StoreError::Conflict(format!("dataset `{name}` already exists")).into());
                }
                datasets.insert(name.as_bytes(), record_bytes.as_slice())?;
                versions.insert(layout::version_key(name, 0), version_bytes.as_slice())?;
                latest.insert(name.as_bytes(), &layout::encode_version(0)[..])?;
                Ok(())
            })
            .map_err(from_transaction)?;
        self.flush()?;
        Ok(record.into_dataset(&empty))
    }

    /// Every dataset, sorted by name.
    pub fn list_datasets(&self) -> Result<Vec<Dataset>, StoreError> {
        let mut datasets = Vec::new();
        for entry in self.trees.datasets.iter() {
            let (_, value) = entry?;
            let record: DatasetRecord = layout::decode_json(&value, "dataset record")?;
            let latest = self.latest_version(&record.name)?;
            let info = self.version_info(&record.name, latest)?;
            datasets.push(record.into_dataset(&info));
        }
        Ok(datasets)
    }

    /// One dataset and the state of its latest version.
    pub fn dataset(&self, name: &str) -> Result<Dataset, StoreError> {
        let latest = self.latest_version(name)?;
        let record = self.dataset_record(name)?;
        let info = self.version_info(name, latest)?;
        Ok(record.into_dataset(&info))
    }

    /// Applies `commit` atomically, creating the next version.
    ///
    /// Every example is validated first — by the built-in rules, then against
    /// the dataset's own schemas, compiled once per commit — and all refusals
    /// are reported together; their fields are prefixed `changes[i].` when the
    /// commit holds more than one change. Then, inside one transaction: an
    /// `Add` of an existing id is a `Conflict`, an `Edit` or `Delete` of a
    /// missing id is `NotFound`, and either leaves the dataset untouched. An
    /// edit to identical content still creates a version, with nothing
    /// modified.
    pub fn commit(&self, name: &str, commit: Commit) -> Result<VersionInfo, StoreError> {
        self.latest_version(name)?;
        let validators = self.schema_validators(name)?;
        let Commit { author, note, changes } = commit;
        let mut errors = Vec::new();
        commit_text_problems(&author, &note, &mut errors);
        if changes.is_empty() {
            errors.push(FieldError { field: "changes".into(), reason: "must hold at least one change".into() });
        } else if changes.len() > CHANGES_PER_COMMIT_MAX {
            return Err(too_many_changes(changes.len()));
        }
        let single_change = changes.len() == 1;
        let mut prepared = Vec::with_capacity(changes.len());
        for (index, change) in changes.into_iter().enumerate() {
            match prepare_change(change, &validators) {
                Ok(change) => prepared.push(change),
                Err(change_errors) => errors.extend(change_errors.into_iter().map(|error| FieldError {
                    field: if single_change { error.field } else { format!("changes[{index}].{}", error.field) },
                    reason: error.reason,
                })),
            }
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(cap_field_errors(errors)));
        }
        self.apply(name, &author, &note, &prepared)
    }

    /// Imports JSON Lines as one commit: a line whose id exists in the latest
    /// version edits that example, any other line adds one. Blank lines are
    /// skipped. Every line is validated like a committed example (the
    /// dataset's schemas compiled once for the whole import). If any line is
    /// bad nothing is written, and every bad line is reported as
    /// `line N: field` (up to [`FIELD_ERRORS_MAX`] errors).
    pub fn import(&self, name: &str, jsonl: &str, author: &str, note: &str) -> Result<VersionInfo, StoreError> {
        self.latest_version(name)?;
        let validators = self.schema_validators(name)?;
        let mut errors = Vec::new();
        commit_text_problems(author, note, &mut errors);
        let mut prepared = Vec::new();
        let mut line_of_id: HashMap<String, usize> = HashMap::new();
        let mut line_count = 0usize;
        for (index, line) in jsonl.lines().enumerate() {
            let line_number = index + 1;
            let line = if index == 0 { line.strip_prefix('\u{feff}').unwrap_or(line) } else { line };
            if line.trim().is_empty() {
                continue;
            }
            line_count += 1;
            if line_count > CHANGES_PER_COMMIT_MAX {
                return Err(too_many_changes(jsonl.lines().filter(|line| !line.trim().is_empty()).count()));
            }
            let at_line = |error: FieldError| FieldError {
                field: format!("line {line_number}: {}", error.field),
                reason: error.reason,
            };
            let example = match Example::from_json(line) {
                Ok(example) => example,
                Err(error) => {
                    errors.extend(error.field_errors().into_iter().map(at_line));
                    continue;
                }
            };
            if let Some(id) = &example.id {
                if let Some(first_line) = line_of_id.get(id) {
                    errors.push(at_line(FieldError {
                        field: "id".into(),
                        reason: format!("repeats the id {id:?} of line {first_line}"),
                    }));
                    continue;
                }
                line_of_id.insert(id.clone(), line_number);
            }
            let change = match example.id.clone() {
                Some(id) => prepare_body(&id, &example, &validators)
                    .map(|body| PreparedChange { id, action: Action::Upsert(body) }),
                None => prepare_change(Change::Add(example), &validators),
            };
            match change {
                Ok(change) => prepared.push(change),
                Err(line_errors) => errors.extend(line_errors.into_iter().map(at_line)),
            }
        }
        if line_count == 0 {
            errors.push(FieldError { field: "lines".into(), reason: "hold no example".into() });
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(cap_field_errors(errors)));
        }
        self.apply(name, author, note, &prepared)
    }

    /// Resolves `name`, `name@17`, `name@v3.4` or `name@prod` to a dataset
    /// name and version. A malformed reference is a `BadReference`; an unknown
    /// dataset, version or tag is `NotFound`.
    pub fn resolve(&self, reference: &str) -> Result<(String, u64), StoreError> {
        let (name, selector) = validation::parse_reference(reference)?;
        let latest = self.latest_version(name)?;
        let version = match selector {
            Selector::Latest => latest,
            Selector::Version(version) if version <= latest => version,
            Selector::Version(version) => return Err(version_not_found(name, version)),
            Selector::Tag(tag) => self.tag(name, &tag)?.version,
        };
        Ok((name.to_owned(), version))
    }

    /// Points `tag` at `version`, creating or moving it, and records who did
    /// it. Setting a tag to the version it already points at changes and
    /// records nothing.
    pub fn set_tag(&self, name: &str, tag: &str, version: u64, author: &str) -> Result<Tag, StoreError> {
        self.latest_version(name)?;
        tag_change_problems(tag, author)?;
        let at = clock::now_rfc3339();
        let key = layout::tag_key(name, tag);
        let result = (&self.trees.latest, &self.trees.tags, &self.trees.tag_events)
            .transaction(|(latest, tags, tag_events)| {
                let latest_version = match latest.get(name.as_bytes())? {
                    Some(bytes) => layout::decode_version(&bytes, "latest version")?,
                    None => return Err(dataset_not_found(name).into()),
                };
                if version > latest_version {
                    return Err(version_not_found(name, version).into());
                }
                let previous: Option<Tag> =
                    tags.get(key.as_slice())?.map(|bytes| layout::decode_json(&bytes, "tag")).transpose()?;
                if let Some(previous) = &previous
                    && previous.version == version
                {
                    return Ok(previous.clone());
                }
                let updated = Tag { name: tag.to_owned(), version, set_by: author.to_owned(), set_at: at.clone() };
                let event = TagEvent {
                    tag: tag.to_owned(),
                    action: if previous.is_some() { TagAction::Move } else { TagAction::Set },
                    from: previous.map(|previous| previous.version),
                    to: Some(version),
                    author: author.to_owned(),
                    at: at.clone(),
                };
                tags.insert(key.as_slice(), layout::encode_json(&updated, "tag")?)?;
                let sequence = tag_events.generate_id()?;
                tag_events.insert(layout::tag_event_key(name, sequence), layout::encode_json(&event, "tag event")?)?;
                Ok(updated)
            })
            .map_err(from_transaction)?;
        self.flush()?;
        Ok(result)
    }

    /// Deletes `tag` and records who did it; returns the tag as it was.
    pub fn delete_tag(&self, name: &str, tag: &str, author: &str) -> Result<Tag, StoreError> {
        self.latest_version(name)?;
        tag_change_problems(tag, author)?;
        let at = clock::now_rfc3339();
        let key = layout::tag_key(name, tag);
        let removed = (&self.trees.tags, &self.trees.tag_events)
            .transaction(|(tags, tag_events)| {
                let previous: Tag = match tags.get(key.as_slice())? {
                    Some(bytes) => layout::decode_json(&bytes, "tag")?,
                    None => return Err(tag_not_found(name, tag).into()),
                };
                let event = TagEvent {
                    tag: tag.to_owned(),
                    action: TagAction::Delete,
                    from: Some(previous.version),
                    to: None,
                    author: author.to_owned(),
                    at: at.clone(),
                };
                tags.remove(key.as_slice())?;
                let sequence = tag_events.generate_id()?;
                tag_events.insert(layout::tag_event_key(name, sequence), layout::encode_json(&event, "tag event")?)?;
                Ok(previous)
            })
            .map_err(from_transaction)?;
        self.flush()?;
        Ok(removed)
    }

    /// One tag of a dataset.
    pub fn tag(&self, name: &str, tag: &str) -> Result<Tag, StoreError> {
        self.latest_version(name)?;
        match self.trees.tags.get(layout::tag_key(name, tag))? {
            Some(bytes) => layout::decode_json(&bytes, "tag"),
            None => Err(tag_not_found(name, tag)),
        }
    }

    /// The tags of a dataset, sorted by name.
    pub fn tags(&self, name: &str) -> Result<Vec<Tag>, StoreError> {
        self.latest_version(name)?;
        let prefix = layout::dataset_prefix(name);
        let mut tags = Vec::new();
        for entry in self.trees.tags.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let tag: Tag = layout::decode_json(&value, "tag")?;
            if layout::key_suffix_text(&key, prefix.len(), "tag")? != tag.name {
                return Err(StoreError::Storage(format!("tag record {:?} is stored under another name", tag.name)));
            }
            tags.push(tag);
        }
        Ok(tags)
    }

    /// Every set, move and delete of the dataset's tags, newest first.
    pub fn tag_history(&self, name: &str) -> Result<Vec<TagEvent>, StoreError> {
        self.latest_version(name)?;
        let mut events = Vec::new();
        for entry in self.trees.tag_events.scan_prefix(layout::dataset_prefix(name)).rev() {
            let (_, value) = entry?;
            events.push(layout::decode_json(&value, "tag event")?);
        }
        Ok(events)
    }

    /// Every example of a version, exactly as it was, sorted by id.
    pub fn read_version(&self, name: &str, version: u64) -> Result<Vec<StoredExample>, StoreError> {
        self.require_version(name, version)?;
        let mut examples = Vec::new();
        self.visit_example_histories(name, |id, history| {
            if let Some(live) = live_at(history, version)? {
                examples.push(live.into_stored(id)?);
            }
            Ok(())
        })?;
        Ok(examples)
    }

    /// The examples of a version that pass `filter`, sorted by id, one page of them.
    pub fn list_examples(&self, name: &str, version: u64, filter: ExampleFilter) -> Result<ExamplePage, StoreError> {
        let matching: Vec<StoredExample> = self
            .read_version(name, version)?
            .into_iter()
            .filter(|stored| {
                let metadata = &stored.example.metadata;
                filter.metadata.iter().all(|(key, wanted)| compare::metadata_value_matches(metadata.get(key), wanted))
                    && filter.split.as_ref().is_none_or(|split| compare::split_matches(metadata.get("split"), split))
            })
            .collect();
        let total = matching.len();
        let examples = matching.into_iter().skip(filter.offset).take(filter.limit.unwrap_or(usize::MAX)).collect();
        Ok(ExamplePage { total, examples })
    }

    /// One example as it was in `version`.
    pub fn example(&self, name: &str, version: u64, id: &str) -> Result<StoredExample, StoreError> {
        self.require_version(name, version)?;
        if let Some(reason) = validation::example_id_problem(id) {
            return Err(StoreError::Invalid(vec![FieldError { field: "id".into(), reason }]));
        }
        let first = layout::example_key(name, id, 0);
        let last = layout::example_key(name, id, version);
        let not_found = || StoreError::NotFound { what: format!("example `{id}` in `{name}@{version}`") };
        let Some(entry) = self.trees.examples.range(first..=last).next_back() else {
            return Err(not_found());
        };
        let (key, value) = entry?;
        let (_, version_modified) = layout::split_example_key(&key, layout::dataset_prefix(name).len())?;
        match layout::decode_record(&value)? {
            ExampleRecord::Tombstone => Err(not_found()),
            ExampleRecord::Live { version_added, body } => {
                LiveExample { version_added, version_modified, body }.into_stored(id)
            }
        }
    }

    /// Every version of the dataset, newest first, down to version 0.
    pub fn history(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        self.latest_version(name)?;
        let mut versions = Vec::new();
        for entry in self.trees.versions.scan_prefix(layout::dataset_prefix(name)).rev() {
            let (_, value) = entry?;
            versions.push(layout::decode_json(&value, "version record")?);
        }
        Ok(versions)
    }

    /// One version's author, time, note, counts and digest.
    pub fn version_info(&self, name: &str, version: u64) -> Result<VersionInfo, StoreError> {
        match self.trees.versions.get(layout::version_key(name, version))? {
            Some(bytes) => layout::decode_json(&bytes, "version record"),
            None => {
                self.latest_version(name)?;
                Err(version_not_found(name, version))
            }
        }
    }

    /// What changed from version `from` to version `to` (either may be the
    /// larger). An example deleted and re-added with the same content, or
    /// edited and edited back, is not listed.
    pub fn diff(&self, name: &str, from: u64, to: u64) -> Result<Diff, StoreError> {
        self.require_version(name, from)?;
        self.require_version(name, to)?;
        let mut diff = Diff { from, to, added: Vec::new(), removed: Vec::new(), modified: Vec::new() };
        self.visit_example_histories(name, |id, history| {
            match (live_at(history, from)?, live_at(history, to)?) {
                (None, None) => {}
                (None, Some(_)) => diff.added.push(id.to_owned()),
                (Some(_), None) => diff.removed.push(id.to_owned()),
                (Some(before), Some(after)) if before.body != after.body => {
                    let before = layout::decode_json(before.body, "example")?;
                    let after = layout::decode_json(after.body, "example")?;
                    let changed_fields = compare::changed_fields(&before, &after);
                    if !changed_fields.is_empty() {
                        diff.modified.push(ModifiedExample { id: id.to_owned(), changed_fields });
                    }
                }
                (Some(_), Some(_)) => {}
            }
            Ok(())
        })?;
        Ok(diff)
    }

    /// A version as JSON Lines: one example per line, with its id, keys in
    /// canonical (sorted) order. Importing it into an empty dataset gives a
    /// version with the same digest.
    pub fn export_jsonl(&self, name: &str, version: u64) -> Result<String, StoreError> {
        self.require_version(name, version)?;
        let mut text = String::new();
        self.visit_example_histories(name, |id, history| {
            if let Some(live) = live_at(history, version)? {
                let line = digest::canonical_line(id, live.body)
                    .map_err(|error| StoreError::Storage(format!("corrupt example `{id}`: {error}")))?;
                text.push_str(&line);
                text.push('\n');
            }
            Ok(())
        })?;
        Ok(text)
    }
}

/// The stored description of a dataset (its versions live elsewhere).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DatasetRecord {
    name: String,
    description: String,
    kind: DatasetKind,
    /// Absent from records written before datasets had schemas: no schema.
    #[serde(default)]
    schema: DatasetSchema,
    created_at: String,
}

impl DatasetRecord {
    fn into_dataset(self, latest: &VersionInfo) -> Dataset {
        Dataset {
            name: self.name,
            description: self.description,
            kind: self.kind,
            schema: self.schema,
            created_at: self.created_at,
            latest_version: latest.version,
            example_count: latest.example_count,
            digest: latest.digest.clone(),
        }
    }
}

/// A validated change with its canonical body and hash computed, ready for
/// the transaction (which should do as little as possible: sled runs one
/// transaction at a time).
struct PreparedChange {
    id: String,
    action: Action,
}

enum Action {
    Add(PreparedBody),
    Edit(PreparedBody),
    /// Edit if the id exists, add otherwise (import).
    Upsert(PreparedBody),
    Delete,
}

struct PreparedBody {
    body: Vec<u8>,
    hash: ContentHash,
}

/// The state of an example while a commit's changes are applied in order.
#[derive(Clone, Copy)]
enum Pending<'a> {
    Absent,
    Unchanged,
    Written(&'a PreparedBody),
}

/// An example's entry at some version, not yet parsed.
struct LiveExample<'a> {
    version_added: u64,
    version_modified: u64,
    body: &'a [u8],
}

impl LiveExample<'_> {
    fn into_stored(self, id: &str) -> Result<StoredExample, StoreError> {
        let mut example: Example = layout::decode_json(self.body, "example")?;
        example.id = Some(id.to_owned());
        Ok(StoredExample {
            id: id.to_owned(),
            example,
            version_added: self.version_added,
            version_modified: self.version_modified,
        })
    }
}

impl Store {
    /// The transaction of [`Store::commit`] and [`Store::import`].
    fn apply(
        &self,
        name: &str,
        author: &str,
        note: &str,
        changes: &[PreparedChange],
    ) -> Result<VersionInfo, StoreError> {
        let created_at = clock::now_rfc3339();
        let trees = &self.trees;
        // `latest` comes last: sled applies a transaction's trees in order,
        // so the pointer moves only after the version's entries are written.
        let info = (&trees.examples, &trees.current, &trees.versions, &trees.latest)
            .transaction(|(examples, current, versions, latest)| {
                let previous_version = match latest.get(name.as_bytes())? {
                    Some(bytes) => layout::decode_version(&bytes, "latest version")?,
                    None => return Err(dataset_not_found(name).into()),
                };
                let previous: VersionInfo = match versions.get(layout::version_key(name, previous_version))? {
                    Some(bytes) => layout::decode_json(&bytes, "version record")?,
                    None => {
                        return Err(StoreError::Storage(format!("`{name}@{previous_version}` has no record")).into());
                    }
                };
                let version = previous_version
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Storage("the version number overflowed".into()))?;
                let mut digest = Digest::from_hex(&previous.digest)
                    .ok_or_else(|| StoreError::Storage(format!("corrupt digest in `{name}@{previous_version}`")))?;

                // Apply the changes in order to an overlay of the touched examples.
                let mut index_of_id: HashMap<&str, usize> = HashMap::new();
                let mut touched: Vec<(&str, Option<Head>, Pending)> = Vec::new();
                for change in changes {
                    let id = change.id.as_str();
                    let index = match index_of_id.entry(id) {
                        Entry::Occupied(entry) => *entry.get(),
                        Entry::Vacant(entry) => {
                            let head = current
                                .get(layout::current_key(name, id))?
                                .map(|bytes| layout::decode_head(&bytes))
                                .transpose()?;
                            touched.push((id, head, if head.is_some() { Pending::Unchanged } else { Pending::Absent }));
                            *entry.insert(touched.len() - 1)
                        }
                    };
                    let Some((_, _, pending)) = touched.get_mut(index) else {
                        return Err(StoreError::Storage("commit overlay lost an example".into()).into());
                    };
                    let exists = !matches!(pending, Pending::Absent);
                    *pending = match (&change.action, exists) {
                        (Action::Add(_), true) => {
                            return Err(StoreError::Conflict(format!(
                                "example `{id}` already exists in dataset `{name}`"
                            ))
                            .into());
                        }
                        (Action::Add(body) | Action::Upsert(body), false)
                        | (Action::Edit(body) | Action::Upsert(body), true) => Pending::Written(body),
                        (Action::Edit(_) | Action::Delete, false) => {
                            return Err(StoreError::NotFound {
                                what: format!("example `{id}` in the latest version of dataset `{name}`"),
                            }
                            .into());
                        }
                        (Action::Delete, true) => Pending::Absent,
                    };
                }

                // Write one entry per example whose content changed, and carry
                // the count and digest forward.
                let (mut added, mut modified, mut removed) = (0u64, 0u64, 0u64);
                let mut example_count = previous.example_count;
                for (id, before, after) in &touched {
                    let example_key = layout::example_key(name, id, version);
                    let current_key = layout::current_key(name, id);
                    match (before, after) {
                        (None, Pending::Written(body)) => {
                            added += 1;
                            example_count += 1;
                            digest.add(&body.hash);
                            examples.insert(example_key, layout::encode_live_record(version, &body.body))?;
                            let head = Head { version_added: version, version_modified: version, hash: body.hash };
                            current.insert(current_key, layout::encode_head(&head))?;
                        }
                        (Some(head), Pending::Absent) => {
                            removed += 1;
                            example_count = example_count.checked_sub(1).ok_or_else(|| {
                                StoreError::Storage(format!("example count of `{name}` fell below zero"))
                            })?;
                            digest.subtract(&head.hash);
                            examples.insert(example_key, layout::tombstone_record())?;
                            current.remove(current_key)?;
                        }
                        (Some(head), Pending::Written(body)) if body.hash != head.hash => {
                            modified += 1;
                            digest.subtract(&head.hash);
                            digest.add(&body.hash);
                            examples.insert(example_key, layout::encode_live_record(head.version_added, &body.body))?;
                            let head =
                                Head { version_added: head.version_added, version_modified: version, hash: body.hash };
                            current.insert(current_key, layout::encode_head(&head))?;
                        }
                        _ => {}
                    }
                }
                let info = VersionInfo {
                    version,
                    author: author.to_owned(),
                    created_at: created_at.clone(),
                    note: note.to_owned(),
                    example_count,
                    added,
                    modified,
                    removed,
                    digest: digest.to_hex(),
                };
                versions.insert(layout::version_key(name, version), layout::encode_json(&info, "version record")?)?;
                latest.insert(name.as_bytes(), &layout::encode_version(version)[..])?;
                Ok(info)
            })
            .map_err(from_transaction)?;
        self.flush()?;
        Ok(info)
    }

    /// The stored record of a dataset known to exist.
    fn dataset_record(&self, name: &str) -> Result<DatasetRecord, StoreError> {
        match self.trees.datasets.get(name.as_bytes())? {
            Some(bytes) => layout::decode_json(&bytes, "dataset record"),
            None => Err(StoreError::Storage(format!("dataset `{name}` has versions but no record"))),
        }
    }

    /// The dataset's schemas, compiled for one commit or import. A dataset's
    /// schemas never change, so reading them outside the commit's
    /// transaction is safe.
    fn schema_validators(&self, name: &str) -> Result<SchemaValidators, StoreError> {
        let record = self.dataset_record(name)?;
        SchemaValidators::compile(&record.schema)
            .map_err(|error| StoreError::Storage(format!("the stored schema of dataset `{name}` {error}")))
    }

    /// The dataset's latest version, or `NotFound` if there is no such dataset.
    fn latest_version(&self, name: &str) -> Result<u64, StoreError> {
        // Names are checked first so that no lookup ever sees a zero byte
        // that could alias another dataset's keys.
        if validation::dataset_name_problem(name).is_some() {
            return Err(dataset_not_found(name));
        }
        match self.trees.latest.get(name.as_bytes())? {
            Some(bytes) => layout::decode_version(&bytes, "latest version"),
            None => Err(dataset_not_found(name)),
        }
    }

    fn require_version(&self, name: &str, version: u64) -> Result<(), StoreError> {
        if version > self.latest_version(name)? {
            return Err(version_not_found(name, version));
        }
        Ok(())
    }

    /// Calls `visit` once per example id ever stored in the dataset, in id
    /// order, with that example's entries `(version, record)` in version order.
    fn visit_example_histories(
        &self,
        name: &str,
        mut visit: impl FnMut(&str, &[(u64, sled::IVec)]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let prefix = layout::dataset_prefix(name);
        let mut current_id = String::new();
        let mut history: Vec<(u64, sled::IVec)> = Vec::new();
        for entry in self.trees.examples.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let (id, version) = layout::split_example_key(&key, prefix.len())?;
            if id != current_id {
                if !history.is_empty() {
                    visit(&current_id, &history)?;
                    history.clear();
                }
                current_id = id.to_owned();
            }
            history.push((version, value));
        }
        if !history.is_empty() {
            visit(&current_id, &history)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The example an id's history shows at `version`, if it was live then.
fn live_at(history: &[(u64, sled::IVec)], version: u64) -> Result<Option<LiveExample<'_>>, StoreError> {
    let Some((version_modified, record)) = history.iter().rev().find(|(entry_version, _)| *entry_version <= version)
    else {
        return Ok(None);
    };
    Ok(match layout::decode_record(record)? {
        ExampleRecord::Tombstone => None,
        ExampleRecord::Live { version_added, body } => {
            Some(LiveExample { version_added, version_modified: *version_modified, body })
        }
    })
}

fn prepare_change(change: Change, validators: &SchemaValidators) -> Result<PreparedChange, Vec<FieldError>> {
    match change {
        Change::Add(example) => {
            let id = example.id.clone().unwrap_or_else(clock::new_example_id);
            let body = prepare_body(&id, &example, validators)?;
            Ok(PreparedChange { id, action: Action::Add(body) })
        }
        Change::Edit { id, example } => {
            if let Some(inner) = &example.id
                && *inner != id
            {
                return Err(vec![FieldError {
                    field: "id".into(),
                    reason: format!("the example's id {inner:?} differs from the edited id {id:?}"),
                }]);
            }
            let body = prepare_body(&id, &example, validators)?;
            Ok(PreparedChange { id, action: Action::Edit(body) })
        }
        Change::Delete { id } => match validation::example_id_problem(&id) {
            Some(reason) => Err(vec![FieldError { field: "id".into(), reason }]),
            None => Ok(PreparedChange { id, action: Action::Delete }),
        },
    }
}

/// Validates an example (built-in rules, then the dataset's schemas) and
/// computes its canonical body and hash.
fn prepare_body(id: &str, example: &Example, validators: &SchemaValidators) -> Result<PreparedBody, Vec<FieldError>> {
    let mut errors = example.validate().err().unwrap_or_default();
    if let Some(reason) = validation::example_id_problem(id)
        && !errors.iter().any(|error| error.field == "id")
    {
        errors.push(FieldError { field: "id".into(), reason });
    }
    validators.check(example, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let body = digest::canonical_body(example)
        .map_err(|error| vec![FieldError { field: "$".into(), reason: format!("cannot be encoded: {error}") }])?;
    let hash = digest::content_hash(id, &body);
    Ok(PreparedBody { body, hash })
}

fn commit_text_problems(author: &str, note: &str, errors: &mut Vec<FieldError>) {
    validation::text_problems("author", author, true, AUTHOR_BYTES_MAX, errors);
    validation::text_problems("note", note, false, NOTE_BYTES_MAX, errors);
}

fn tag_change_problems(tag: &str, author: &str) -> Result<(), StoreError> {
    let mut errors = Vec::new();
    if let Some(reason) = validation::tag_name_problem(tag) {
        errors.push(FieldError { field: "tag".into(), reason });
    }
    validation::text_problems("author", author, true, AUTHOR_BYTES_MAX, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(StoreError::Invalid(errors)) }
}

/// Keeps the first [`FIELD_ERRORS_MAX`] errors and counts the rest, so a
/// wholly wrong 50k-line import gives a readable answer.
fn cap_field_errors(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    if errors.len() > FIELD_ERRORS_MAX {
        let more = errors.len() - FIELD_ERRORS_MAX;
        errors.truncate(FIELD_ERRORS_MAX);
        errors.push(FieldError { field: "$".into(), reason: format!("{more} more errors not listed") });
    }
    errors
}

fn too_many_changes(count: usize) -> StoreError {
    StoreError::Invalid(vec![FieldError {
        field: "changes".into(),
        reason: format!("{count} changes; one commit holds at most {CHANGES_PER_COMMIT_MAX}"),
    }])
}

fn dataset_not_found(name: &str) -> StoreError {
    StoreError::NotFound { what: format!("dataset `{name}`") }
}

fn version_not_found(name: &str, version: u64) -> StoreError {
    StoreError::NotFound { what: format!("version {version} of dataset `{name}`") }
}

fn tag_not_found(name: &str, tag: &str) -> StoreError {
    StoreError::NotFound { what: format!("tag `{tag}` of dataset `{name}`") }
}

fn describe_field_errors(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn from_transaction(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::Storage(error.to_string()),
    }
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> StoreError {
        StoreError::Storage(error.to_string())
    }
}

/// Lets `?` abort a sled transaction with a store error.
impl From<StoreError> for ConflictableTransactionError<StoreError> {
    fn from(error: StoreError) -> Self {
        ConflictableTransactionError::Abort(error)
    }
}
