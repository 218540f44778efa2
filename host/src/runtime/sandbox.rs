//! The sandbox one grade call runs in: a deny-all WASI context with fixed
//! clocks and randomness, a bounded log for stdout/stderr, and a memory limiter
//! that remembers when it refused to grow. The one way out is the judge
//! capability (`judge.rs`), and only through the host, when it is granted.

use super::judge::JudgeSession;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// The wall-clock time every grader sees: 2024-01-01T00:00:00Z. A grader's
/// score must not depend on when it runs, so re-grading reproduces it.
pub const FIXED_WALL_CLOCK_SECONDS: u64 = 1_704_067_200;

/// Store data of one grade call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub log: BoundedLog,
    /// The judge as this call sees it; `None` for graders that do not import it
    /// and for `metadata()`.
    pub judge: Option<Box<JudgeSession>>,
}

impl CallState {
    /// A fresh sandbox: no files, no network, no environment, no arguments,
    /// closed stdin, fixed clocks and randomness, output into a bounded log.
    pub fn new(memory_bytes_max: usize, log_bytes_max: usize) -> CallState {
        let log = BoundedLog::new(log_bytes_max);
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a, 0x17, 0x42, 0x99]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x11, 0x22, 0x33, 0x44]))
            .insecure_random_seed(0x0a55_a700_0000_0000_0000_0000_0000_0001)
            .max_random_size(64 * 1024)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState { wasi, table: ResourceTable::new(), limiter: MemoryLimiter::new(memory_bytes_max), log, judge: None }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps the linear memory of all memories of one instance together.
pub struct MemoryLimiter {
    memory_bytes_max: usize,
    memory_bytes_used: usize,
    /// Set when a growth was refused: the call's failure is then `memory_limit`.
    pub limit_hit: bool,
}

impl MemoryLimiter {
    fn new(memory_bytes_max: usize) -> MemoryLimiter {
        MemoryLimiter { memory_bytes_max, memory_bytes_used: 0, limit_hit: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.memory_bytes_used.saturating_add(growth) > self.memory_bytes_max {
            self.limit_hit = true;
            return Ok(false);
        }
        self.memory_bytes_used += growth;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a grader has no reason for many.
        Ok(desired <= 100_000)
    }
}

/// stdout and stderr of one call: the first `capacity` bytes are kept, the
/// rest counted and dropped, so a chatty grader cannot exhaust host memory and
/// is never failed for printing.
#[derive(Clone)]
pub struct BoundedLog {
    inner: Arc<Mutex<LogBuffer>>,
}

struct LogBuffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped_bytes: u64,
}

impl BoundedLog {
    fn new(capacity: usize) -> BoundedLog {
        BoundedLog { inner: Arc::new(Mutex::new(LogBuffer { bytes: Vec::new(), capacity, dropped_bytes: 0 })) }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped_bytes += (bytes.len() - kept) as u64;
    }

    /// The captured text, with a note when some of it was dropped.
    pub fn text(&self) -> String {
        let buffer = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut text = String::from_utf8_lossy(&buffer.bytes).into_owned();
        if buffer.dropped_bytes > 0 {
            text.push_str(&format!("\n[{} more bytes dropped]", buffer.dropped_bytes));
        }
        text
    }
}

impl IsTerminal for BoundedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BoundedLog {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedLog {
    fn poll_write(self: Pin<&mut Self>, _context: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECONDS)
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
