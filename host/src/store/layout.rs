//! The sled trees, their keys and their records.
//!
//! Keys are built so that sled's byte order is the order the store reads in:
//! a dataset's entries share the prefix `name \0`, examples of one id sort
//! together, and versions are big-endian so they sort numerically. Dataset
//! names, tag names and example ids never contain a zero byte (validation
//! refuses it), which keeps every prefix unambiguous.
//!
//! Every decoder returns `StoreError::Storage` on a malformed record: data
//! read from disk is never trusted to be well formed.

use super::StoreError;
use super::digest::{CONTENT_HASH_BYTES, ContentHash};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Key in the default tree naming the layout this code writes.
pub(super) const LAYOUT_KEY: &[u8] = b"assay.store.layout";
/// Bumped when a key or record format changes, so old code refuses new data.
pub(super) const LAYOUT_VERSION: &[u8] = b"1";

/// Separates the parts of a composite key.
const SEPARATOR: u8 = 0;
const VERSION_BYTES: usize = 8;
const RECORD_LIVE: u8 = 1;
const RECORD_TOMBSTONE: u8 = 0;
const HEAD_BYTES: usize = VERSION_BYTES * 2 + CONTENT_HASH_BYTES;

/// The trees of the store. Each one is cheap to clone.
#[derive(Clone)]
pub(super) struct Trees {
    /// `name` → `DatasetRecord` JSON.
    pub datasets: sled::Tree,
    /// `name` → latest version (u64 BE). Read and written inside every commit,
    /// so two commits can never claim the same version number.
    pub latest: sled::Tree,
    /// `name \0 version` → `VersionInfo` JSON, one per version including 0.
    pub versions: sled::Tree,
    /// `name \0 id \0 version` → live example record or tombstone, written
    /// only for the versions where that example changed.
    pub examples: sled::Tree,
    /// `name \0 id` → `Head` of the example in the latest version; absent once
    /// deleted. Point lookups here keep a commit's cost independent of the
    /// dataset's size (sled transactions cannot scan).
    pub current: sled::Tree,
    /// `name \0 tag` → `Tag` JSON.
    pub tags: sled::Tree,
    /// `name \0 sequence` → `TagEvent` JSON, the audit trail of tag changes.
    pub tag_events: sled::Tree,
    /// experiment id → `Experiment` JSON.
    pub experiments: sled::Tree,
    /// `experiment id \0 index` → `ExampleResultRecord` JSON, in dataset order.
    pub experiment_results: sled::Tree,
    /// sha256 of a bearer token → `TokenInfo` JSON. Never the token itself.
    pub tokens: sled::Tree,
    /// `project \0 start time \0 trace id` → the trace's compact record:
    /// everything but its conversation, and where its body is. The start
    /// time is milliseconds as a big-endian i64 with its sign bit flipped, so
    /// a project's traces sort by time (see `traces.rs`, `traces/record.rs`).
    pub traces: sled::Tree,
    /// block id (u64 BE) → the full JSON bodies of traces ingested together,
    /// concatenated (at most about 1 MiB a block).
    pub trace_bodies: sled::Tree,
    /// block id → how many stored traces still point into the block (u32 BE).
    pub trace_body_refs: sled::Tree,
    /// `project \0 trace id` → the start-time part of its key: idempotent
    /// ingest and lookup by id.
    pub trace_ids: sled::Tree,
    /// `project` → `ProjectRecord` JSON: trace count and retention.
    pub trace_projects: sled::Tree,
    /// `project \0 trace id` → feedback received before its trace.
    pub pending_feedback: sled::Tree,
    /// OTLP trace id → spans received before their root span (opaque bytes).
    pub pending_spans: sled::Tree,
    /// `grader name \0 version` → `GraderVersion` JSON (see `graders.rs`).
    pub grader_versions: sled::Tree,
    /// `sha256:digest` → the component's bytes, shared by versions with equal bytes.
    pub grader_blobs: sled::Tree,
    /// grader name → `Alias` JSON: the version served for the name.
    pub grader_aliases: sled::Tree,
    /// `grader name \0 sequence` → `AliasEvent` JSON, every move of an alias.
    pub grader_alias_events: sled::Tree,
    /// shadow report id → report JSON.
    pub shadow_reports: sled::Tree,
    /// queue name → `Queue` JSON (see `queues.rs`).
    pub queues: sled::Tree,
    /// `queue \0 sequence` (u64 BE) → `QueueItem` JSON, in queue order.
    pub queue_items: sled::Tree,
    /// `queue \0 project \0 trace id` → item id: a trace is queued once per queue.
    pub queue_traces: sled::Tree,
    /// queue name → the last item sequence number (u64 BE).
    pub queue_sequences: sled::Tree,
    /// `queue \0 sequence` → `QueueEvent` JSON: accepts, rejects (the discard log), skips.
    pub queue_events: sled::Tree,
    /// rule name → `MiningRule` JSON.
    pub mining_rules: sled::Tree,
}

impl Trees {
    pub(super) fn open(db: &sled::Db) -> sled::Result<Trees> {
        Ok(Trees {
            datasets: db.open_tree("datasets")?,
            latest: db.open_tree("latest")?,
            versions: db.open_tree("versions")?,
            examples: db.open_tree("examples")?,
            current: db.open_tree("current")?,
            tags: db.open_tree("tags")?,
            tag_events: db.open_tree("tag_events")?,
            experiments: db.open_tree("experiments")?,
            experiment_results: db.open_tree("experiment_results")?,
            tokens: db.open_tree("tokens")?,
            traces: db.open_tree("traces")?,
            trace_bodies: db.open_tree("trace_bodies")?,
            trace_body_refs: db.open_tree("trace_body_refs")?,
            trace_ids: db.open_tree("trace_ids")?,
            trace_projects: db.open_tree("trace_projects")?,
            pending_feedback: db.open_tree("pending_feedback")?,
            pending_spans: db.open_tree("pending_spans")?,
            grader_versions: db.open_tree("grader_versions")?,
            grader_blobs: db.open_tree("grader_blobs")?,
            grader_aliases: db.open_tree("grader_aliases")?,
            grader_alias_events: db.open_tree("grader_alias_events")?,
            shadow_reports: db.open_tree("shadow_reports")?,
            queues: db.open_tree("queues")?,
            queue_items: db.open_tree("queue_items")?,
            queue_traces: db.open_tree("queue_traces")?,
            queue_sequences: db.open_tree("queue_sequences")?,
            queue_events: db.open_tree("queue_events")?,
            mining_rules: db.open_tree("mining_rules")?,
        })
    }
}

/// The state of one example in the latest version, kept in `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub version_added: u64,
    pub version_modified: u64,
    pub hash: ContentHash,
}

/// One entry of the `examples` tree.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExampleRecord<'a> {
    /// The example as of this version; `body` is its canonical JSON without the id.
    Live { version_added: u64, body: &'a [u8] },
    /// The example was deleted in this version.
    Tombstone,
}

/// `name \0`: the prefix of everything a dataset owns in a tree.
pub(super) fn dataset_prefix(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    key.extend_from_slice(name.as_bytes());
    key.push(SEPARATOR);
    key
}

/// `name \0 id \0`: the prefix of every stored version of one example.
pub(super) fn example_id_prefix(name: &str, id: &str) -> Vec<u8> {
    let mut key = dataset_prefix(name);
    key.extend_from_slice(id.as_bytes());
    key.push(SEPARATOR);
    key
}

pub(super) fn example_key(name: &str, id: &str, version: u64) -> Vec<u8> {
    let mut key = example_id_prefix(name, id);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub(super) fn current_key(name: &str, id: &str) -> Vec<u8> {
    let mut key = dataset_prefix(name);
    key.extend_from_slice(id.as_bytes());
    key
}

pub(super) fn version_key(name: &str, version: u64) -> Vec<u8> {
    let mut key = dataset_prefix(name);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub(super) fn tag_key(name: &str, tag: &str) -> Vec<u8> {
    let mut key = dataset_prefix(name);
    key.extend_from_slice(tag.as_bytes());
    key
}

pub(super) fn tag_event_key(name: &str, sequence: u64) -> Vec<u8> {
    let mut key = dataset_prefix(name);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// `id \0 index`: one result of an experiment (ids hold no zero byte).
pub(super) fn experiment_result_key(id: &str, index: u64) -> Vec<u8> {
    let mut key = dataset_prefix(id);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Splits an `examples` key, whose dataset prefix is `prefix_length` bytes
/// long, into the example id and the version.
pub(super) fn split_example_key(key: &[u8], prefix_length: usize) -> Result<(&str, u64), StoreError> {
    let corrupt = || StoreError::Storage(format!("corrupt example key {}", hex::encode(key)));
    let rest = key.get(prefix_length..).ok_or_else(corrupt)?;
    let split = rest.len().checked_sub(VERSION_BYTES + 1).ok_or_else(corrupt)?;
    let (id_and_separator, version) = rest.split_at(split + 1);
    let (id, separator) = id_and_separator.split_at(split);
    if separator != [SEPARATOR] || id.is_empty() {
        return Err(corrupt());
    }
    let id = std::str::from_utf8(id).map_err(|_| corrupt())?;
    Ok((id, decode_version(version, "example key")?))
}

/// The part of a key after its dataset prefix, as text (tag names).
pub(super) fn key_suffix_text(key: &[u8], prefix_length: usize, what: &str) -> Result<String, StoreError> {
    key.get(prefix_length..)
        .and_then(|suffix| std::str::from_utf8(suffix).ok())
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Storage(format!("corrupt {what} key {}", hex::encode(key))))
}

pub(super) fn encode_live_record(version_added: u64, body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(1 + VERSION_BYTES + body.len());
    record.push(RECORD_LIVE);
    record.extend_from_slice(&version_added.to_be_bytes());
    record.extend_from_slice(body);
    record
}

pub(super) fn tombstone_record() -> Vec<u8> {
    vec![RECORD_TOMBSTONE]
}

pub(super) fn decode_record(bytes: &[u8]) -> Result<ExampleRecord<'_>, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_TOMBSTONE, [])) => Ok(ExampleRecord::Tombstone),
        Some((&RECORD_LIVE, rest)) if rest.len() > VERSION_BYTES => {
            let (version_added, body) = rest.split_at(VERSION_BYTES);
            Ok(ExampleRecord::Live { version_added: decode_version(version_added, "example record")?, body })
        }
        _ => Err(StoreError::Storage("corrupt example record".into())),
    }
}

pub(super) fn encode_head(head: &Head) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEAD_BYTES);
    bytes.extend_from_slice(&head.version_added.to_be_bytes());
    bytes.extend_from_slice(&head.version_modified.to_be_bytes());
    bytes.extend_from_slice(&head.hash);
    bytes
}

pub(super) fn decode_head(bytes: &[u8]) -> Result<Head, StoreError> {
    if bytes.len() != HEAD_BYTES {
        return Err(StoreError::Storage("corrupt current-example record".into()));
    }
    let (version_added, rest) = bytes.split_at(VERSION_BYTES);
    let (version_modified, hash) = rest.split_at(VERSION_BYTES);
    let hash: ContentHash =
        hash.try_into().map_err(|_| StoreError::Storage("corrupt current-example record".into()))?;
    Ok(Head {
        version_added: decode_version(version_added, "current-example record")?,
        version_modified: decode_version(version_modified, "current-example record")?,
        hash,
    })
}

pub(super) fn encode_version(version: u64) -> [u8; VERSION_BYTES] {
    version.to_be_bytes()
}

pub(super) fn decode_version(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let bytes: [u8; VERSION_BYTES] =
        bytes.try_into().map_err(|_| StoreError::Storage(format!("corrupt version number in {what}")))?;
    Ok(u64::from_be_bytes(bytes))
}

pub(super) fn encode_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Storage(format!("cannot encode {what}: {error}")))
}

pub(super) fn decode_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Storage(format!("corrupt {what}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_keys_split_back() {
        let key = example_key("golden", "id-7", 42);
        let prefix = dataset_prefix("golden");
        assert_eq!(split_example_key(&key, prefix.len()).expect("well formed"), ("id-7", 42));
        assert!(split_example_key(b"golden\0short", prefix.len()).is_err());
        assert!(split_example_key(b"golden\0", prefix.len()).is_err());
    }

    #[test]
    fn example_keys_sort_by_id_then_version() {
        let mut keys =
            [example_key("d", "ab", 1), example_key("d", "a", 300), example_key("d", "a", 2), example_key("d", "b", 0)];
        keys.sort();
        let prefix = dataset_prefix("d").len();
        let order: Vec<(&str, u64)> =
            keys.iter().map(|key| split_example_key(key, prefix).expect("well formed")).collect();
        assert_eq!(order, vec![("a", 2), ("a", 300), ("ab", 1), ("b", 0)]);
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let live = encode_live_record(3, b"{}");
        assert_eq!(decode_record(&live).expect("live"), ExampleRecord::Live { version_added: 3, body: b"{}" });
        assert_eq!(decode_record(&tombstone_record()).expect("tombstone"), ExampleRecord::Tombstone);
        for garbage in [&b""[..], b"\x07", b"\x01\x00\x00", b"\x00\x01"] {
            assert!(matches!(decode_record(garbage), Err(StoreError::Storage(_))), "{garbage:?}");
        }
        let head = Head { version_added: 1, version_modified: 9, hash: [7; CONTENT_HASH_BYTES] };
        assert_eq!(decode_head(&encode_head(&head)).expect("head"), head);
        assert!(decode_head(b"short").is_err());
    }
}
