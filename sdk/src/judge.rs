//! Ask a language model while grading: the host's `judge` capability
//! (LLM-as-judge).
//!
//! The host decides which model answers, and whether this grader may ask at
//! all: the grader lists `judge` in its capabilities and the operator allows
//! it by name. When it may not, or the model fails, [`complete`] returns an
//! error the grader usually reports as [`GradeError::Failed`](crate::GradeError).
//! The host records every request and answer with the score, and a re-grade
//! replays the recorded answers, so a judge grader re-grades identically.
//!
//! ```
//! use assay_sdk::judge::{self, ChatMessage, JudgeRequest};
//! use assay_sdk::{Case, GradeError, Grader, GraderInfo, NoConfig, Score};
//!
//! struct Polite;
//!
//! impl Grader for Polite {
//!     type Config = NoConfig;
//!
//!     fn info() -> GraderInfo {
//!         GraderInfo::new("polite", "1.0.0").score_keys(&["polite"]).capabilities(&["judge"])
//!     }
//!
//!     fn grade(case: &Case, _config: &NoConfig) -> Result<Vec<Score>, GradeError> {
//!         let request = JudgeRequest::new(vec![
//!             ChatMessage::system("Answer yes or no: is this reply polite?"),
//!             ChatMessage::user(&case.assistant_text()),
//!         ]);
//!         let answer = judge::complete(&request).map_err(GradeError::Failed)?;
//!         let polite = answer.content.trim().to_lowercase().starts_with("yes");
//!         Ok(vec![Score::new("polite", if polite { 1.0 } else { 0.0 })])
//!     }
//! }
//!
//! assay_sdk::export_judge_grader!(Polite);
//! ```

use crate::__judge_bindings::assay::grader::judge as wit;

/// One chat turn: `role` (`system`, `user` or `assistant`) and `content`.
pub use wit::ChatMessage;
/// What to ask the model: the messages, and optionally a temperature and an answer length in tokens.
pub use wit::JudgeRequest;
/// The model's answer: its text, the model's name and the tokens used.
pub use wit::JudgeResponse;

/// Asks the host's judge model. Inside WebAssembly this calls the host;
/// natively (unit tests) it calls the double installed with
/// [`testing::with_judge`](crate::testing::with_judge), or fails when there is none.
pub fn complete(request: &JudgeRequest) -> Result<JudgeResponse, String> {
    #[cfg(target_family = "wasm")]
    {
        wit::complete(request)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        crate::testing::judge_double(request)
    }
}

impl ChatMessage {
    /// A turn with any role.
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.to_owned(), content: content.to_owned() }
    }

    /// A `system` turn: the instructions.
    pub fn system(content: &str) -> Self {
        ChatMessage::new("system", content)
    }

    /// A `user` turn.
    pub fn user(content: &str) -> Self {
        ChatMessage::new("user", content)
    }

    /// An `assistant` turn (an earlier answer of the model).
    pub fn assistant(content: &str) -> Self {
        ChatMessage::new("assistant", content)
    }
}

impl JudgeRequest {
    /// A request with the host's default temperature and answer length.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        JudgeRequest { messages, temperature: None, max_tokens: None }
    }

    /// Sets the sampling temperature.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Caps the answer's length in tokens (the host may cap it lower).
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
}
