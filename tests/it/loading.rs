//! Components are checked at load: bytes, kind, world, metadata; compiled once.

use crate::support::{load_reference, runtime_with, small_runtime};
use assay::runtime::{Limits, LoadError, Runtime, RuntimeConfig};
use assay_tests::test_graders::WRONG_WORLD;

/// A refusal the test expects: a label, the bytes, the error variant, and a part of its message.
type Refusal = (&'static str, Vec<u8>, fn(&LoadError) -> bool, &'static str);

#[test]
fn refusals_say_what_is_wrong() {
    let runtime = small_runtime();
    let must_not_say = assay::graders::reference_grader("must_not_say").unwrap();
    let wrong_world = std::fs::read(WRONG_WORLD).unwrap();
    let cases: Vec<Refusal> = vec![
        ("text", b"hello, I am not wasm".to_vec(), |error| matches!(error, LoadError::NotWasm), "\\0asm"),
        ("empty", Vec::new(), |error| matches!(error, LoadError::NotWasm), "magic"),
        ("core module", b"\0asm\x01\0\0\0".to_vec(), |error| matches!(error, LoadError::CoreModule), "wasm32-wasip2"),
        (
            "truncated",
            must_not_say[..must_not_say.len() / 2].to_vec(),
            |error| matches!(error, LoadError::Invalid(_)),
            "invalid",
        ),
        ("wrong world", wrong_world, |error| matches!(error, LoadError::WrongWorld(_)), "assay:grader/grader@0.1.0"),
    ];
    for (label, bytes, expected, message_part) in cases {
        let error = runtime.load(&bytes).expect_err(label);
        assert!(expected(&error), "{label}: unexpected {error:?}");
        assert!(error.to_string().contains(message_part), "{label}: {error}");
    }
}

#[test]
fn a_wrong_world_names_the_mismatched_export() {
    let error = small_runtime().load(&std::fs::read(WRONG_WORLD).unwrap()).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("grade") || message.contains("metadata"), "{message}");
}

#[test]
fn oversized_components_are_refused_before_compiling() {
    let runtime = runtime_with(Limits { component_bytes_max: 1000, ..Limits::default() });
    let error = runtime.load(assay::graders::reference_grader("must_not_say").unwrap()).expect_err("refused");
    assert!(matches!(error, LoadError::TooLarge { limit_bytes: 1000, .. }), "{error}");
}

#[test]
fn reference_graders_describe_themselves() {
    let runtime = small_runtime();
    let expected: &[(&str, &[&str])] = &[
        ("must_not_say", &["policy_violations"]),
        ("must_call", &["required_tools_called", "forbidden_tools_avoided", "trajectory_match"]),
        ("reference_match", &["exact_match", "token_f1"]),
    ];
    for (name, keys) in expected {
        let grader = load_reference(&runtime, name);
        assert_eq!(grader.info.name, *name);
        assert_eq!(grader.info.score_keys, *keys);
        assert!(grader.info.config_schema.is_object());
        assert_eq!(grader.digest.len(), 64);
    }
}

#[test]
fn the_compile_cache_is_reused_and_survives_corruption() {
    let directory = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_directory: Some(directory.path().to_path_buf()),
        instances_max: 8,
        ..RuntimeConfig::default()
    };
    let bytes = assay::graders::reference_grader("must_not_say").unwrap();
    let first = Runtime::new(config()).unwrap().load(bytes).unwrap();
    let entries = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> =
            std::fs::read_dir(directory.path()).unwrap().map(|entry| entry.unwrap().path()).collect();
        files.sort();
        files
    };
    let files = entries();
    assert_eq!(files.len(), 2, "{files:?}");
    let compiled = files.iter().find(|path| path.extension().is_some_and(|extension| extension == "cwasm")).unwrap();
    assert!(compiled.file_name().unwrap().to_string_lossy().starts_with(&first.digest));
    assert!(compiled.file_name().unwrap().to_string_lossy().contains("wasmtime48.0.8"));
    let modified = std::fs::metadata(compiled).unwrap().modified().unwrap();

    // A second runtime (a restart) loads the compiled file instead of compiling.
    let second = Runtime::new(config()).unwrap().load(bytes).unwrap();
    assert_eq!(second.digest, first.digest);
    assert_eq!(std::fs::metadata(compiled).unwrap().modified().unwrap(), modified, "recompiled");

    // A corrupted entry is detected, not executed, and rewritten.
    let mut corrupted = std::fs::read(compiled).unwrap();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(compiled, &corrupted).unwrap();
    let third = Runtime::new(config()).unwrap().load(bytes).unwrap();
    assert_eq!(third.info.name, "must_not_say");
    assert_ne!(std::fs::read(compiled).unwrap(), corrupted, "the corrupted entry was kept");
}
