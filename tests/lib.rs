//! Test support for the end-to-end tests in `it/`: paths of the graders built
//! for the tests from `graders/`.

/// Paths of the test graders' components, built by `build.rs`.
pub mod test_graders {
    include!(concat!(env!("OUT_DIR"), "/test_graders.rs"));
}
