//! Dataset store costs: a one-example commit into a 100-example vs a
//! 100,000-example dataset (the ratio should be near 1: a commit must not copy
//! the dataset), reading and exporting a pinned 1,500-example version, and the
//! bulk import rate.
//!
//! Run: `cargo bench -p assay --bench store` (uses `shared/bench/peers/gen.py`
//! for realistic examples; set `ASSAY_PEERS_DIR` if it is elsewhere).

use assay::model::Example;
use assay::store::{Change, Commit, DatasetKind, NewDataset, Store};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SINGLE_COMMITS: usize = 200;

fn main() {
    let work = tempfile::tempdir().unwrap();
    let generated =
        std::process::Command::new("python3").arg(peers_directory().join("gen.py")).arg(work.path()).output().unwrap();
    assert!(generated.status.success(), "gen.py failed");
    let workload: Vec<Value> = std::fs::read_to_string(work.path().join("dataset.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let directory = tempfile::tempdir().unwrap();
    let store = Store::open(directory.path()).unwrap();

    // Bulk import: 100,000 realistic examples in one version.
    let large = jsonl_with_copies(&workload, 100_000);
    create(&store, "large");
    let start = Instant::now();
    let imported = store.import("large", &large, "bench", "100k import").unwrap();
    let import_seconds = start.elapsed().as_secs_f64();
    assert_eq!(imported.example_count, 100_000);

    create(&store, "small");
    store.import("small", &jsonl_with_copies(&workload, 100), "bench", "100 import").unwrap();

    // Interleaved, so background flushing and cache warmth hit both alike.
    let (small_commit, large_commit) = interleaved_commit_milliseconds(&store, ["small", "large"], &workload[0]);

    // A pinned 1,500-example version, read and exported after later commits.
    create(&store, "golden");
    let golden = workload.iter().map(|example| example.to_string() + "\n").collect::<String>();
    let pinned = store.import("golden", &golden, "bench", "standard workload").unwrap().version;
    store.set_tag("golden", "v1.0", pinned, "bench").unwrap();
    for template in workload.iter().take(20) {
        let mut example: Example = serde_json::from_value(template.clone()).unwrap();
        example.id = None;
        store
            .commit(
                "golden",
                Commit { author: "bench".into(), note: "later".into(), changes: vec![Change::Add(example)] },
            )
            .unwrap();
    }
    let (name, version) = store.resolve("golden@v1.0").unwrap();
    let read = median_milliseconds(20, || assert_eq!(store.read_version(&name, version).unwrap().len(), 1_500));
    let export = median_milliseconds(20, || {
        std::hint::black_box(store.export_jsonl(&name, version).unwrap());
    });

    println!("store benchmark (sled, flush before every acknowledgement), {} MiB of JSONL imported", large.len() >> 20);
    println!("  {:<62} {:>10}", "measure", "value");
    println!(
        "  {:<62} {:>7.2} ms",
        format!("commit of one example into a 100-example dataset (median of {SINGLE_COMMITS})"),
        small_commit
    );
    println!(
        "  {:<62} {:>7.2} ms",
        format!("commit of one example into a 100,000-example dataset (median of {SINGLE_COMMITS})"),
        large_commit
    );
    println!("  {:<62} {:>8.2}x", "ratio large / small (target: near 1)", large_commit / small_commit);
    println!("  {:<62} {:>7.2} ms", "read pinned golden@v1.0 (1,500 examples, median of 20)", read);
    println!("  {:<62} {:>7.2} ms", "export pinned golden@v1.0 as JSONL (median of 20)", export);
    println!("  {:<62} {:>7.0} /s", "bulk import rate (100,000 examples in one version)", 100_000.0 / import_seconds);
}

fn create(store: &Store, name: &str) {
    store
        .create_dataset(NewDataset {
            name: name.into(),
            description: String::new(),
            kind: DatasetKind::Golden,
            schema: Default::default(),
        })
        .unwrap();
}

/// `count` examples cycling through the workload, each with a fresh id.
fn jsonl_with_copies(workload: &[Value], count: usize) -> String {
    let mut text = String::new();
    for index in 0..count {
        let mut example = workload[index % workload.len()].clone();
        example["id"] = Value::String(format!("copy-{index:06}"));
        text.push_str(&example.to_string());
        text.push('\n');
    }
    text
}

fn interleaved_commit_milliseconds(store: &Store, names: [&str; 2], template: &Value) -> (f64, f64) {
    let mut times = [Vec::new(), Vec::new()];
    for index in 0..SINGLE_COMMITS {
        for (slot, name) in names.iter().enumerate() {
            let mut example: Example = serde_json::from_value(template.clone()).unwrap();
            example.id = Some(format!("single-{index}"));
            let start = Instant::now();
            store
                .commit(
                    name,
                    Commit { author: "bench".into(), note: "one".into(), changes: vec![Change::Add(example)] },
                )
                .unwrap();
            times[slot].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let [small, large] = times;
    (median(small), median(large))
}

fn median_milliseconds(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn peers_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("ASSAY_PEERS_DIR") {
        return PathBuf::from(directory);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/peers")
}
