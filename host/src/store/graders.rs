//! The grader registry's records: published versions (immutable, identified by
//! the sha256 of their component), the components' bytes, aliases (`name` →
//! the version served for it) with their history, and shadow reports.
//!
//! The store keeps what was decided; checking a component (is it a grader,
//! does it pass its bundled tests) is the caller's job before it publishes.
//! Every change is one transaction, flushed before it is acknowledged.

use super::layout;
use super::{Store, StoreError};
use crate::model::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

/// Longest grader name.
pub const GRADER_NAME_BYTES_MAX: usize = 64;
/// Longest version text.
pub const GRADER_VERSION_BYTES_MAX: usize = 64;

/// One published version of a grader. Never rewritten, except to record its
/// retirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraderVersion {
    pub name: String,
    /// Semantic version, `1.3.0`.
    pub version: String,
    /// `sha256:` and the component digest in lowercase hex.
    pub digest: String,
    pub size_bytes: u64,
    pub description: String,
    pub score_keys: Vec<String>,
    /// Host capabilities the grader asked for in its metadata.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How many bundled test cases it passed at publish.
    #[serde(default)]
    pub tests_passed: u64,
    pub published_by: String,
    pub published_at: String,
    /// Set once retired: kept for provenance, refused for new evaluations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    pub by: String,
    pub at: String,
}

/// What a name is served as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    pub version: String,
    pub moved_by: String,
    pub moved_at: String,
}

/// Why an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasAction {
    /// The first version published under a name becomes its alias target.
    Publish,
    Promote,
    Rollback,
}

/// One move of an alias: who, when, from what to what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEvent {
    pub name: String,
    pub action: AliasAction,
    pub from: Option<String>,
    pub to: String,
    pub by: String,
    pub at: String,
}

/// The outcome of a publish: new, or the very same bytes published again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    pub version: GraderVersion,
    /// False when this name, version and digest were already published.
    pub created: bool,
    /// Set when the publish pointed the (new) name's alias at this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<AliasEvent>,
}

/// A grader name and what it serves, for listings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraderSummary {
    pub name: String,
    pub alias: Option<Alias>,
    /// Every published version, oldest first by semantic version.
    pub versions: Vec<GraderVersion>,
}

impl Store {
    /// Records a checked grader version and its bytes. The same name and
    /// version with the same digest again is accepted and changes nothing;
    /// with another digest it is a `Conflict`: a published version is
    /// immutable. The first version of a name becomes its alias target.
    pub fn publish_grader(&self, record: GraderVersion, component: &[u8]) -> Result<Published, StoreError> {
        let mut errors = Vec::new();
        if let Some(reason) = grader_name_problem(&record.name) {
            errors.push(FieldError { field: "name".into(), reason });
        }
        if let Some(reason) = version_problem(&record.version) {
            errors.push(FieldError { field: "version".into(), reason });
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        let key = version_key(&record.name, &record.version);
        let encoded = layout::encode_json(&record, "grader version")?;
        let first_alias = Alias {
            name: record.name.clone(),
            version: record.version.clone(),
            moved_by: record.published_by.clone(),
            moved_at: record.published_at.clone(),
        };
        let encoded_alias = layout::encode_json(&first_alias, "grader alias")?;
        let event = AliasEvent {
            name: record.name.clone(),
            action: AliasAction::Publish,
            from: None,
            to: record.version.clone(),
            by: record.published_by.clone(),
            at: record.published_at.clone(),
        };
        let encoded_event = layout::encode_json(&event, "alias event")?;
        let trees = &self.trees;
        let outcome = (&trees.grader_versions, &trees.grader_blobs, &trees.grader_aliases, &trees.grader_alias_events)
            .transaction(|(versions, blobs, aliases, events)| {
                if let Some(existing) = versions.get(&key)? {
                    let existing: GraderVersion = layout::decode_json(&existing, "grader version")
                        .map_err(ConflictableTransactionError::Abort)?;
                    if existing.digest == record.digest {
                        return Ok(Published { version: existing, created: false, alias: None });
                    }
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(format!(
                        "{} {} is already published with digest {}; a published version never changes, \
                         so publish these bytes ({}) under a new version",
                        record.name, record.version, existing.digest, record.digest
                    ))));
                }
                if blobs.get(record.digest.as_bytes())?.is_none() {
                    blobs.insert(record.digest.as_bytes(), component)?;
                }
                versions.insert(key.as_slice(), encoded.as_slice())?;
                let mut alias = None;
                if aliases.get(record.name.as_bytes())?.is_none() {
                    aliases.insert(record.name.as_bytes(), encoded_alias.as_slice())?;
                    let sequence = events.generate_id()?;
                    events.insert(event_key(&record.name, sequence), encoded_event.as_slice())?;
                    alias = Some(event.clone());
                }
                Ok(Published { version: record.clone(), created: true, alias })
            })
            .map_err(super::from_transaction)?;
        self.flush()?;
        Ok(outcome)
    }

    /// One published version.
    pub fn grader_version(&self, name: &str, version: &str) -> Result<GraderVersion, StoreError> {
        match self.trees.grader_versions.get(version_key(name, version))? {
            Some(bytes) => layout::decode_json(&bytes, "grader version"),
            None => Err(StoreError::NotFound { what: format!("grader {name} {version}") }),
        }
    }

    /// Every version of a grader, in semantic version order.
    pub fn grader_versions(&self, name: &str) -> Result<Vec<GraderVersion>, StoreError> {
        let mut versions = Vec::new();
        for entry in self.trees.grader_versions.scan_prefix(layout::dataset_prefix(name)) {
            let (_, bytes) = entry?;
            versions.push(layout::decode_json::<GraderVersion>(&bytes, "grader version")?);
        }
        versions.sort_by(|left, right| compare_versions(&left.version, &right.version));
        Ok(versions)
    }

    /// The component bytes with this digest (`sha256:...`).
    pub fn grader_component(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        match self.trees.grader_blobs.get(digest.as_bytes())? {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(StoreError::NotFound { what: format!("grader component {digest}") }),
        }
    }

    /// Where a name points now, if anywhere.
    pub fn grader_alias(&self, name: &str) -> Result<Option<Alias>, StoreError> {
        self.trees
            .grader_aliases
            .get(name.as_bytes())?
            .map(|bytes| layout::decode_json(&bytes, "grader alias"))
            .transpose()
    }

    /// Every grader name with its alias and versions, by name.
    pub fn list_graders(&self) -> Result<Vec<GraderSummary>, StoreError> {
        let mut names: Vec<String> = Vec::new();
        for entry in self.trees.grader_versions.iter() {
            let (_, bytes) = entry?;
            let record: GraderVersion = layout::decode_json(&bytes, "grader version")?;
            if names.last() != Some(&record.name) {
                names.push(record.name);
            }
        }
        names
            .into_iter()
            .map(|name| {
                Ok(GraderSummary { alias: self.grader_alias(&name)?, versions: self.grader_versions(&name)?, name })
            })
            .collect()
    }

    /// Points `name` at `version` (which must be published and not retired).
    pub fn promote_grader(&self, name: &str, version: &str, by: &str) -> Result<AliasEvent, StoreError> {
        let target = self.grader_version(name, version)?;
        if target.retired.is_some() {
            return Err(StoreError::Conflict(format!("{name} {version} is retired; it cannot be served again")));
        }
        self.move_alias(name, version, by, AliasAction::Promote, None)
    }

    /// Points `name` back at the version it served before the current one was
    /// promoted. Rollbacks undo promotions in turn: after promoting 1.1 then
    /// 2.0, two rollbacks lead to 1.1 and then to what served before 1.1.
    pub fn rollback_grader(&self, name: &str, by: &str) -> Result<AliasEvent, StoreError> {
        let current =
            self.grader_alias(name)?.ok_or_else(|| StoreError::NotFound { what: format!("grader {name}") })?;
        let mut served: Vec<String> = Vec::new();
        for event in self.alias_history(name)? {
            match event.action {
                AliasAction::Rollback => {
                    served.pop();
                }
                AliasAction::Publish | AliasAction::Promote => served.push(event.to),
            }
        }
        let previous = match served.as_slice() {
            [.., previous, top] if *top == current.version => previous.clone(),
            _ => {
                return Err(StoreError::Conflict(format!(
                    "{name} serves {} and no earlier version was promoted before it; there is nothing to roll back to",
                    current.version
                )));
            }
        };
        if self.grader_version(name, &previous)?.retired.is_some() {
            return Err(StoreError::Conflict(format!(
                "{name} would roll back to {previous}, which is retired; promote a version instead"
            )));
        }
        self.move_alias(name, &previous, by, AliasAction::Rollback, Some(&current.version))
    }

    /// Moves an alias in one transaction with its history event; `expected`
    /// guards a rollback against a concurrent move.
    fn move_alias(
        &self,
        name: &str,
        version: &str,
        by: &str,
        action: AliasAction,
        expected: Option<&str>,
    ) -> Result<AliasEvent, StoreError> {
        let at = super::now_rfc3339();
        let alias = Alias { name: name.into(), version: version.into(), moved_by: by.into(), moved_at: at.clone() };
        let encoded_alias = layout::encode_json(&alias, "grader alias")?;
        let trees = &self.trees;
        let event = (&trees.grader_aliases, &trees.grader_alias_events)
            .transaction(|(aliases, events)| {
                let from = match aliases.get(name.as_bytes())? {
                    Some(bytes) => Some(
                        layout::decode_json::<Alias>(&bytes, "grader alias")
                            .map_err(ConflictableTransactionError::Abort)?
                            .version,
                    ),
                    None => None,
                };
                if let Some(expected) = expected
                    && from.as_deref() != Some(expected)
                {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(format!(
                        "{name} moved meanwhile (it now serves {}); try again",
                        from.as_deref().unwrap_or("nothing")
                    ))));
                }
                let event =
                    AliasEvent { name: name.into(), action, from, to: version.into(), by: by.into(), at: at.clone() };
                let encoded_event =
                    layout::encode_json(&event, "alias event").map_err(ConflictableTransactionError::Abort)?;
                aliases.insert(name.as_bytes(), encoded_alias.as_slice())?;
                let sequence = events.generate_id()?;
                events.insert(event_key(name, sequence), encoded_event)?;
                Ok(event)
            })
            .map_err(super::from_transaction)?;
        self.flush()?;
        Ok(event)
    }

    /// Marks a version retired. The version an alias serves cannot be retired:
    /// promote another one first.
    pub fn retire_grader(&self, name: &str, version: &str, by: &str) -> Result<GraderVersion, StoreError> {
        let key = version_key(name, version);
        let trees = &self.trees;
        let retired = (&trees.grader_versions, &trees.grader_aliases)
            .transaction(|(versions, aliases)| {
                let Some(bytes) = versions.get(&key)? else {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound {
                        what: format!("grader {name} {version}"),
                    }));
                };
                let mut record: GraderVersion =
                    layout::decode_json(&bytes, "grader version").map_err(ConflictableTransactionError::Abort)?;
                if let Some(alias) = aliases.get(name.as_bytes())? {
                    let alias: Alias =
                        layout::decode_json(&alias, "grader alias").map_err(ConflictableTransactionError::Abort)?;
                    if alias.version == version {
                        return Err(ConflictableTransactionError::Abort(StoreError::Conflict(format!(
                            "{name} {version} is what {name} serves now; promote another version before retiring it"
                        ))));
                    }
                }
                if record.retired.is_none() {
                    record.retired = Some(Retirement { by: by.into(), at: super::now_rfc3339() });
                    let encoded =
                        layout::encode_json(&record, "grader version").map_err(ConflictableTransactionError::Abort)?;
                    versions.insert(key.as_slice(), encoded)?;
                }
                Ok(record)
            })
            .map_err(super::from_transaction)?;
        self.flush()?;
        Ok(retired)
    }

    /// Every move of a grader's alias, oldest first.
    pub fn alias_history(&self, name: &str) -> Result<Vec<AliasEvent>, StoreError> {
        let mut events = Vec::new();
        for entry in self.trees.grader_alias_events.scan_prefix(layout::dataset_prefix(name)) {
            let (_, bytes) = entry?;
            events.push(layout::decode_json(&bytes, "alias event")?);
        }
        Ok(events)
    }

    /// Stores a shadow report (opaque JSON) under its id.
    pub fn save_shadow_report(&self, id: &str, report: &Value) -> Result<(), StoreError> {
        self.trees.shadow_reports.insert(id.as_bytes(), layout::encode_json(report, "shadow report")?)?;
        self.flush()
    }

    /// A stored shadow report.
    pub fn shadow_report(&self, id: &str) -> Result<Value, StoreError> {
        match self.trees.shadow_reports.get(id.as_bytes())? {
            Some(bytes) => layout::decode_json(&bytes, "shadow report"),
            None => Err(StoreError::NotFound { what: format!("shadow report `{id}`") }),
        }
    }
}

fn version_key(name: &str, version: &str) -> Vec<u8> {
    let mut key = layout::dataset_prefix(name);
    key.extend_from_slice(version.as_bytes());
    key
}

fn event_key(name: &str, sequence: u64) -> Vec<u8> {
    let mut key = layout::dataset_prefix(name);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// Why a grader name is refused: it is used in URLs, CLI arguments and score provenance.
pub fn grader_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > GRADER_NAME_BYTES_MAX {
        return Some(format!("must be 1 to {GRADER_NAME_BYTES_MAX} bytes"));
    }
    if !name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_-".contains(&byte))
        || !name.as_bytes()[0].is_ascii_lowercase()
    {
        return Some("must start with a lowercase letter and hold only lowercase letters, digits, `_` and `-`".into());
    }
    None
}

/// Why a version is refused: it must be a semantic version `MAJOR.MINOR.PATCH`
/// with an optional `-prerelease` and `+build`.
pub fn version_problem(version: &str) -> Option<String> {
    if version.is_empty() || version.len() > GRADER_VERSION_BYTES_MAX {
        return Some(format!("must be 1 to {GRADER_VERSION_BYTES_MAX} bytes"));
    }
    if parse_version(version).is_none() {
        return Some(format!("{version:?} is not a semantic version such as 1.3.0 or 2.0.0-rc.1"));
    }
    None
}

/// `(major, minor, patch, prerelease)` of a semantic version.
fn parse_version(version: &str) -> Option<(u64, u64, u64, Option<&str>)> {
    let core_and_pre = version.split_once('+').map_or(version, |(core, build)| {
        if build.is_empty() || !build.split('.').all(identifier_ok) { "" } else { core }
    });
    let (core, pre) = match core_and_pre.split_once('-') {
        Some((core, pre)) if !pre.is_empty() && pre.split('.').all(identifier_ok) => (core, Some(pre)),
        Some(_) => return None,
        None => (core_and_pre, None),
    };
    let mut parts = core.split('.');
    let mut number = || -> Option<u64> {
        let part = parts.next()?;
        if part.is_empty() || (part.len() > 1 && part.starts_with('0')) || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let parsed = (number()?, number()?, number()?, pre);
    if parts.next().is_some() { None } else { Some(parsed) }
}

fn identifier_ok(identifier: &str) -> bool {
    !identifier.is_empty() && identifier.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// Semantic version order (a pre-release sorts before its release); text
/// order for anything unparsable.
pub fn compare_versions(left: &str, right: &str) -> std::cmp::Ordering {
    match (parse_version(left), parse_version(right)) {
        (Some((a1, a2, a3, a_pre)), Some((b1, b2, b3, b_pre))) => {
            (a1, a2, a3).cmp(&(b1, b2, b3)).then_with(|| match (a_pre, b_pre) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
        }
        _ => left.cmp(right),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, version: &str, digest: &str) -> GraderVersion {
        GraderVersion {
            name: name.into(),
            version: version.into(),
            digest: digest.into(),
            size_bytes: 3,
            description: "test".into(),
            score_keys: vec!["policy_violations".into()],
            capabilities: vec![],
            tests_passed: 0,
            published_by: "compliance".into(),
            published_at: "2026-11-26T00:00:00Z".into(),
            retired: None,
        }
    }

    #[test]
    fn versions_are_immutable_and_the_first_becomes_the_alias() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let first = store.publish_grader(record("must_not_say", "1.2.0", "sha256:aa"), b"one").unwrap();
        assert!(first.created);
        assert_eq!(first.alias.as_ref().map(|event| event.to.as_str()), Some("1.2.0"));
        // The same bytes again: accepted, nothing changes.
        let again = store.publish_grader(record("must_not_say", "1.2.0", "sha256:aa"), b"one").unwrap();
        assert!(!again.created && again.alias.is_none());
        // Other bytes under a published version: refused, and the original stays.
        let changed = store.publish_grader(record("must_not_say", "1.2.0", "sha256:bb"), b"two");
        assert!(
            matches!(&changed, Err(StoreError::Conflict(message)) if message.contains("never changes")),
            "{changed:?}"
        );
        assert_eq!(store.grader_version("must_not_say", "1.2.0").unwrap().digest, "sha256:aa");
        assert_eq!(store.grader_component("sha256:aa").unwrap(), b"one");
        assert!(matches!(store.grader_component("sha256:bb"), Err(StoreError::NotFound { .. })));
        // A later version does not move the alias by itself.
        let second = store.publish_grader(record("must_not_say", "1.10.0", "sha256:cc"), b"three").unwrap();
        assert!(second.alias.is_none());
        assert_eq!(store.grader_alias("must_not_say").unwrap().unwrap().version, "1.2.0");
        let versions: Vec<String> =
            store.grader_versions("must_not_say").unwrap().into_iter().map(|version| version.version).collect();
        assert_eq!(versions, ["1.2.0", "1.10.0"], "semantic, not text, order");
        for (name, version, field) in
            [("Bad Name", "1.0.0", "name"), ("ok", "1.0", "version"), ("ok", "01.0.0", "version")]
        {
            let refused = store.publish_grader(record(name, version, "sha256:dd"), b"x");
            assert!(
                matches!(&refused, Err(StoreError::Invalid(errors)) if errors[0].field == field),
                "{name} {version}: {refused:?}"
            );
        }
    }

    #[test]
    fn promote_rollback_and_retire_keep_a_history() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        for (version, digest) in [("1.0.0", "sha256:01"), ("1.1.0", "sha256:02"), ("2.0.0-rc.1", "sha256:03")] {
            store.publish_grader(record("judge", version, digest), digest.as_bytes()).unwrap();
        }
        assert!(
            matches!(store.rollback_grader("judge", "ops"), Err(StoreError::Conflict(_))),
            "nothing to roll back to"
        );
        store.promote_grader("judge", "1.1.0", "ops").unwrap();
        store.promote_grader("judge", "2.0.0-rc.1", "ops").unwrap();
        let rolled = store.rollback_grader("judge", "oncall").unwrap();
        assert_eq!((rolled.from.as_deref(), rolled.to.as_str()), (Some("2.0.0-rc.1"), "1.1.0"));
        assert_eq!(store.grader_alias("judge").unwrap().unwrap().version, "1.1.0");
        // Retiring what is served is refused; retiring another is kept for provenance.
        assert!(matches!(store.retire_grader("judge", "1.1.0", "ops"), Err(StoreError::Conflict(_))));
        let retired = store.retire_grader("judge", "1.0.0", "ops").unwrap();
        assert_eq!(retired.retired.as_ref().map(|retirement| retirement.by.as_str()), Some("ops"));
        assert!(store.grader_version("judge", "1.0.0").unwrap().retired.is_some());
        assert!(matches!(store.promote_grader("judge", "1.0.0", "ops"), Err(StoreError::Conflict(_))));
        assert!(matches!(store.promote_grader("judge", "9.9.9", "ops"), Err(StoreError::NotFound { .. })));
        let history: Vec<(AliasAction, Option<String>, String, String)> = store
            .alias_history("judge")
            .unwrap()
            .into_iter()
            .map(|event| (event.action, event.from, event.to, event.by))
            .collect();
        assert_eq!(
            history,
            [
                (AliasAction::Publish, None, "1.0.0".into(), "compliance".into()),
                (AliasAction::Promote, Some("1.0.0".into()), "1.1.0".into(), "ops".into()),
                (AliasAction::Promote, Some("1.1.0".into()), "2.0.0-rc.1".into(), "ops".into()),
                (AliasAction::Rollback, Some("2.0.0-rc.1".into()), "1.1.0".into(), "oncall".into()),
            ]
        );
        // Rolling back again goes to where 1.1.0 came from: 1.0.0, which is retired.
        assert!(
            matches!(store.rollback_grader("judge", "ops"), Err(StoreError::Conflict(message)) if message.contains("retired"))
        );
        let listed = store.list_graders().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].versions.len(), 3);
        drop(store);
        let reopened = Store::open(directory.path()).unwrap();
        assert_eq!(reopened.grader_alias("judge").unwrap().unwrap().version, "1.1.0");
        assert_eq!(reopened.alias_history("judge").unwrap().len(), 4);
    }

    #[test]
    fn semantic_versions_are_checked_and_ordered() {
        for good in ["0.0.1", "1.3.0", "10.20.30", "1.0.0-rc.1", "1.0.0+build.5", "1.0.0-alpha-1+sha.abc"] {
            assert!(version_problem(good).is_none(), "{good}");
        }
        for bad in ["", "1", "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3+", "1.2.3-a..b", "1.2.x"] {
            assert!(version_problem(bad).is_some(), "{bad}");
        }
        let mut versions = vec!["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9"];
        versions.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(versions, ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0"]);
    }
}
