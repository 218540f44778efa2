//! An acknowledged commit survives `kill -9` of the server; a version is all or nothing.

use crate::server::{call, example};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Starts the real binary on 127.0.0.1:0 in dev mode and returns it with its base URL.
fn spawn_server(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(["serve", "--dev", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the server starts");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving ").nth(1) {
                let _ = sender.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let base = receiver.recv_timeout(std::time::Duration::from_secs(60)).expect("the server says where it listens");
    (child, base)
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    let directory = tempfile::tempdir().unwrap();
    let (mut server, base) = spawn_server(directory.path());
    let created = call(
        "POST",
        &format!("{base}/api/v1/datasets"),
        None,
        Some(("application/json", br#"{"name":"durable"}"#.to_vec())),
    );
    assert_eq!(created.status, 201, "{}", created.text);

    // A writer commits one example per version until the server dies.
    let (acknowledged, receiver) = mpsc::channel::<(u64, String)>();
    let writer_base = base.clone();
    let writer = std::thread::spawn(move || {
        for index in 0..100_000 {
            let id = format!("example-{index:05}");
            let body = serde_json::json!({"example": example(&id, "p1", "reference")}).to_string().into_bytes();
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let response = agent
                .post(&format!("{writer_base}/api/v1/datasets/durable/examples"))
                .header("content-type", "application/json")
                .send(&body[..]);
            match response {
                Ok(mut response) if response.status().as_u16() == 201 => {
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if acknowledged.send((reply["version"]["version"].as_u64().unwrap(), id)).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let mut acknowledged_commits = Vec::new();
    while acknowledged_commits.len() < 40 {
        acknowledged_commits.push(receiver.recv().expect("the writer acknowledges commits"));
    }
    server.kill().expect("kill -9"); // SIGKILL on Unix: no shutdown, no flush
    server.wait().unwrap();
    writer.join().unwrap();
    acknowledged_commits.extend(receiver.try_iter());

    let (mut restarted, base) = spawn_server(directory.path());
    for (version, id) in &acknowledged_commits {
        let read = call("GET", &format!("{base}/api/v1/datasets/durable@{version}/examples/{id}"), None, None);
        assert_eq!(read.status, 200, "acknowledged version {version} lost {id}: {}", read.text);
    }
    // Every version that exists is whole: its listing matches its recorded count.
    let history = call("GET", &format!("{base}/api/v1/datasets/durable/versions"), None, None);
    let versions = history.body["versions"].as_array().unwrap();
    let newest = versions[0]["version"].as_u64().unwrap();
    assert!(newest >= acknowledged_commits.last().unwrap().0);
    for version in versions {
        let number = version["version"].as_u64().unwrap();
        let listing = call("GET", &format!("{base}/api/v1/datasets/durable@{number}/examples?limit=1"), None, None);
        assert_eq!(listing.body["total"], version["example_count"], "version {number} is partial");
        assert_eq!(version["example_count"].as_u64().unwrap(), number, "each commit added exactly one example");
    }
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}

/// Starts the real binary with authentication and returns it with its stderr lines so far.
fn spawn_authenticated(data: &std::path::Path) -> (Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the server starts");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the server stopped early: {lines:?}");
        let done = line.contains("serving ");
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    let base = lines.last().unwrap().split("serving ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    (child, base, lines)
}

#[test]
fn the_first_start_prints_one_admin_token() {
    let directory = tempfile::tempdir().unwrap();
    let (mut first, base, lines) = spawn_authenticated(directory.path());
    let token = lines.iter().find_map(|line| line.trim().strip_prefix("assay_")).map(|rest| format!("assay_{rest}"));
    let token = token.unwrap_or_else(|| panic!("no token printed: {lines:?}"));
    let whoami = call("GET", &format!("{base}/api/v1/whoami"), Some(&token), None);
    assert_eq!(whoami.body["role"], "admin", "{}", whoami.text);
    assert_eq!(call("GET", &format!("{base}/api/v1/datasets"), None, None).status, 401);
    first.kill().unwrap();
    first.wait().unwrap();

    let (mut second, base, lines) = spawn_authenticated(directory.path());
    assert!(!lines.iter().any(|line| line.contains("assay_")), "a second token was printed: {lines:?}");
    assert_eq!(call("GET", &format!("{base}/api/v1/whoami"), Some(&token), None).status, 200);
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn dev_mode_is_refused_off_loopback() {
    let directory = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(["serve", "--dev", "--addr", "0.0.0.0:0", "--data"])
        .arg(directory.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("only allowed on a loopback address"));
}
