//! # assay-sdk
//!
//! Write an [Assay](https://example.invalid/assay) grader in Rust: implement
//! [`Grader`] for a type and register it with [`export_grader!`]. Build it with
//! `cargo build --release --target wasm32-wasip2` and the `.wasm` file in
//! `target/wasm32-wasip2/release/` is a component the Assay host can load.
//!
//! ```
//! use assay_sdk::{Case, GradeError, Grader, GraderInfo, NoConfig, Score};
//!
//! struct MustNotSay;
//!
//! impl Grader for MustNotSay {
//!     type Config = NoConfig;
//!
//!     fn info() -> GraderInfo {
//!         GraderInfo::new("must_not_say", "1.0.0")
//!             .describe("Fails when the agent says a forbidden phrase.")
//!             .score_keys(&["policy_violations"])
//!     }
//!
//!     fn grade(case: &Case, _config: &NoConfig) -> Result<Vec<Score>, GradeError> {
//!         let said = case.assistant_text_normalized();
//!         let found = said.find_phrases(&case.example.must_not_say);
//!         Ok(vec![if found.is_empty() {
//!             Score::pass("policy_violations")
//!         } else {
//!             Score::fail("policy_violations", format!("said {}", found.join(", ")))
//!         }])
//!     }
//! }
//!
//! assay_sdk::export_grader!(MustNotSay);
//! ```
//!
//! The macro exports the grader only when compiling for WebAssembly, so the same
//! crate can be unit-tested natively with `cargo test`.
//!
//! A grader that asks a language model (LLM-as-judge) calls
//! [`judge::complete`], lists the `judge` capability in its [`GraderInfo`]
//! and is registered with [`export_judge_grader!`] instead; see [`judge`].

// The judge bindings name the shared types by this crate's name, a path that
// also resolves in the grader crates their export macro expands in.
extern crate self as assay_sdk;

pub mod judge;
pub mod testing;
mod text;

pub use text::{NormalizedText, normalize};

#[doc(hidden)]
pub mod __bindings {
    // Bindings are generated from the one WIT folder at the workspace root.
    // They stay hidden: grader authors use the re-exports below.
    wit_bindgen::generate!({
        path: "../wit",
        world: "grader",
        pub_export_macro: true,
        export_macro_name: "__export_grader_world",
        default_bindings_module: "assay_sdk::__bindings",
    });
}

#[doc(hidden)]
pub mod __judge_bindings {
    // The `judge-grader` world: `grader` plus the `judge` import. Its types
    // are those of `__bindings`, so one `Case` serves both worlds.
    wit_bindgen::generate!({
        path: "../wit",
        world: "judge-grader",
        with: {
            "assay:grader/types@0.1.0": assay_sdk::__bindings::assay::grader::types,
        },
        generate_all,
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "__export_judge_grader_world",
        default_bindings_module: "assay_sdk::__judge_bindings",
    });
}

use __bindings::assay::grader::types as wit;

/// What the agent produced for the example.
pub use wit::AgentRun;
/// The example and the agent run, graded together.
pub use wit::Case;
/// One golden example.
pub use wit::Example;
/// Example metadata: typed `source`, `severity`, `persona`, and the whole object as JSON.
pub use wit::ExampleMetadata;
/// A failure the grader reports itself: bad config, unusable case, or any other.
pub use wit::GradeError;
/// What a grader says about itself.
pub use wit::GraderInfo;
/// One conversation turn.
pub use wit::Message;
/// The SME's ideal output: a text answer or a structured (JSON) trajectory.
pub use wit::Reference;
/// One named score in [0, 1] with an optional comment.
pub use wit::Score;
/// A tool available to the agent.
pub use wit::Tool;
/// A tool call: name, arguments as JSON text, optional id.
pub use wit::ToolCall;

/// The version of the WIT world this SDK builds graders against.
pub const WIT_WORLD_VERSION: &str = "assay:grader@0.1.0";

/// A grader: describe yourself, then grade one case at a time.
///
/// Each call to [`Grader::grade`] runs in a fresh instance, so a grader cannot
/// keep state between cases (and does not need to guard against it).
pub trait Grader {
    /// The configuration, parsed from the JSON object the host passes.
    /// Use [`NoConfig`] when the grader takes none.
    type Config: serde::de::DeserializeOwned;

    /// Name, version, description, score keys and config schema.
    fn info() -> GraderInfo;

    /// Grades one case. Return a [`GradeError`] for a failure you detect; a
    /// panic is also caught by the host but is reported as a crash.
    fn grade(case: &Case, config: &Self::Config) -> Result<Vec<Score>, GradeError>;
}

/// The configuration of a grader that takes none. Accepts `{}` and `null`,
/// refuses any key so a typo in a pinned config does not pass silently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoConfig;

impl<'de> serde::Deserialize<'de> for NoConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?;
        match value {
            Some(map) if !map.is_empty() => {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                Err(serde::de::Error::custom(format!(
                    "this grader takes no configuration, got keys: {}",
                    keys.join(", ")
                )))
            }
            _ => Ok(NoConfig),
        }
    }
}

/// Parses a grader configuration from JSON text. Empty text means `{}`.
pub fn config_from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, GradeError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|error| GradeError::InvalidConfig(error.to_string()))
}

impl GraderInfo {
    /// Starts the description of a grader with its registry name and semver version.
    pub fn new(name: &str, version: &str) -> Self {
        GraderInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            score_keys: Vec::new(),
            config_schema: r#"{"type":"object","additionalProperties":false}"#.to_owned(),
            capabilities: Vec::new(),
        }
    }

    /// Sets the one-line description shown in `assay graders`.
    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Declares every score key `grade` can return.
    pub fn score_keys(mut self, keys: &[&str]) -> Self {
        self.score_keys = keys.iter().map(|key| (*key).to_owned()).collect();
        self
    }

    /// Sets the JSON schema of the configuration object.
    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema = schema.to_string();
        self
    }

    /// Declares the host capabilities the grader uses, e.g. `&["judge"]` for
    /// a grader that calls [`judge::complete`].
    pub fn capabilities(mut self, capabilities: &[&str]) -> Self {
        self.capabilities = capabilities.iter().map(|capability| (*capability).to_owned()).collect();
        self
    }
}

impl Score {
    /// A score with a value, clamped into [0, 1] (NaN becomes 0).
    pub fn new(key: &str, value: f64) -> Self {
        let value = if value.is_nan() { 0.0 } else { value.clamp(0.0, 1.0) };
        Score { key: key.to_owned(), value, comment: None }
    }

    /// A score of 1.
    pub fn pass(key: &str) -> Self {
        Score::new(key, 1.0)
    }

    /// A score of 0 with the reason.
    pub fn fail(key: &str, comment: impl Into<String>) -> Self {
        Score::new(key, 0.0).with_comment(comment)
    }

    /// Attaches a comment explaining the score.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

impl Case {
    /// All assistant text of the agent run, joined with single spaces.
    pub fn assistant_text(&self) -> String {
        self.run.assistant_text()
    }

    /// The assistant text, lowercased with whitespace runs collapsed, ready
    /// for phrase search.
    pub fn assistant_text_normalized(&self) -> NormalizedText {
        NormalizedText::from_parts(
            self.run
                .messages
                .iter()
                .filter(|message| message.role == "assistant")
                .map(|message| message.content.as_str()),
        )
    }

    /// The final answer: the content of the run's last assistant message with text.
    pub fn final_answer(&self) -> Option<&str> {
        self.run
            .messages
            .iter()
            .rev()
            .find(|message| message.role == "assistant" && !message.content.trim().is_empty())
            .map(|message| message.content.as_str())
    }

    /// The reference answer when the SME recorded one as text.
    pub fn reference_text(&self) -> Option<&str> {
        match &self.example.reference {
            Some(Reference::Text(text)) => Some(text),
            _ => None,
        }
    }
}

impl AgentRun {
    /// All assistant text, joined with single spaces.
    pub fn assistant_text(&self) -> String {
        let mut text = String::new();
        for message in self.messages.iter().filter(|message| message.role == "assistant") {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&message.content);
        }
        text
    }

    /// Names of the tools the agent called, in call order.
    pub fn called_tool_names(&self) -> Vec<&str> {
        self.tool_calls.iter().map(|call| call.name.as_str()).collect()
    }
}

impl ToolCall {
    /// The arguments parsed as JSON (`Null` when they are not valid JSON).
    pub fn arguments_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.arguments).unwrap_or(serde_json::Value::Null)
    }
}

#[doc(hidden)]
pub mod __private {
    //! Glue called by [`export_grader!`](crate::export_grader); not part of the API.
    use super::*;

    pub fn info<G: Grader>() -> GraderInfo {
        G::info()
    }

    pub fn grade<G: Grader>(case: Case, config: String) -> Result<Vec<Score>, GradeError> {
        let config: G::Config = config_from_json(&config)?;
        G::grade(&case, &config)
    }
}

/// Exports a type implementing [`Grader`] as the component's `grader` world.
///
/// Use it once per crate. Outside WebAssembly it expands to nothing, so the
/// grader can be unit-tested natively.
#[macro_export]
macro_rules! export_grader {
    ($grader:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct AssayGraderExport;
            impl $crate::__bindings::Guest for AssayGraderExport {
                fn metadata() -> $crate::GraderInfo {
                    $crate::__private::info::<$grader>()
                }
                fn grade(
                    case: $crate::Case,
                    config: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Score>, $crate::GradeError> {
                    $crate::__private::grade::<$grader>(case, config)
                }
            }
    $crate::__bindings::__export_grader_world!(AssayGraderExport with_types_in $crate::__bindings);
        };
    };
}

/// Exports a type implementing [`Grader`] as the component's `judge-grader`
/// world: a grader that may call [`judge::complete`]. Its [`Grader::info`]
/// must list the `judge` capability (`.capabilities(&["judge"])`), or the host
/// refuses the component.
///
/// Use it once per crate, instead of [`export_grader!`]. Outside WebAssembly it
/// expands to nothing; unit tests answer [`judge::complete`] with
/// [`testing::with_judge`].
#[macro_export]
macro_rules! export_judge_grader {
    ($grader:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct AssayJudgeGraderExport;
            impl $crate::__judge_bindings::Guest for AssayJudgeGraderExport {
                fn metadata() -> $crate::GraderInfo {
                    $crate::__private::info::<$grader>()
                }
                fn grade(
                    case: $crate::Case,
                    config: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Score>, $crate::GradeError> {
                    $crate::__private::grade::<$grader>(case, config)
                }
            }
            $crate::__judge_bindings::__export_judge_grader_world!(
                AssayJudgeGraderExport with_types_in $crate::__judge_bindings
            );
        };
    };
}
