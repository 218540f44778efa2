include!("build_support.rs");

/// The reference graders compiled into the `assay` binary.
const REFERENCE_GRADERS: &[&str] = &["must_not_say", "must_call", "reference_match", "llm_judge"];

fn main() {
    let components = build_components(REFERENCE_GRADERS, "plugin-wasm");
    let out_directory = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut source = String::from("/// The reference graders built from `plugins/`, as (name, component bytes).\n");
    source.push_str("pub const REFERENCE_GRADERS: &[(&str, &[u8])] = &[\n");
    for (name, path) in REFERENCE_GRADERS.iter().zip(&components) {
        source.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    source.push_str("];\n");
    std::fs::write(out_directory.join("reference_graders.rs"), source).expect("could write reference_graders.rs");
}
