include!("../host/build_support.rs");

/// Graders written for the tests: hostile behaviour, a wrong world, a later
/// `must_not_say` for the registry, a `metadata()` that traps, and a judge
/// grader that does not declare the capability.
const TEST_GRADERS: &[&str] = &[
    "test-grader-hostile",
    "test-grader-wrong_world",
    "test-grader-must_not_say_next",
    "test-grader-metadata_trap",
    "test-grader-judge_undeclared",
];

fn main() {
    let components = build_components(TEST_GRADERS, "test-grader-wasm");
    let out_directory = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut source = String::new();
    for (name, path) in TEST_GRADERS.iter().zip(&components) {
        let constant = name.trim_start_matches("test-grader-").to_uppercase();
        source.push_str(&format!(
            "/// Path of the `{name}` component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    std::fs::write(out_directory.join("test_graders.rs"), source).expect("could write test_graders.rs");
}
