//! The `assay` command line: one file per subcommand.

mod client;
mod compare;
mod dataset;
mod demo_agent;
mod eval;
mod example;
mod experiment;
mod grade;
mod grader;
mod graders;
mod mine;
mod queue;
mod serve;
mod token;
mod traces;

use crate::runtime::{JudgeConfig, Limits, LoadedGrader, Runtime, RuntimeConfig};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a usage or infrastructure error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the work ran but its verdict is negative (a grader failed, a gate did not hold).
pub const EXIT_FAILED: u8 = 1;

/// Assay: golden datasets and sandboxed WebAssembly graders for AI agents.
#[derive(Debug, Parser)]
#[command(name = "assay", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Grade one agent run against one example with one grader.
    Grade(grade::GradeArgs),
    /// Grade an agent's outputs against a dataset with several graders, summarise, and gate for CI.
    Eval(Box<eval::EvalArgs>),
    /// List the reference graders built into this binary, with their metadata.
    Graders(graders::GradersArgs),
    /// Run the server: the HTTP API on the embedded store.
    Serve(serve::ServeArgs),
    /// Make bearer tokens.
    Token(token::TokenArgs),
    /// Versioned datasets on a server.
    Dataset(dataset::DatasetArgs),
    /// Single examples of a dataset on a server.
    Example(example::ExampleArgs),
    /// Compare two experiments on a server: per key deltas, regressions first.
    Compare(compare::CompareArgs),
    /// Production traces on a server: ingest a file, list, show, feedback, retention.
    Traces(traces::TracesArgs),
    /// Experiments on a server: list, show, status, re-grade without calling the agent.
    Experiment(experiment::ExperimentArgs),
    /// Serve the scripted demo triage agent, a target for `assay eval --target`.
    DemoAgent(demo_agent::DemoAgentArgs),
    /// The server's grader registry: publish, promote, roll back, retire, shadow.
    Grader(grader::GraderArgs),
    /// Mine a project's production traces with a LangSmith filter, into an annotation queue.
    Mine(mine::MineArgs),
    /// Saved mining rules: templates, create, list, run, delete.
    Rule(mine::RuleArgs),
    /// Annotation queues: create, list, show, add, next, accept, reject, skip, log.
    Queue(queue::QueueArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Grade(arguments) => grade::run(arguments),
        Command::Eval(arguments) => eval::run(*arguments),
        Command::Graders(arguments) => graders::run(arguments),
        Command::Serve(arguments) => serve::run(arguments),
        Command::Token(arguments) => token::run(arguments),
        Command::Dataset(arguments) => dataset::run(arguments),
        Command::Example(arguments) => example::run(arguments),
        Command::Compare(arguments) => compare::run(arguments),
        Command::Traces(arguments) => traces::run(arguments),
        Command::Experiment(arguments) => experiment::run(arguments),
        Command::DemoAgent(arguments) => demo_agent::run(arguments),
        Command::Grader(arguments) => grader::run(arguments),
        Command::Mine(arguments) => mine::run(arguments),
        Command::Rule(arguments) => mine::run_rule(arguments),
        Command::Queue(arguments) => queue::run(arguments),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            // A refusal by the server is a verdict (1); anything else is usage or infrastructure (2).
            if error.downcast_ref::<client::Refused>().is_some() {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::from(EXIT_USAGE)
            }
        }
    }
}

/// Options of the grader sandbox, shared by every command that grades.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Memory cap per grade call, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib_max: usize,
    /// Fuel budget per grade call (about one unit per Wasm instruction).
    #[arg(long, default_value_t = Limits::default().grade_fuel_max)]
    pub fuel_max: u64,
    /// Wall-clock deadline per grade call, in milliseconds.
    #[arg(long, default_value_t = Limits::default().grade_deadline_ms)]
    pub deadline_ms: u64,
    /// Where compiled graders are cached [default: $XDG_CACHE_HOME/assay or ~/.cache/assay].
    #[arg(long, env = "ASSAY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub judge: JudgeArgs,
}

/// The environment variable the judge's API key is read from by default.
pub const JUDGE_API_KEY_ENV: &str = "ASSAY_JUDGE_API_KEY";

/// The judge model graders may consult (the `judge` capability), shared by
/// `serve` and the commands that grade locally.
#[derive(Debug, Clone, Args)]
pub struct JudgeArgs {
    /// Base URL of an OpenAI-compatible API for LLM-as-judge graders, e.g.
    /// http://127.0.0.1:9000/v1 (requests go to URL/chat/completions). Without it no grader gets the judge.
    #[arg(long, value_name = "URL", requires = "judge_model")]
    pub judge_url: Option<String>,
    /// The model the judge asks.
    #[arg(long, value_name = "NAME", requires = "judge_url")]
    pub judge_model: Option<String>,
    /// The environment variable holding the judge's API key, sent as a bearer token
    /// [default: ASSAY_JUDGE_API_KEY, used when set].
    #[arg(long, value_name = "VAR", requires = "judge_url")]
    pub judge_api_key_env: Option<String>,
    /// Deadline of one judge call, waiting for a free slot included, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = JudgeConfig::new("", "").timeout_ms)]
    pub judge_timeout_ms: u64,
    /// Judge calls in flight at once, across every grader.
    #[arg(long, value_name = "N", default_value_t = JudgeConfig::new("", "").max_concurrency)]
    pub judge_max_concurrency: usize,
    /// A grader allowed to consult the judge (repeat for several; `*` for every grader that asks).
    #[arg(long, value_name = "NAME", requires = "judge_url")]
    pub judge_allow: Vec<String>,
}

impl JudgeArgs {
    /// The judge configuration, or `None` without `--judge-url`.
    pub fn config(&self) -> anyhow::Result<Option<JudgeConfig>> {
        let (Some(url), Some(model)) = (&self.judge_url, &self.judge_model) else {
            return Ok(None);
        };
        let mut config = JudgeConfig::new(url.as_str(), model.as_str());
        config.api_key = self.api_key()?;
        config.timeout_ms = self.judge_timeout_ms;
        config.max_concurrency = self.judge_max_concurrency;
        config.allowed = self.judge_allow.clone();
        let problems = config.problems();
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("; "));
        }
        if config.allowed.is_empty() {
            eprintln!(
                "warning: a judge is configured but no grader is allowed to use it; \
                 add --judge-allow NAME (or --judge-allow '*')"
            );
        }
        Ok(Some(config))
    }

    /// The key from `--judge-api-key-env` (which must be set), else from
    /// [`JUDGE_API_KEY_ENV`] when set.
    fn api_key(&self) -> anyhow::Result<Option<String>> {
        let Some(variable) = &self.judge_api_key_env else {
            return Ok(std::env::var(JUDGE_API_KEY_ENV).ok().filter(|key| !key.is_empty()));
        };
        let key = std::env::var(variable)
            .with_context(|| format!("--judge-api-key-env names {variable}, which is not set (or not UTF-8)"))?;
        Ok(Some(key))
    }
}

impl SandboxArgs {
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        let limits = Limits {
            memory_bytes_max: self.memory_mib_max.checked_mul(1 << 20).context("--memory-mib-max is too large")?,
            grade_fuel_max: self.fuel_max,
            grade_deadline_ms: self.deadline_ms,
            ..Limits::default()
        };
        let cache_directory =
            if self.no_cache { None } else { self.cache_dir.clone().or_else(default_cache_directory) };
        let judge = self.judge.config()?;
        let config = RuntimeConfig { limits, cache_directory, instances_max: 64, judge, ..RuntimeConfig::default() };
        Ok(Runtime::new(config)?)
    }
}

fn default_cache_directory() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("assay").join("compiled"))
}

/// Loads a grader given by reference-grader name or by the path of a `.wasm` file.
pub fn load_grader(runtime: &Runtime, grader: &str) -> anyhow::Result<LoadedGrader> {
    let bytes: std::borrow::Cow<'static, [u8]> = match crate::graders::reference_grader(grader) {
        Some(bytes) => bytes.into(),
        None if grader.ends_with(".wasm") || grader.contains('/') => {
            std::fs::read(grader).with_context(|| format!("could not read grader file {grader}"))?.into()
        }
        None => {
            let known: Vec<&str> = crate::graders::REFERENCE_GRADERS.iter().map(|(name, _)| *name).collect();
            anyhow::bail!("no grader called {grader:?}: give a .wasm path or one of {}", known.join(", "))
        }
    };
    runtime.load(&bytes).with_context(|| format!("grader {grader} was refused"))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
