//! The compact binary record of one trace in the `traces` tree: everything
//! but its conversation (times, name, latency, error, tokens, tags,
//! metadata, feedback) and where its body is. A scan decodes a record with a
//! handful of small allocations, several times faster than parsing JSON.
//!
//! ```text
//! u8 version (1)
//! u64 body block, u32 offset, u32 length           where the body is
//! u8 present: END NAME LATENCY ERROR TOKENS         which optional fields follow
//! text start_time, [text end_time], [text name], [u64 latency_ms],
//! [text error], [u64 total_tokens]
//! u32 tag count, text per tag
//! bytes metadata JSON (empty when there is none)
//! u32 feedback count, per entry: text key, u8 present (SCORE VALUE COMMENT),
//!     [f64 score], [bytes value JSON], [text comment]
//! ```
//!
//! Integers are little-endian; `text` and `bytes` are a u32 length and the
//! bytes. Feedback lives only here (the body is written once and never
//! changes).
//!
//! Records are stored in **segments**, many to a sled value, because sled
//! costs about as much per entry visited as decoding a record does: a
//! segment is `u8 version (1)` then, per trace in (start, id) order,
//! `u32 entry length, text id, i64 start_ms, record`. An id is found by
//! skipping from entry to entry without decoding records.

use super::super::StoreError;
use crate::model::{Inputs, RunOutputs};
use crate::traces::{Feedback, Trace};
use serde_json::Map;

const VERSION: u8 = 1;
const END: u8 = 1;
const NAME: u8 = 2;
const LATENCY: u8 = 4;
const ERROR: u8 = 8;
const TOKENS: u8 = 16;
const SCORE: u8 = 1;
const VALUE: u8 = 2;
const COMMENT: u8 = 4;

const SEGMENT_VERSION: u8 = 1;

/// One trace in a segment: its id, start, and undecoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) struct Entry<'a> {
    pub id: &'a str,
    pub start_ms: i64,
    pub record: &'a [u8],
}

/// Encodes entries, which must be in (start, id) order, as one segment.
pub(in crate::store) fn encode_segment(entries: &[Entry<'_>]) -> Vec<u8> {
    let size: usize = entries.iter().map(|entry| 16 + entry.id.len() + entry.record.len()).sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(SEGMENT_VERSION);
    for entry in entries {
        put_count(&mut out, 4 + entry.id.len() + 8 + entry.record.len());
        put_text(&mut out, entry.id);
        out.extend_from_slice(&entry.start_ms.to_le_bytes());
        out.extend_from_slice(entry.record);
    }
    out
}

/// The entries of a segment, borrowing from its bytes.
pub(in crate::store) fn decode_segment(bytes: &[u8]) -> Result<Vec<Entry<'_>>, StoreError> {
    let mut reader = Reader { bytes, position: 0 };
    if reader.byte()? != SEGMENT_VERSION {
        return Err(corrupt());
    }
    let mut entries = Vec::new();
    while reader.position < bytes.len() {
        let mut entry = Reader { bytes: reader.bytes()?, position: 0 };
        let id = std::str::from_utf8(entry.bytes()?).map_err(|_| corrupt())?;
        let start_ms = i64::from_le_bytes(entry.array()?);
        entries.push(Entry { id, start_ms, record: &entry.bytes[entry.position..] });
    }
    Ok(entries)
}

/// Where a trace's body is: a slice of one block of `trace_bodies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) struct BodyPointer {
    pub block: u64,
    pub offset: u32,
    pub length: u32,
}

/// Encodes `trace` (its conversation is not read) with `feedback` in place
/// of the trace's own.
pub(in crate::store) fn encode(pointer: BodyPointer, trace: &Trace, feedback: &[Feedback]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + trace.start_time.len() + trace.tags.len() * 16 + feedback.len() * 32);
    out.push(VERSION);
    out.extend_from_slice(&pointer.block.to_le_bytes());
    out.extend_from_slice(&pointer.offset.to_le_bytes());
    out.extend_from_slice(&pointer.length.to_le_bytes());
    let mut present = 0;
    for (flag, is_present) in [
        (END, trace.end_time.is_some()),
        (NAME, trace.name.is_some()),
        (LATENCY, trace.latency_ms.is_some()),
        (ERROR, trace.error.is_some()),
        (TOKENS, trace.total_tokens.is_some()),
    ] {
        if is_present {
            present |= flag;
        }
    }
    out.push(present);
    put_text(&mut out, &trace.start_time);
    for text in [&trace.end_time, &trace.name].into_iter().flatten() {
        put_text(&mut out, text);
    }
    if let Some(latency) = trace.latency_ms {
        out.extend_from_slice(&latency.to_le_bytes());
    }
    if let Some(error) = &trace.error {
        put_text(&mut out, error);
    }
    if let Some(tokens) = trace.total_tokens {
        out.extend_from_slice(&tokens.to_le_bytes());
    }
    put_count(&mut out, trace.tags.len());
    for tag in &trace.tags {
        put_text(&mut out, tag);
    }
    if trace.metadata.is_empty() {
        put_count(&mut out, 0);
    } else {
        // A map of JSON values always serializes.
        put_bytes(&mut out, &serde_json::to_vec(&trace.metadata).unwrap_or_default());
    }
    put_count(&mut out, feedback.len());
    for entry in feedback {
        put_text(&mut out, &entry.key);
        let mut present = 0;
        for (flag, is_present) in
            [(SCORE, entry.score.is_some()), (VALUE, entry.value.is_some()), (COMMENT, entry.comment.is_some())]
        {
            if is_present {
                present |= flag;
            }
        }
        out.push(present);
        if let Some(score) = entry.score {
            out.extend_from_slice(&score.to_le_bytes());
        }
        if let Some(value) = &entry.value {
            put_bytes(&mut out, &serde_json::to_vec(value).unwrap_or_default());
        }
        if let Some(comment) = &entry.comment {
            put_text(&mut out, comment);
        }
    }
    out
}

/// Decodes a record into the trace without its conversation (empty
/// `inputs.messages` and `outputs`) and where its body is.
pub(in crate::store) fn decode(project: &str, id: &str, bytes: &[u8]) -> Result<(BodyPointer, Trace), StoreError> {
    let mut reader = Reader { bytes, position: 0 };
    if reader.byte()? != VERSION {
        return Err(corrupt());
    }
    let pointer = BodyPointer { block: reader.u64()?, offset: reader.u32()?, length: reader.u32()? };
    let present = reader.byte()?;
    let start_time = reader.text()?;
    let end_time = if present & END != 0 { Some(reader.text()?) } else { None };
    let name = if present & NAME != 0 { Some(reader.text()?) } else { None };
    let latency_ms = if present & LATENCY != 0 { Some(reader.u64()?) } else { None };
    let error = if present & ERROR != 0 { Some(reader.text()?) } else { None };
    let total_tokens = if present & TOKENS != 0 { Some(reader.u64()?) } else { None };
    let tag_count = reader.count()?;
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        tags.push(reader.text()?);
    }
    let metadata_bytes = reader.bytes()?;
    let metadata = if metadata_bytes.is_empty() {
        Map::new()
    } else {
        serde_json::from_slice(metadata_bytes).map_err(|_| corrupt())?
    };
    let feedback_count = reader.count()?;
    let mut feedback = Vec::with_capacity(feedback_count);
    for _ in 0..feedback_count {
        let key = reader.text()?;
        let present = reader.byte()?;
        let score = if present & SCORE != 0 { Some(f64::from_le_bytes(reader.array()?)) } else { None };
        let value = if present & VALUE != 0 {
            Some(serde_json::from_slice(reader.bytes()?).map_err(|_| corrupt())?)
        } else {
            None
        };
        let comment = if present & COMMENT != 0 { Some(reader.text()?) } else { None };
        feedback.push(Feedback { key, score, value, comment });
    }
    if reader.position != bytes.len() {
        return Err(corrupt());
    }
    let trace = Trace {
        id: id.to_owned(),
        project: project.to_owned(),
        name,
        start_time,
        end_time,
        inputs: Inputs { messages: Vec::new(), tools: Vec::new(), context: None, extra: Map::new() },
        outputs: RunOutputs::default(),
        latency_ms,
        error,
        total_tokens,
        tags,
        metadata,
        feedback,
    };
    Ok((pointer, trace))
}

/// Only where the body is, without decoding the rest.
pub(in crate::store) fn pointer(bytes: &[u8]) -> Result<BodyPointer, StoreError> {
    let mut reader = Reader { bytes, position: 0 };
    if reader.byte()? != VERSION {
        return Err(corrupt());
    }
    Ok(BodyPointer { block: reader.u64()?, offset: reader.u32()?, length: reader.u32()? })
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    // Every count is bounded far below u32::MAX by the limits on a trace.
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_count(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], StoreError> {
        let end = self.position.checked_add(length).ok_or_else(corrupt)?;
        let slice = self.bytes.get(self.position..end).ok_or_else(corrupt)?;
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn count(&mut self) -> Result<usize, StoreError> {
        let count = usize::try_from(self.u32()?).map_err(|_| corrupt())?;
        // A count cannot exceed the bytes left: refuse garbage before allocating.
        if count > self.bytes.len() - self.position {
            return Err(corrupt());
        }
        Ok(count)
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let length = self.count()?;
        self.take(length)
    }

    fn text(&mut self) -> Result<String, StoreError> {
        std::str::from_utf8(self.bytes()?).map(str::to_owned).map_err(|_| corrupt())
    }
}

fn corrupt() -> StoreError {
    StoreError::Storage("corrupt trace record".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let trace: Trace = serde_json::from_value(json!({
            "id": "t-1", "project": "triage", "name": "after-hours", "start_time": "2025-06-01T09:30:00+02:00",
            "end_time": "2025-06-01T09:30:02Z", "latency_ms": 2000, "error": "timeout", "total_tokens": 812,
            "tags": ["voice", "prod"], "metadata": {"persona": "worried_parent", "turns": 3},
            "inputs": {"messages": []},
            "feedback": [{"key": "user_score", "score": 2, "comment": "slow"}, {"key": "label", "value": {"a": [1]}}]
        }))
        .expect("a trace");
        let pointer = BodyPointer { block: 7, offset: 1_024, length: 300 };
        let bytes = encode(pointer, &trace, &trace.feedback);
        assert_eq!(decode("triage", "t-1", &bytes).expect("decodes"), (pointer, trace.clone()));
        assert_eq!(super::pointer(&bytes).expect("pointer"), pointer);

        let bare: Trace = serde_json::from_value(json!({
            "id": "t-2", "project": "triage", "start_time": "2025-06-01T09:30:00Z", "inputs": {"messages": []}
        }))
        .expect("a trace");
        let bytes = encode(pointer, &bare, &[]);
        assert_eq!(decode("triage", "t-2", &bytes).expect("decodes").1, bare);

        for cut in 0..bytes.len() {
            assert!(decode("triage", "t-2", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode("triage", "t-2", &longer).is_err());
        let mut huge_count = bytes;
        huge_count[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode("triage", "t-2", &huge_count).is_err());
    }

    #[test]
    fn segments_round_trip_and_refuse_garbage() {
        let entries = [
            Entry { id: "a", start_ms: -5, record: b"first" },
            Entry { id: "bb", start_ms: 7, record: b"" },
            Entry { id: "c", start_ms: 7, record: b"third record" },
        ];
        let bytes = encode_segment(&entries);
        assert_eq!(decode_segment(&bytes).expect("decodes"), entries);
        assert_eq!(decode_segment(&encode_segment(&[])).expect("empty"), []);
        for cut in 1..bytes.len() {
            let decoded = decode_segment(&bytes[..cut]);
            assert!(decoded.is_err() || decoded.is_ok_and(|found| found.len() < 3), "cut at {cut}");
        }
        assert!(decode_segment(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_segment(b"").is_err());
        assert!(decode_segment(b"\x02").is_err());
    }
}
