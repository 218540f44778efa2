//! The `assay` command line: one file per subcommand.

mod client;
mod compare;
mod dataset;
mod eval;
mod example;
mod grade;
mod graders;
mod serve;
mod token;

use crate::runtime::{Limits, LoadedGrader, Runtime, RuntimeConfig};
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
        let config = RuntimeConfig { limits, cache_directory, instances_max: 64, ..RuntimeConfig::default() };
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
