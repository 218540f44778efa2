//! The grader runtime: the only code that knows Wasmtime.
//!
//! A [`Runtime`] owns one engine. [`Runtime::load`] checks a component against
//! the `grader` world (or `judge-grader`, which adds the `judge` import),
//! compiles it once (through the on-disk cache) and pre-links it;
//! [`Runtime::grade`] runs one case in a fresh instance under the [`Limits`],
//! and turns every failure into a classified [`GradeFailure`] for that grader
//! and case. Nothing a grader does can crash the host.
//!
//! A grader that imports `judge` may consult the operator's model
//! ([`JudgeConfig`]) when granted; [`Runtime::grade_recorded`] returns every
//! exchange with the result and replays recorded answers it is given.

mod bindings;
mod cache;
mod case;
mod judge;
mod sandbox;

pub use bindings::Case;
pub use cache::{CompileCache, WASMTIME_VERSION};
pub use case::{case_size_bytes, to_case};
pub use judge::{
    ALLOW_EVERY_GRADER, ChatMessage, JUDGE_CAPABILITY, JUDGE_CONCURRENCY_MAX, JUDGE_INTERFACE, JUDGE_TIMEOUT_MS_MAX,
    JudgeConfig, JudgeExchange, JudgeRequest, JudgeResponse, JudgeStats, parse_answer, request_body,
};
pub use sandbox::FIXED_WALL_CLOCK_SECONDS;

use bindings::{GradeError, JudgeGraderPre};
use judge::{JudgeClient, JudgeCounters, JudgeSession};
use sandbox::CallState;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// The WIT world every grader implements, recorded with every score.
pub const WIT_WORLD: &str = "assay:grader/grader@0.1.0";
/// The world of graders that may consult the judge: [`WIT_WORLD`] plus the `judge` import.
pub const JUDGE_WIT_WORLD: &str = "assay:grader/judge-grader@0.1.0";

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits on one grade call. Every one has a default sized for the reference
/// graders with a wide margin.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Linear memory of one instance, all memories together.
    pub memory_bytes_max: usize,
    /// Fuel (roughly, Wasm instructions) for one call. Deterministic: the same
    /// call runs out at the same point every time.
    pub grade_fuel_max: u64,
    /// Wall-clock backstop for one call, for time spent outside fuel accounting.
    pub grade_deadline_ms: u64,
    /// Bytes of a case copied into the grader.
    pub input_bytes_max: usize,
    /// Scores one call may return.
    pub scores_max: usize,
    /// Bytes of one score key.
    pub score_key_bytes_max: usize,
    /// Bytes of one score comment.
    pub comment_bytes_max: usize,
    /// Bytes of stdout and stderr kept per call.
    pub log_bytes_max: usize,
    /// Bytes of a component file.
    pub component_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes_max: 64 << 20,
            grade_fuel_max: 2_000_000_000,
            grade_deadline_ms: 10_000,
            input_bytes_max: 4 << 20,
            scores_max: 64,
            score_key_bytes_max: 128,
            comment_bytes_max: 16 << 10,
            log_bytes_max: 16 << 10,
            component_bytes_max: 32 << 20,
        }
    }
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub limits: Limits,
    /// Use Wasmtime's pooling instance allocator (faster instantiation).
    pub pooling: bool,
    /// Instances that may be alive at once with the pooling allocator.
    pub instances_max: u32,
    /// With the pooling allocator: linear memory kept mapped between
    /// instances and reset with memset instead of being returned to the
    /// kernel, which saves page faults on every fresh instance.
    pub memory_keep_resident_bytes: usize,
    /// Where precompiled components are kept; `None` compiles in memory only.
    pub cache_directory: Option<PathBuf>,
    /// The operator's judge model; `None` grants the judge to no grader.
    pub judge: Option<JudgeConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            limits: Limits::default(),
            pooling: true,
            instances_max: 256,
            memory_keep_resident_bytes: 4 << 20,
            cache_directory: None,
            judge: None,
        }
    }
}

/// What a grader says about itself (its `metadata()` export).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraderInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub score_keys: Vec<String>,
    pub config_schema: serde_json::Value,
    pub capabilities: Vec<String>,
}

/// A named score in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Score {
    pub key: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Why a grade call produced no scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The wall-clock deadline passed.
    Timeout,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The grader tried to grow memory past the cap.
    MemoryLimit,
    /// The grader crashed (panic, unreachable, out-of-bounds access, stack overflow).
    Trap,
    /// The grader returned scores that break the contract.
    InvalidOutput,
    /// The grader reported a failure itself (bad config, unusable case).
    GraderError,
    /// The case was larger than `input_bytes_max`; the grader was not called.
    InputTooLarge,
}

impl FailureKind {
    /// True for failures that are incidents of the grader's code (it crashed
    /// or was stopped), as opposed to failures it reported or caused by data.
    pub fn is_incident(self) -> bool {
        matches!(self, FailureKind::Timeout | FailureKind::OutOfFuel | FailureKind::MemoryLimit | FailureKind::Trap)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Trap => "trap",
            FailureKind::InvalidOutput => "invalid_output",
            FailureKind::GraderError => "grader_error",
            FailureKind::InputTooLarge => "input_too_large",
        }
    }
}

/// A classified failure of one grader on one case.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct GradeFailure {
    pub kind: FailureKind,
    pub message: String,
}

/// The result of one grade call with the judge exchanges it made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    #[serde(flatten)]
    pub graded: Graded,
    /// Every judge request of the call, in order, with its answer or error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub judge: Vec<JudgeExchange>,
}

/// The result of one grade call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graded {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Fuel the call consumed (instantiation included).
    pub fuel_used: u64,
    /// What the grader printed to stdout and stderr (bounded).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log: String,
}

/// Scores, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Scores(Vec<Score>),
    Failure(GradeFailure),
}

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the component is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("not a WebAssembly binary: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build the grader for the wasm32-wasip2 target \
         (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("the component is invalid: {0}")]
    Invalid(String),
    #[error("the component does not implement the {WIT_WORLD} world: {0}")]
    WrongWorld(String),
    #[error("metadata() failed: {0}")]
    MetadataFailed(GradeFailure),
    #[error("metadata() returned an invalid description: {0}")]
    InvalidMetadata(String),
    #[error(
        "the component imports the `{interface}` interface but its metadata() does not list the \"{capability}\" \
         capability: add it to `capabilities` (GraderInfo::capabilities in the SDK)"
    )]
    UndeclaredCapability { capability: String, interface: String },
}

/// A failure of the host itself, not of a grader.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not configure the Wasm engine: {0}")]
    Engine(String),
    #[error("the judge configuration is invalid: {0}")]
    Judge(String),
}

/// A grader checked, compiled and pre-linked, ready to grade.
pub struct LoadedGrader {
    pub info: GraderInfo,
    /// sha256 of the component bytes, lowercase hex.
    pub digest: String,
    pub size_bytes: usize,
    /// The component imports the `judge` interface (world `judge-grader`).
    pub imports_judge: bool,
    pre: JudgeGraderPre<CallState>,
}

impl LoadedGrader {
    /// The world the component implements: [`JUDGE_WIT_WORLD`] when it
    /// imports `judge`, else [`WIT_WORLD`].
    pub fn world(&self) -> &'static str {
        if self.imports_judge { JUDGE_WIT_WORLD } else { WIT_WORLD }
    }
}

impl std::fmt::Debug for LoadedGrader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoadedGrader")
            .field("info", &self.info)
            .field("digest", &self.digest)
            .field("imports_judge", &self.imports_judge)
            .finish_non_exhaustive()
    }
}

/// One grader with its configuration, as used in a batch.
#[derive(Debug, Clone)]
pub struct GraderCall {
    pub grader: Arc<LoadedGrader>,
    /// JSON object text.
    pub config: String,
}

/// The Wasm engine, its linker and limits.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    config: RuntimeConfig,
    cache: Option<CompileCache>,
    /// The operator's judge, when configured.
    judge: Option<Arc<JudgeClient>>,
    judge_counters: Arc<JudgeCounters>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Runtime").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker (it stops when the engine is dropped).
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if let Some(problems) = config.judge.as_ref().map(JudgeConfig::problems).filter(|problems| !problems.is_empty())
        {
            return Err(RuntimeError::Judge(problems.join("; ")));
        }
        let mut engine_config = wasmtime::Config::new();
        engine_config.wasm_component_model(true);
        engine_config.consume_fuel(true);
        engine_config.epoch_interruption(true);
        if config.pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            let instances = config.instances_max;
            pool.total_component_instances(instances);
            pool.total_core_instances(instances * 8);
            pool.total_memories(instances * 2);
            pool.total_tables(instances * 8);
            pool.max_memories_per_component(4);
            pool.max_tables_per_component(16);
            pool.max_core_instances_per_component(16);
            pool.max_memory_size(config.limits.memory_bytes_max);
            pool.linear_memory_keep_resident(config.memory_keep_resident_bytes);
            pool.table_keep_resident(config.memory_keep_resident_bytes.min(1 << 20));
            engine_config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&engine_config).map_err(|error| RuntimeError::Engine(format!("{error:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|error| RuntimeError::Engine(format!("{error:#}")))?;
        // Every grader may import `judge`; whether a call is answered is decided per call.
        bindings::judge::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|error| RuntimeError::Engine(format!("{error:#}")))?;
        start_epoch_ticker(&engine);
        let cache = config.cache_directory.clone().map(CompileCache::new);
        let judge_counters = Arc::new(JudgeCounters::default());
        let judge = config.judge.clone().map(|judge| Arc::new(JudgeClient::new(judge, Arc::clone(&judge_counters))));
        Ok(Runtime { engine, linker, config, cache, judge, judge_counters })
    }

    /// What the judge cost so far: model calls, failures, tokens, replays and refusals.
    pub fn judge_stats(&self) -> JudgeStats {
        self.judge_counters.snapshot()
    }

    /// The operator's judge settings, when a judge is configured.
    pub fn judge_config(&self) -> Option<&JudgeConfig> {
        self.config.judge.as_ref()
    }

    /// Whether `grader`, which imports the judge, may use it: a judge is
    /// configured, the grader lists the capability (also checked at load) and
    /// the operator allows its name. `Err` says why not.
    fn judge_grant(&self, grader: &LoadedGrader) -> Result<Arc<JudgeClient>, String> {
        let Some(client) = &self.judge else {
            return Err("no judge model is configured".into());
        };
        if !grader.info.capabilities.iter().any(|capability| capability == JUDGE_CAPABILITY) {
            return Err(format!("it does not list the {JUDGE_CAPABILITY:?} capability"));
        }
        if !client.config().allows(&grader.info.name) {
            return Err("the operator has not allowed it".into());
        }
        Ok(Arc::clone(client))
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// How many components were compiled because the on-disk cache did not
    /// have them (`None` without a cache).
    pub fn compiled_count(&self) -> Option<u64> {
        self.cache.as_ref().map(CompileCache::compiled_count)
    }

    /// Checks, compiles and pre-links a component, then trial-instantiates it
    /// and calls `metadata()` under the sandbox limits.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedGrader, LoadError> {
        let limits = &self.config.limits;
        if wasm.len() > limits.component_bytes_max {
            return Err(LoadError::TooLarge { size_bytes: wasm.len(), limit_bytes: limits.component_bytes_max });
        }
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(LoadError::NotWasm);
        }
        // Bytes 4..8 are the version and layer: 1 0 0 0 for a core module,
        // 0x0d 0 1 0 for a component.
        if wasm[6..8] == [0, 0] {
            return Err(LoadError::CoreModule);
        }
        let digest = hex::encode(Sha256::digest(wasm));
        let component = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &digest, wasm),
            None => Component::new(&self.engine, wasm),
        }
        .map_err(|error| LoadError::Invalid(format!("{error:#}")))?;
        // Any version of the interface counts: the linker decides whether it fits.
        let judge_package = JUDGE_INTERFACE.split('@').next().unwrap_or(JUDGE_INTERFACE);
        let imports_judge = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.split('@').next() == Some(judge_package));
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|error| LoadError::WrongWorld(format!("{error:#}")))?;
        let pre = JudgeGraderPre::new(instance_pre).map_err(|error| LoadError::WrongWorld(format!("{error:#}")))?;
        let info = self.call_metadata(&pre)?;
        if imports_judge && !info.capabilities.iter().any(|capability| capability == JUDGE_CAPABILITY) {
            return Err(LoadError::UndeclaredCapability {
                capability: JUDGE_CAPABILITY.into(),
                interface: JUDGE_INTERFACE.into(),
            });
        }
        Ok(LoadedGrader { info, digest, size_bytes: wasm.len(), imports_judge, pre })
    }

    fn call_metadata(&self, pre: &JudgeGraderPre<CallState>) -> Result<GraderInfo, LoadError> {
        let mut store = self.new_store(None);
        // Type mismatches of the exports surface at instantiation.
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => {
                let failure = classify(&error, store.data());
                return Err(match failure.kind {
                    FailureKind::Trap => LoadError::WrongWorld(format!("{error:#}")),
                    _ => LoadError::MetadataFailed(failure),
                });
            }
        };
        let raw = instance.call_metadata(&mut store).map_err(|error| {
            let mut failure = classify(&error, store.data());
            append_log(&mut failure.message, &store.data().log.text());
            LoadError::MetadataFailed(failure)
        })?;
        validate_info(raw, &self.config.limits)
    }

    /// Grades one case with one grader in a fresh instance. A judge grader
    /// may consult the model when granted; use [`Runtime::grade_recorded`]
    /// to keep the exchanges.
    pub fn grade(&self, grader: &LoadedGrader, case: &Case, config: &str) -> Graded {
        self.grade_sized(grader, case, case_size_bytes(case), config, &[]).graded
    }

    /// [`Runtime::grade`], returning the judge exchanges the call made. A
    /// judge request equal to an unused exchange of `replay` that has an
    /// answer gets that answer, without calling the model (in order, each
    /// used once); any other request goes to the model when granted.
    pub fn grade_recorded(
        &self,
        grader: &LoadedGrader,
        case: &Case,
        config: &str,
        replay: &[JudgeExchange],
    ) -> Recorded {
        self.grade_sized(grader, case, case_size_bytes(case), config, replay)
    }

    /// [`Runtime::grade_recorded`] with the case's size already measured, so
    /// a batch measures each case once rather than once per grader.
    fn grade_sized(
        &self,
        grader: &LoadedGrader,
        case: &Case,
        case_bytes: usize,
        config: &str,
        replay: &[JudgeExchange],
    ) -> Recorded {
        let limits = &self.config.limits;
        let input_bytes = case_bytes + config.len();
        if input_bytes > limits.input_bytes_max {
            let graded = Graded {
                outcome: Outcome::Failure(GradeFailure {
                    kind: FailureKind::InputTooLarge,
                    message: format!(
                        "the case is about {input_bytes} bytes, over the limit of {} bytes",
                        limits.input_bytes_max
                    ),
                }),
                fuel_used: 0,
                log: String::new(),
            };
            return Recorded { graded, judge: Vec::new() };
        }
        let session = grader.imports_judge.then(|| {
            Box::new(JudgeSession::new(
                &grader.info.name,
                self.judge_grant(grader),
                Arc::clone(&self.judge_counters),
                replay,
            ))
        });
        let mut store = self.new_store(session);
        let result =
            grader.pre.instantiate(&mut store).and_then(|instance| instance.call_grade(&mut store, case, config));
        let fuel_used = limits.grade_fuel_max.saturating_sub(store.get_fuel().unwrap_or(0));
        let log = store.data().log.text();
        let judge = store.data_mut().judge.take().map(|session| session.into_exchanges()).unwrap_or_default();
        let outcome = match result {
            Ok(Ok(scores)) => match validate_scores(scores, &grader.info, limits) {
                Ok(scores) => Outcome::Scores(scores),
                Err(message) => Outcome::Failure(GradeFailure { kind: FailureKind::InvalidOutput, message }),
            },
            Ok(Err(error)) => {
                Outcome::Failure(GradeFailure { kind: FailureKind::GraderError, message: grade_error_text(error) })
            }
            Err(error) => {
                let mut failure = classify(&error, store.data());
                if failure.kind == FailureKind::Trap {
                    append_log(&mut failure.message, &log);
                }
                Outcome::Failure(failure)
            }
        };
        Recorded { graded: Graded { outcome, fuel_used, log }, judge }
    }

    /// Grades every case with every grader, in parallel across cores. The
    /// result is indexed `[case][grader]`.
    pub fn grade_batch(&self, calls: &[GraderCall], cases: &[Case]) -> Vec<Vec<Graded>> {
        self.grade_batch_recorded(calls, cases, &[])
            .into_iter()
            .map(|row| row.into_iter().map(|recorded| recorded.graded).collect())
            .collect()
    }

    /// [`Runtime::grade_batch`] with the judge exchanges of every call. The
    /// recorded exchanges offered for replay are indexed like the result,
    /// `replay[case][grader]`; a missing entry offers none.
    pub fn grade_batch_recorded(
        &self,
        calls: &[GraderCall],
        cases: &[Case],
        replay: &[Vec<Vec<JudgeExchange>>],
    ) -> Vec<Vec<Recorded>> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from).min(cases.len()).max(1);
        let next = AtomicUsize::new(0);
        let mut rows: Vec<(usize, Vec<Recorded>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut rows = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(case) = cases.get(index) else { break };
                            let case_bytes = case_size_bytes(case);
                            let offered = replay.get(index);
                            let row = calls
                                .iter()
                                .enumerate()
                                .map(|(grader_index, call)| {
                                    let recorded = offered.and_then(|row| row.get(grader_index));
                                    let recorded = recorded.map_or(&[][..], Vec::as_slice);
                                    self.grade_sized(&call.grader, case, case_bytes, &call.config, recorded)
                                })
                                .collect();
                            rows.push((index, row));
                        }
                        rows
                    })
                })
                .collect();
            handles.into_iter().flat_map(|handle| handle.join().unwrap_or_default()).collect()
        });
        rows.sort_by_key(|(index, _)| *index);
        rows.into_iter().map(|(_, row)| row).collect()
    }

    fn new_store(&self, judge: Option<Box<JudgeSession>>) -> Store<CallState> {
        let limits = &self.config.limits;
        let mut state = CallState::new(limits.memory_bytes_max, limits.log_bytes_max);
        let waits_for_judge = judge.is_some();
        state.judge = judge;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Fuel and the epoch deadline start at zero: set both for every call.
        store.set_fuel(limits.grade_fuel_max).expect("fuel is enabled in the engine config");
        store.set_epoch_deadline(deadline_ticks(Duration::from_millis(limits.grade_deadline_ms)));
        if waits_for_judge {
            // Time spent waiting for the model is not the grader's: when the
            // deadline passes, it is moved out by the time the judge took
            // (the judge's own timeout bounds that time).
            let deadline = Duration::from_millis(limits.grade_deadline_ms);
            store.epoch_deadline_callback(move |context| {
                let Some(session) = context.data().judge.as_ref() else { return Ok(UpdateDeadline::Interrupt) };
                let used = session.started.elapsed().saturating_sub(session.waited);
                Ok(match deadline.checked_sub(used) {
                    Some(remaining) if !remaining.is_zero() => UpdateDeadline::Continue(deadline_ticks(remaining)),
                    _ => UpdateDeadline::Interrupt,
                })
            });
        } else {
            store.epoch_deadline_trap();
        }
        store
    }
}

/// Epoch ticks in `duration`, at least one.
fn deadline_ticks(duration: Duration) -> u64 {
    (duration.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64).max(1)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("assay-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "could not start the epoch ticker; wall-clock deadlines are off");
    }
}

fn classify(error: &wasmtime::Error, state: &CallState) -> GradeFailure {
    if state.limiter.limit_hit {
        return GradeFailure {
            kind: FailureKind::MemoryLimit,
            message: format!("the grader tried to grow its memory past the cap: {error:#}"),
        };
    }
    let (kind, message) = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (FailureKind::OutOfFuel, "the grader ran out of fuel".to_owned()),
        Some(Trap::Interrupt) => (FailureKind::Timeout, "the grader ran past its wall-clock deadline".to_owned()),
        Some(Trap::StackOverflow) => (FailureKind::Trap, "stack overflow".to_owned()),
        Some(trap) => (FailureKind::Trap, format!("{trap}")),
        None => (FailureKind::Trap, format!("{error:#}")),
    };
    GradeFailure { kind, message }
}

fn append_log(message: &mut String, log: &str) {
    let log = log.trim();
    if !log.is_empty() {
        message.push_str("; grader output: ");
        message.push_str(log);
    }
}

fn grade_error_text(error: GradeError) -> String {
    match error {
        GradeError::InvalidConfig(message) => format!("invalid config: {message}"),
        GradeError::InvalidCase(message) => format!("invalid case: {message}"),
        GradeError::Failed(message) => message,
    }
}

fn validate_info(raw: bindings::GraderInfo, limits: &Limits) -> Result<GraderInfo, LoadError> {
    let invalid = |message: String| Err(LoadError::InvalidMetadata(message));
    if !is_name(&raw.name) {
        return invalid(format!("name {:?} must be 1-64 characters of a-z, 0-9, `_` or `-`", raw.name));
    }
    if !is_semver(&raw.version) {
        return invalid(format!("version {:?} is not a semantic version like 1.2.3", raw.version));
    }
    if raw.score_keys.is_empty() || raw.score_keys.len() > limits.scores_max {
        return invalid(format!("it must declare 1 to {} score keys", limits.scores_max));
    }
    for key in &raw.score_keys {
        if !is_score_key(key, limits) {
            return invalid(format!(
                "score key {key:?} must be 1-{} characters of a-z, 0-9, `_`, `-` or `.`",
                limits.score_key_bytes_max
            ));
        }
    }
    let config_schema: serde_json::Value = match serde_json::from_str(&raw.config_schema) {
        Ok(schema @ serde_json::Value::Object(_)) => schema,
        _ => return invalid("config-schema must be a JSON object".into()),
    };
    Ok(GraderInfo {
        name: raw.name,
        version: raw.version,
        description: raw.description,
        score_keys: raw.score_keys,
        config_schema,
        capabilities: raw.capabilities,
    })
}

fn validate_scores(raw: Vec<bindings::Score>, info: &GraderInfo, limits: &Limits) -> Result<Vec<Score>, String> {
    if raw.len() > limits.scores_max {
        return Err(format!("returned {} scores, over the limit of {}", raw.len(), limits.scores_max));
    }
    let mut scores: Vec<Score> = Vec::with_capacity(raw.len());
    for score in raw {
        if !info.score_keys.contains(&score.key) {
            let key: String = score.key.chars().take(limits.score_key_bytes_max).collect();
            return Err(format!("returned undeclared score key {key:?} (declared: {})", info.score_keys.join(", ")));
        }
        if scores.iter().any(|existing| existing.key == score.key) {
            return Err(format!("returned score key {:?} twice", score.key));
        }
        if !(0.0..=1.0).contains(&score.value) {
            return Err(format!("score {:?} is {}, outside [0, 1]", score.key, score.value));
        }
        if score.comment.as_ref().is_some_and(|comment| comment.len() > limits.comment_bytes_max) {
            return Err(format!(
                "the comment of score {:?} is over the limit of {} bytes",
                score.key, limits.comment_bytes_max
            ));
        }
        scores.push(Score { key: score.key, value: score.value, comment: score.comment });
    }
    Ok(scores)
}

/// A grader name: 1-64 of `a-z 0-9 _ -`, starting with a letter.
pub fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|character: char| character.is_ascii_lowercase())
        && name
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || "_-".contains(character))
}

fn is_score_key(key: &str, limits: &Limits) -> bool {
    (1..=limits.score_key_bytes_max).contains(&key.len())
        && key
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || "_-.".contains(character))
}

/// `MAJOR.MINOR.PATCH` with an optional `-prerelease` / `+build` tail.
pub fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.chars().all(|character| character.is_ascii_digit())
                && (part.len() == 1 || !part.starts_with('0'))
        })
        && version.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_and_names() {
        for good in ["1.0.0", "0.1.0", "10.20.30", "1.3.0-rc.1", "1.0.0+build.5"] {
            assert!(is_semver(good), "{good}");
        }
        for bad in ["1.0", "v1.0.0", "1.0.x", "01.0.0", "", "1..0"] {
            assert!(!is_semver(bad), "{bad}");
        }
        assert!(is_name("must_not_say") && is_name("pii-v2"));
        assert!(!is_name("MustNotSay") && !is_name("") && !is_name("9lives") && !is_name("a/b"));
    }
}
