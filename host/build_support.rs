// Builds guest components with a nested `cargo build --target wasm32-wasip2`.
// Shared by the build scripts of `host` (reference graders) and `tests`
// (hostile test graders) through `include!`. The nested build uses its own
// target directory so it never waits on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `packages` for wasm32-wasip2 with the `plugin` profile and returns
/// the path of each package's component, in order.
fn build_components(packages: &[&str], target_subdirectory: &str) -> Vec<PathBuf> {
    let manifest_directory = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_directory.parent().expect("the crate is inside the workspace").to_path_buf();
    let target_directory = workspace.join("target").join(target_subdirectory);
    for watched in ["wit", "sdk/src", "sdk/Cargo.toml", "plugins", "tests/graders", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_directory);
    for package in packages {
        command.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host,
    // not for the guests.
    for variable in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        command.env_remove(variable);
    }
    let status = command.status().expect("could run the nested cargo build of the Wasm components");
    assert!(
        status.success(),
        "building {packages:?} for wasm32-wasip2 failed; is the target installed? (`rustup target add wasm32-wasip2`)"
    );
    packages
        .iter()
        .map(|package| {
            let file = target_directory.join("wasm32-wasip2/plugin").join(format!("{}.wasm", package.replace('-', "_")));
            assert!(Path::new(&file).exists(), "the nested build did not produce {}", file.display());
            file
        })
        .collect()
}
