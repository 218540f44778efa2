//! The grader registry as the server serves it: published versions loaded
//! (checked, compiled, cached on disk) on demand by digest, and each name's
//! alias held in memory so that moving it takes effect for the next grading
//! call with no restart.
//!
//! An evaluation pins a [`Pinned`] grader (an `Arc` of the loaded version)
//! when it starts and grades with it to the end, whatever happens to the alias
//! meanwhile: its provenance names the version that really produced its
//! scores. A swap is a pointer replacement under a write lock held for no
//! more than that, after the new version has been loaded, so no call waits on
//! a compile and none fails.
//!
//! Knows the runtime's public API and the store; no HTTP.

use crate::model::{AgentRun, Example};
use crate::runtime::{LoadError, LoadedGrader, Outcome, Runtime, to_case};
use crate::store::{AliasEvent, GraderSummary, GraderVersion, Published, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// Who is recorded as publishing the reference graders built into the binary.
pub const REFERENCE_PUBLISHER: &str = "assay (built in)";
/// Most bundled test cases one publish may carry.
pub const TESTS_PER_PUBLISH_MAX: usize = 1_000;
/// How far a bundled test's expected score may be from the actual one.
pub const TEST_TOLERANCE: f64 = 1e-9;

/// A grader version held for an evaluation.
#[derive(Clone)]
pub struct Pinned {
    pub name: String,
    pub version: String,
    /// `sha256:` and the digest.
    pub digest: String,
    pub grader: Arc<LoadedGrader>,
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Pinned").field("name", &self.name).field("version", &self.version).finish()
    }
}

/// One test case bundled with a publish: a case and the scores it must get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraderTest {
    /// A label for messages; the index is used when absent.
    #[serde(default)]
    pub name: Option<String>,
    pub example: Example,
    pub run: AgentRun,
    #[serde(default)]
    pub config: Option<Value>,
    /// Score key → expected value.
    pub expect: BTreeMap<String, f64>,
}

/// Why a publish, promote or resolve was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The component is not a grader this host can run.
    #[error("the component was refused: {0}")]
    Refused(#[from] LoadError),
    /// The component's metadata disagrees with the name or version it was published as.
    #[error("{0}")]
    Mismatch(String),
    /// A bundled test case failed.
    #[error("{0}")]
    TestsFailed(String),
    /// A retired version was asked for a new evaluation.
    #[error("{name} {version} is retired: it is kept for provenance and refused for new evaluations")]
    Retired { name: String, version: String },
}

/// Published graders and what each name serves.
pub struct Registry {
    runtime: Arc<Runtime>,
    store: Store,
    /// Loaded versions by digest (`sha256:...`).
    loaded: Mutex<HashMap<String, Arc<LoadedGrader>>>,
    /// What each name serves now.
    served: RwLock<HashMap<String, Pinned>>,
    /// Serialises alias moves, so the store and the served table agree.
    moves: Mutex<()>,
}

impl Registry {
    /// Opens the registry on `store`: publishes the reference graders built
    /// into the binary on first start (a name whose version exists already
    /// with other bytes keeps what was published, with a warning), then loads
    /// what every alias serves.
    pub fn open(runtime: Arc<Runtime>, store: Store) -> Result<Registry, RegistryError> {
        let registry =
            Registry { runtime, store, loaded: Mutex::default(), served: RwLock::default(), moves: Mutex::default() };
        for (name, bytes) in crate::graders::REFERENCE_GRADERS {
            let grader = Arc::new(registry.runtime.load(bytes)?);
            let digest = format!("sha256:{}", grader.digest);
            let version = grader.info.version.clone();
            match registry.store.publish_grader(record_of(&grader, REFERENCE_PUBLISHER, 0), bytes) {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => {
                    tracing::warn!(
                        grader = name,
                        version,
                        digest,
                        "the built-in grader differs from the one published \
                        under the same version; the published one is kept"
                    );
                }
                Err(error) => return Err(error.into()),
            }
            registry.loaded_map().insert(digest, grader);
        }
        for summary in registry.store.list_graders()? {
            if let Some(alias) = summary.alias {
                let pinned = registry.pin_version(&alias.name, &alias.version, true)?;
                registry.served_map_mut().insert(alias.name, pinned);
            }
        }
        Ok(registry)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The version `name` serves now, or the given `version` of it. Retired
    /// versions are refused unless `allow_retired` (re-grading an old experiment).
    pub fn resolve(&self, name: &str, version: Option<&str>, allow_retired: bool) -> Result<Pinned, RegistryError> {
        match version {
            None => self
                .served
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(name)
                .cloned()
                .ok_or_else(|| StoreError::NotFound { what: format!("grader {name}") }.into()),
            Some(version) => self.pin_version(name, version, allow_retired),
        }
    }

    /// The names served now, with their versions.
    pub fn served(&self) -> BTreeMap<String, Pinned> {
        self.served.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().into_iter().collect()
    }

    /// Every grader with its alias and versions.
    pub fn list(&self) -> Result<Vec<GraderSummary>, RegistryError> {
        Ok(self.store.list_graders()?)
    }

    /// Checks a component and publishes it as `name` `version`: it must be a
    /// grader of this host's world whose metadata says the same name and
    /// version, and pass every bundled test. It is compiled once (cached on
    /// disk, so a restart does not recompile); the first version of a name
    /// becomes what the name serves.
    pub fn publish(
        &self,
        name: &str,
        version: &str,
        component: &[u8],
        tests: &[GraderTest],
        by: &str,
    ) -> Result<Published, RegistryError> {
        if tests.len() > TESTS_PER_PUBLISH_MAX {
            return Err(RegistryError::TestsFailed(format!(
                "{} test cases; at most {TESTS_PER_PUBLISH_MAX} travel with one publish",
                tests.len()
            )));
        }
        let grader = Arc::new(self.runtime.load(component)?);
        if grader.info.name != name || grader.info.version != version {
            return Err(RegistryError::Mismatch(format!(
                "published as {name} {version}, but the component's metadata() says {} {}",
                grader.info.name, grader.info.version
            )));
        }
        self.run_tests(&grader, tests)?;
        let published = self.store.publish_grader(record_of(&grader, by, tests.len() as u64), component)?;
        let digest = format!("sha256:{}", grader.digest);
        self.loaded_map().insert(digest.clone(), Arc::clone(&grader));
        if let Some(event) = &published.alias {
            let _moving = self.moves.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let pinned = Pinned { name: name.into(), version: event.to.clone(), digest, grader };
            self.served_map_mut().insert(name.to_owned(), pinned);
        }
        Ok(published)
    }

    /// Makes `name` serve `version` from the next grading call on.
    pub fn promote(&self, name: &str, version: &str, by: &str) -> Result<AliasEvent, RegistryError> {
        let _moving = self.moves.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Loaded before the alias moves, so the swap itself costs a pointer.
        let pinned = self.pin_version(name, version, false)?;
        let event = self.store.promote_grader(name, version, by)?;
        self.served_map_mut().insert(name.to_owned(), pinned);
        Ok(event)
    }

    /// Makes `name` serve what it served before its current version was promoted.
    pub fn rollback(&self, name: &str, by: &str) -> Result<AliasEvent, RegistryError> {
        let _moving = self.moves.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let event = self.store.rollback_grader(name, by)?;
        let pinned = self.pin_version(name, &event.to, true)?;
        self.served_map_mut().insert(name.to_owned(), pinned);
        Ok(event)
    }

    /// Retires a version that is not served.
    pub fn retire(&self, name: &str, version: &str, by: &str) -> Result<GraderVersion, RegistryError> {
        let _moving = self.moves.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(self.store.retire_grader(name, version, by)?)
    }

    /// A published version, loaded (from memory, or from the store and the compile cache).
    fn pin_version(&self, name: &str, version: &str, allow_retired: bool) -> Result<Pinned, RegistryError> {
        let record = self.store.grader_version(name, version)?;
        if record.retired.is_some() && !allow_retired {
            return Err(RegistryError::Retired { name: name.into(), version: version.into() });
        }
        let cached = self.loaded_map().get(&record.digest).cloned();
        let grader = match cached {
            Some(grader) => grader,
            None => {
                let bytes = self.store.grader_component(&record.digest)?;
                let grader = Arc::new(self.runtime.load(&bytes)?);
                self.loaded_map().insert(record.digest.clone(), Arc::clone(&grader));
                grader
            }
        };
        Ok(Pinned { name: record.name, version: record.version, digest: record.digest, grader })
    }

    /// Runs the bundled tests; every failure is named.
    fn run_tests(&self, grader: &LoadedGrader, tests: &[GraderTest]) -> Result<(), RegistryError> {
        let mut failures = Vec::new();
        for (index, test) in tests.iter().enumerate() {
            let label = test.name.clone().unwrap_or_else(|| format!("test #{}", index + 1));
            if let Err(fields) = test.example.validate() {
                let fields: Vec<String> = fields.iter().map(ToString::to_string).collect();
                failures.push(format!("{label}: the example is invalid: {}", fields.join("; ")));
                continue;
            }
            let config = test.config.clone().unwrap_or_else(|| Value::Object(Default::default())).to_string();
            let graded = self.runtime.grade(grader, &to_case(&test.example, &test.run), &config);
            let scores = match graded.outcome {
                Outcome::Scores(scores) => scores,
                Outcome::Failure(failure) => {
                    failures.push(format!(
                        "{label}: the grader failed ({}): {}",
                        failure.kind.as_str(),
                        failure.message
                    ));
                    continue;
                }
            };
            for (key, expected) in &test.expect {
                match scores.iter().find(|score| &score.key == key) {
                    Some(score) if (score.value - expected).abs() <= TEST_TOLERANCE => {}
                    Some(score) => {
                        failures.push(format!("{label}: {key} = {} but {expected} was expected", score.value))
                    }
                    None => failures.push(format!("{label}: no {key} score, {expected} was expected")),
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::TestsFailed(format!(
                "{} of {} bundled test case(s) failed: {}",
                failures.len(),
                tests.len(),
                failures.join("; ")
            )))
        }
    }

    fn loaded_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LoadedGrader>>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn served_map_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Pinned>> {
        self.served.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The stored record of a loaded grader.
fn record_of(grader: &LoadedGrader, by: &str, tests_passed: u64) -> GraderVersion {
    GraderVersion {
        name: grader.info.name.clone(),
        version: grader.info.version.clone(),
        digest: format!("sha256:{}", grader.digest),
        size_bytes: grader.size_bytes as u64,
        description: grader.info.description.clone(),
        score_keys: grader.info.score_keys.clone(),
        capabilities: grader.info.capabilities.clone(),
        tests_passed,
        published_by: by.to_owned(),
        published_at: crate::store::now_rfc3339(),
        retired: None,
    }
}
