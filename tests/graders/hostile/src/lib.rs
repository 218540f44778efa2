//! A grader that misbehaves on purpose, chosen by `{"attack": "..."}` in its
//! config. The runtime tests use it to show every attack is contained and
//! classified, and that the host grades normally afterwards.

use assay_sdk::{Case, GradeError, Grader, GraderInfo, Score};
use serde::Deserialize;
use std::sync::atomic::{AtomicU32, Ordering};

/// The grader.
pub struct Hostile;

/// Which misbehaviour to perform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub attack: String,
    /// Port for the `socket` attack.
    #[serde(default)]
    pub port: u16,
}

static CALLS: AtomicU32 = AtomicU32::new(0);

impl Grader for Hostile {
    type Config = Config;

    fn info() -> GraderInfo {
        GraderInfo::new("hostile", "0.1.0")
            .describe("Misbehaves on purpose, for the sandbox tests.")
            .score_keys(&["hostile"])
    }

    fn grade(case: &Case, config: &Config) -> Result<Vec<Score>, GradeError> {
        let score = |value: f64, comment: String| Ok(vec![Score::new("hostile", value).with_comment(comment)]);
        match config.attack.as_str() {
            "none" => score(1.0, format!("graded {}", case.example.id)),
            "infinite_loop" => loop {
                std::hint::black_box(());
            },
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => score(recurse(std::hint::black_box(1)) as f64, "unreachable".into()),
            "panic" => panic!("grader panicked on purpose"),
            "many_scores" => Ok((0..10_000).map(|_| Score::pass("hostile")).collect()),
            "huge_comment" => score(1.0, "x".repeat(4 << 20)),
            "undeclared_key" => Ok(vec![Score::pass("not_declared")]),
            "out_of_range" => Ok(vec![Score { key: "hostile".into(), value: 1.5, comment: None }]),
            "nan" => Ok(vec![Score { key: "hostile".into(), value: f64::NAN, comment: None }]),
            "grader_error" => Err(GradeError::Failed("refused on purpose".into())),
            "print" => {
                for line in 0..10_000 {
                    println!("line {line} of chatter that fills the log");
                    eprintln!("line {line} on stderr");
                }
                score(1.0, "printed".into())
            }
            "read_file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => score(1.0, format!("read {} bytes", text.len())),
                Err(error) => score(0.0, format!("denied: {error}")),
            },
            "list_directory" => match std::fs::read_dir("/") {
                Ok(entries) => score(1.0, format!("listed {} entries", entries.count())),
                Err(error) => score(0.0, format!("denied: {error}")),
            },
            "read_env" => {
                let variables: Vec<String> = std::env::vars().map(|(key, _)| key).collect();
                let arguments: Vec<String> = std::env::args().collect();
                let visible = !variables.is_empty() || !arguments.is_empty();
                score(if visible { 1.0 } else { 0.0 }, format!("vars={variables:?} args={arguments:?}"))
            }
            "stdin" => {
                let mut text = String::new();
                let read = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text);
                score(if text.is_empty() { 0.0 } else { 1.0 }, format!("stdin: {read:?}"))
            }
            "socket" => match std::net::TcpStream::connect(("127.0.0.1", config.port)) {
                Ok(_) => score(1.0, "connected".into()),
                Err(error) => score(0.0, format!("denied: {error}")),
            },
            "clock" => {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|duration| duration.as_secs())
                    .unwrap_or_default();
                let start = std::time::Instant::now();
                let mut spin = 0u64;
                for index in 0..100_000u64 {
                    spin = spin.wrapping_add(std::hint::black_box(index));
                }
                std::hint::black_box(spin);
                score(1.0, format!("wall={wall} elapsed_ns={}", start.elapsed().as_nanos()))
            }
            "random" => {
                use std::hash::BuildHasher;
                let hash = std::collections::hash_map::RandomState::new().hash_one(42u32);
                score(1.0, format!("hash={hash}"))
            }
            "counter" => {
                let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                score(1.0, format!("calls={calls}"))
            }
            other => Err(GradeError::InvalidConfig(format!("unknown attack {other:?}"))),
        }
    }
}

/// Recurses without end; the frame is kept alive so it cannot become a loop.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1) + frame[depth as usize % 16]
}

assay_sdk::export_grader!(Hostile);
