//! Precompiled components on disk, so a restart or a second CLI run does not
//! compile a grader again.
//!
//! The key is the sha256 of the wasm bytes, the Wasmtime version and the
//! engine's compatibility hash (its configuration), so a changed engine never
//! reads an incompatible artifact. Deserializing precompiled code is unsafe
//! for untrusted bytes: the cache only loads files whose sha256 matches the
//! sidecar it wrote itself next to them.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The pinned Wasmtime version, part of every cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    directory: PathBuf,
    /// Components compiled (not found in the cache) through this handle.
    compiled: Arc<AtomicU64>,
}

impl CompileCache {
    pub fn new(directory: impl Into<PathBuf>) -> CompileCache {
        CompileCache { directory: directory.into(), compiled: Arc::default() }
    }

    /// How many components this handle had to compile because the cache did not have them.
    pub fn compiled_count(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Loads the precompiled component for `digest`, or compiles `wasm` and stores it.
    /// The cache is an optimisation: when it cannot be read or written the
    /// component is compiled in memory.
    pub fn load_or_compile(&self, engine: &Engine, digest: &str, wasm: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path_for(engine, digest);
        if let Some(component) = self.load(engine, &path) {
            return Ok(component);
        }
        let compiled = engine.precompile_component(wasm)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.store(&path, &compiled) {
            tracing::warn!(path = %path.display(), %error, "could not write the compile cache");
        }
        // SAFETY: `compiled` was produced by this engine a moment ago.
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(engine, &compiled)
        }
    }

    fn path_for(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();
        self.directory.join(format!("{digest}-wasmtime{WASMTIME_VERSION}-{engine_hash:016x}.cwasm"))
    }

    fn load(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let expected = std::fs::read_to_string(path.with_extension("sha256")).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(path = %path.display(), "compile cache entry does not match its checksum; recompiling");
            return None;
        }
        // SAFETY: the bytes are exactly those this host wrote for this engine
        // configuration (checked by the sidecar checksum and the key).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        component.ok()
    }

    fn store(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.directory)?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, compiled)?;
        std::fs::write(path.with_extension("sha256"), hex::encode(Sha256::digest(compiled)))?;
        std::fs::rename(&temporary, path)
    }
}
