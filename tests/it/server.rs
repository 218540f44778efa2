//! The HTTP API on a real server (127.0.0.1:0) over a real sled store in a temp dir.

use assay::api::{AppState, AuthMode};
use assay::store::{Role, Store};
use serde_json::{Value, json};
use std::time::Duration;

/// A server running in this process until dropped.
pub struct TestServer {
    pub base: String,
    pub admin_token: String,
    pub store: Store,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    directory: Option<tempfile::TempDir>,
    /// The runtime the server grades with.
    pub runtime: std::sync::Arc<assay::runtime::Runtime>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_in(tempfile::tempdir().unwrap(), None)
    }

    /// A server on the store in `directory` (a restart when it holds one
    /// already), compiling graders through the cache in `cache_directory`.
    pub fn start_in(directory: tempfile::TempDir, cache_directory: Option<std::path::PathBuf>) -> TestServer {
        let store = Store::open(directory.path()).unwrap();
        let admin_token = store.create_token("admin", Role::Admin, "test").unwrap().token;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let runtime = std::sync::Arc::new(
            assay::runtime::Runtime::new(assay::runtime::RuntimeConfig {
                pooling: false,
                cache_directory,
                ..assay::runtime::RuntimeConfig::default()
            })
            .unwrap(),
        );
        let state = AppState::new(store.clone(), AuthMode::Tokens, std::sync::Arc::clone(&runtime)).unwrap();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_sender.send(listener.local_addr().unwrap()).unwrap();
                assay::api::serve(listener, state, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let address = ready.recv().unwrap();
        TestServer {
            base: format!("http://{address}"),
            admin_token,
            store,
            shutdown: Some(shutdown),
            thread: Some(thread),
            directory: Some(directory),
            runtime,
        }
    }

    /// Stops the server and hands back its store's directory, to start another on it.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shut_down();
        self.directory.take().expect("the directory is held until stopped")
    }

    fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn token(&self, role: Role) -> String {
        self.store.create_token(&format!("{role}-user"), role, "test").unwrap().token
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// One response: status and parsed JSON (or the text as a JSON string).
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
    try_call(method, url, token, body).expect("the server answers")
}

/// Like [`call`], but a transport error is returned instead of failing the test.
pub fn try_call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Reply, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let authorization = token.map(|token| format!("Bearer {token}"));
    let response = match (method, body) {
        ("GET", _) => with_token(agent.get(url), &authorization).call(),
        ("DELETE", _) => with_token(agent.delete(url), &authorization).call(),
        (method, body) => {
            let request = match method {
                "PUT" => agent.put(url),
                _ => agent.post(url),
            };
            let (content_type, bytes) = body.unwrap_or(("application/json", b"{}".to_vec()));
            with_token(request, &authorization).header("content-type", content_type).send(&bytes[..])
        }
    };
    let mut response = response?;
    let status = response.status().as_u16();
    let text = response.body_mut().with_config().limit(1 << 30).read_to_string()?;
    let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    Ok(Reply { status, body, text })
}

fn with_token<B>(request: ureq::RequestBuilder<B>, authorization: &Option<String>) -> ureq::RequestBuilder<B> {
    match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    }
}

impl TestServer {
    pub fn get(&self, path: &str) -> Reply {
        call("GET", &format!("{}{path}", self.base), Some(&self.admin_token), None)
    }

    pub fn send(&self, method: &str, path: &str, body: Value) -> Reply {
        call(
            method,
            &format!("{}{path}", self.base),
            Some(&self.admin_token),
            Some(("application/json", body.to_string().into_bytes())),
        )
    }

    /// `POST` a JSON body as the holder of `token`.
    pub fn post_as(&self, token: &str, path: &str, body: &Value) -> Reply {
        call(
            "POST",
            &format!("{}{path}", self.base),
            Some(token),
            Some(("application/json", body.to_string().into_bytes())),
        )
    }

    /// `GET` as the holder of `token`.
    pub fn get_as(&self, token: &str, path: &str) -> Reply {
        call("GET", &format!("{}{path}", self.base), Some(token), None)
    }

    pub fn import(&self, name: &str, jsonl: &str, note: &str) -> Reply {
        call(
            "POST",
            &format!("{}/api/v1/datasets/{name}/import?note={note}", self.base),
            Some(&self.admin_token),
            Some(("application/x-ndjson", jsonl.as_bytes().to_vec())),
        )
    }
}

pub fn example(id: &str, severity: &str, reference: &str) -> Value {
    json!({"id": id,
           "inputs": {"messages": [{"role": "user", "content": format!("question {id}")}], "tools": ["page_on_call", "lookup"]},
           "outputs": {"reference": reference, "must_call": ["page_on_call"], "must_not_say": ["call 911"]},
           "metadata": {"source": "production", "severity": severity, "persona": "worried_parent"}})
}

fn jsonl(examples: &[Value]) -> String {
    examples.iter().map(|example| example.to_string() + "\n").collect()
}

#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, message_part: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.text);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{message:?} lacks {message_part:?}");
}

#[test]
fn datasets_are_versioned_end_to_end() {
    let server = TestServer::start();
    let created = server.send("POST", "/api/v1/datasets", json!({"name": "triage", "description": "after hours"}));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["kind"], "golden");

    let first: Vec<Value> =
        (0..20).map(|index| example(&format!("e{index:02}"), ["p0", "p1", "p2"][index % 3], "page now")).collect();
    let imported = server.import("triage", &jsonl(&first), "first%20import");
    assert_eq!(imported.status, 201, "{}", imported.text);
    let version_one = imported.body["version"].as_u64().unwrap();
    assert_eq!(imported.body["example_count"], 20);
    assert_eq!(imported.body["note"], "first import");

    // Edit, add, delete: each a new version.
    let edited = server.send(
        "PUT",
        "/api/v1/datasets/triage/examples/e01",
        json!({"example": example("e01", "p0", "page the on-call physician"), "note": "fix reference"}),
    );
    assert_eq!(edited.status, 201, "{}", edited.text);
    let added =
        server.send("POST", "/api/v1/datasets/triage/examples", json!({"example": example("e99", "p2", "callback")}));
    assert_eq!(added.status, 201, "{}", added.text);
    let deleted = call(
        "DELETE",
        &format!("{}/api/v1/datasets/triage/examples/e02?note=dup", server.base),
        Some(&server.admin_token),
        None,
    );
    assert_eq!(deleted.status, 201, "{}", deleted.text);
    let latest = deleted.body["version"]["version"].as_u64().unwrap();
    assert_eq!(latest, version_one + 3);

    // Tags resolve everywhere; the old version reads exactly as it was.
    assert_eq!(server.send("PUT", "/api/v1/datasets/triage/tags/v1.0", json!({"version": version_one})).status, 200);
    let old = server.get("/api/v1/datasets/triage@v1.0/examples/e01");
    assert_eq!(old.body["example"]["outputs"]["reference"], "page now", "{}", old.text);
    let new = server.get("/api/v1/datasets/triage/examples/e01");
    assert_eq!(new.body["example"]["outputs"]["reference"], "page the on-call physician");
    assert_eq!(server.get("/api/v1/datasets/triage@v1.0/examples").body["total"], 20);
    assert_eq!(server.get(&format!("/api/v1/datasets/triage@{latest}/examples")).body["total"], 20);
    assert_eq!(
        server.get("/api/v1/datasets/triage/examples?severity=p0&limit=2").body["examples"].as_array().unwrap().len(),
        2
    );
    assert_eq!(server.get("/api/v1/datasets/triage@v1.0/examples?metadata.severity=p0").body["total"], 7);

    let diff = server.get(&format!("/api/v1/datasets/triage/diff?from=v1.0&to={latest}"));
    assert_eq!(diff.body["added"], json!(["e99"]), "{}", diff.text);
    assert_eq!(diff.body["removed"], json!(["e02"]));
    assert_eq!(diff.body["modified"][0]["id"], "e01");
    assert!(diff.body["modified"][0]["changed_fields"].as_array().unwrap().contains(&json!("outputs.reference")));

    let history = server.get("/api/v1/datasets/triage/versions");
    let notes: Vec<&str> =
        history.body["versions"].as_array().unwrap().iter().map(|version| version["note"].as_str().unwrap()).collect();
    assert!(notes.contains(&"fix reference") && notes.contains(&"first import"), "{notes:?}");

    // Export, re-import elsewhere: the same digest.
    let exported = server.get("/api/v1/datasets/triage@v1.0/export");
    assert_eq!(exported.status, 200);
    assert_eq!(exported.text.lines().count(), 20);
    server.send("POST", "/api/v1/datasets", json!({"name": "copy"}));
    let copy = server.import("copy", &exported.text, "copy");
    let original = server.get("/api/v1/datasets/triage@v1.0");
    assert_eq!(copy.body["digest"], original.body["version"]["digest"]);
    assert_ne!(original.body["version"]["digest"], server.get("/api/v1/datasets/triage").body["version"]["digest"]);
}

#[test]
fn every_role_is_refused_where_it_must_be() {
    let server = TestServer::start();
    server.send("POST", "/api/v1/datasets", json!({"name": "golden"}));
    let url = |path: &str| format!("{}{path}", server.base);
    let body = || Some(("application/json", json!({"name": "other"}).to_string().into_bytes()));
    for role in [Role::Annotator, Role::Publisher, Role::Ingest] {
        let token = server.token(role);
        assert_error(&call("POST", &url("/api/v1/datasets"), Some(&token), body()), 403, "forbidden", "engineer");
        assert_error(
            &call(
                "POST",
                &url("/api/v1/tokens"),
                Some(&token),
                Some(("application/json", br#"{"name":"x","role":"admin"}"#.to_vec())),
            ),
            403,
            "forbidden",
            "admin",
        );
    }
    let ingest = server.token(Role::Ingest);
    assert_error(&call("GET", &url("/api/v1/datasets"), Some(&ingest), None), 403, "forbidden", "");
    let annotator = server.token(Role::Annotator);
    assert_eq!(call("GET", &url("/api/v1/datasets"), Some(&annotator), None).status, 200);
    let engineer = server.token(Role::Engineer);
    assert_eq!(call("POST", &url("/api/v1/datasets"), Some(&engineer), body()).status, 201);
    assert_error(
        &call(
            "POST",
            &url("/api/v1/tokens"),
            Some(&engineer),
            Some(("application/json", br#"{"name":"x","role":"admin"}"#.to_vec())),
        ),
        403,
        "forbidden",
        "admin",
    );
    assert_error(&call("GET", &url("/api/v1/datasets"), None, None), 401, "unauthorized", "Bearer");
    assert_error(
        &call("GET", &url("/api/v1/datasets"), Some("assay_not_a_token"), None),
        401,
        "unauthorized",
        "unknown token",
    );
    let made = call(
        "POST",
        &url("/api/v1/tokens"),
        Some(&server.admin_token),
        Some(("application/json", br#"{"name":"ci","role":"engineer"}"#.to_vec())),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let ci = made.body["token"].as_str().unwrap();
    assert_eq!(call("GET", &url("/api/v1/whoami"), Some(ci), None).body, json!({"name": "ci", "role": "engineer"}));
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let server = TestServer::start();
    server.send("POST", "/api/v1/datasets", json!({"name": "golden"}));
    server.import("golden", &jsonl(&[example("a", "p0", "x")]), "seed");
    let version_before = server.get("/api/v1/datasets/golden").body["version"]["version"].clone();
    let raw = |method: &str, path: &str, content_type: &str, body: &[u8]| {
        call(method, &format!("{}{path}", server.base), Some(&server.admin_token), Some((content_type, body.to_vec())))
    };
    assert_error(
        &raw("POST", "/api/v1/datasets/golden/examples", "application/json", b"{not json"),
        400,
        "bad_json",
        "",
    );
    assert_error(
        &raw(
            "POST",
            "/api/v1/datasets/golden/examples",
            "application/json",
            br#"{"example": {"inputs": {"messages": []}}}"#,
        ),
        422,
        "invalid",
        "inputs.messages",
    );
    assert_error(
        &raw("POST", "/api/v1/datasets/golden/examples", "application/json", br#"{"example": {"inputs": {}}}"#),
        422,
        "bad_json",
        "messages",
    );
    assert_error(&raw("POST", "/api/v1/datasets/golden/examples", "text/plain", b"{}"), 415, "bad_json", "");
    let severity = example("b", "p9", "x");
    let refused = server.send("POST", "/api/v1/datasets/golden/examples", json!({"example": severity}));
    assert_error(&refused, 422, "invalid", "metadata.severity");
    assert_eq!(refused.body["error"]["fields"][0]["field"], "metadata.severity");
    // The server answers 413 as soon as it sees the length and closes the
    // connection; a client still writing may see the reset instead of the
    // answer, so a few attempts are allowed to read it.
    let big = format!(r#"{{"example": {}, "note": "{}"}}"#, example("c", "p0", "x"), "n".repeat(3 << 20));
    let oversized = (0..5)
        .find_map(|_| {
            try_call(
                "POST",
                &format!("{}/api/v1/datasets/golden/examples", server.base),
                Some(&server.admin_token),
                Some(("application/json", big.as_bytes().to_vec())),
            )
            .ok()
        })
        .expect("one attempt reads the answer");
    assert_error(&oversized, 413, "too_large", "");

    // An import with two bad lines commits nothing and reports both.
    let mut lines = jsonl(&[example("d", "p0", "x"), example("e", "p0", "x")]);
    lines.push_str("{\"inputs\": 5}\n");
    lines.push_str(&example("f", "p0", "x").to_string());
    lines.push_str("\nnot json at all\n");
    let import = server.import("golden", &lines, "bad");
    assert_eq!(import.status, 422, "{}", import.text);
    let message = import.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 3") && message.contains("line 5"), "{message}");

    assert_error(&server.get("/api/v1/datasets/nope"), 404, "not_found", "nope");
    assert_error(&server.get("/api/v1/datasets/golden@99"), 404, "not_found", "99");
    assert_error(&server.get("/api/v1/datasets/golden@nosuchtag"), 404, "not_found", "nosuchtag");
    assert_error(&server.get("/api/v1/datasets/golden@a@b"), 400, "bad_reference", "");
    assert_error(&server.get("/api/v1/datasets/golden/examples?colour=red"), 400, "bad_request", "colour");
    assert_error(&server.get("/api/v1/datasets/golden/examples?limit=-1"), 400, "bad_request", "limit");
    assert_error(
        &server.send("POST", "/api/v1/datasets/golden@1/examples", json!({"example": example("g", "p0", "x")})),
        400,
        "bad_reference",
        "bare name",
    );
    assert_error(&server.send("PUT", "/api/v1/datasets/golden/tags/17", json!({"version": 1})), 422, "invalid", "");
    assert_error(
        &server.send("PUT", "/api/v1/datasets/golden/tags/prod", json!({"version": 42})),
        404,
        "not_found",
        "",
    );
    assert_error(&server.send("POST", "/api/v1/datasets", json!({"name": "golden"})), 409, "conflict", "");
    assert_error(&server.send("POST", "/api/v1/datasets", json!({"name": "Bad Name!"})), 422, "invalid", "name");
    assert_error(&server.get("/api/v1/nothing/here"), 404, "not_found", "no route");

    let after = server.get("/api/v1/datasets/golden");
    assert_eq!(after.body["version"]["version"], version_before, "something was written");
    assert_eq!(after.body["version"]["example_count"], 1);
}

#[test]
fn a_dataset_schema_is_enforced_on_top_of_the_built_in_rules() {
    let server = TestServer::start();
    let schema = json!({
        "inputs": {"type": "object", "required": ["context"],
                   "properties": {"context": {"type": "object", "required": ["clinic_id"],
                                              "properties": {"clinic_id": {"type": "integer"}}}}},
        "outputs": {"type": "object", "required": ["reference"]}
    });
    assert_error(
        &server.send("POST", "/api/v1/datasets", json!({"name": "triage", "schema": {"inputs": {"type": "integre"}}})),
        422,
        "invalid",
        "schema.inputs",
    );
    assert_error(&server.get("/api/v1/datasets/triage"), 404, "not_found", "triage");
    let created = server.send("POST", "/api/v1/datasets", json!({"name": "triage", "schema": schema}));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["schema"], schema);
    assert_eq!(server.get("/api/v1/datasets/triage").body["dataset"]["schema"], schema);

    let with_clinic = |id: &str, clinic_id: Value| {
        let mut example = example(id, "p0", "page now");
        example["inputs"]["context"] = json!({"clinic_id": clinic_id});
        example
    };
    let refused = server.send(
        "POST",
        "/api/v1/datasets/triage/examples",
        json!({"example": with_clinic("a", json!("clinic_482"))}),
    );
    assert_error(&refused, 422, "invalid", r#"inputs.context.clinic_id: "clinic_482" is not of type "integer""#);
    assert_eq!(refused.body["error"]["fields"][0]["field"], "inputs.context.clinic_id");
    let import = server.import("triage", &jsonl(&[with_clinic("b", json!(482)), example("c", "p0", "x")]), "bad");
    assert_error(&import, 422, "invalid", "line 2: inputs");
    let after = server.get("/api/v1/datasets/triage");
    assert_eq!(after.body["version"]["version"], 0, "something was written: {}", after.text);
    assert_eq!(after.body["version"]["example_count"], 0);

    let added =
        server.send("POST", "/api/v1/datasets/triage/examples", json!({"example": with_clinic("a", json!(482))}));
    assert_eq!(added.status, 201, "{}", added.text);
    // A dataset without a schema still takes any valid example.
    assert_eq!(server.send("POST", "/api/v1/datasets", json!({"name": "plain"})).status, 201);
    assert_eq!(server.get("/api/v1/datasets/plain").body["dataset"]["schema"], json!({}));
    assert_eq!(server.import("plain", &jsonl(&[example("c", "p0", "x")]), "ok").status, 201);
}

#[test]
fn every_documented_operation_is_routed() {
    let server = TestServer::start();
    let document = server.get("/api/v1/openapi.json");
    assert_eq!(document.body["openapi"], "3.1.0");
    let paths = document.body["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path.replace("{reference}", "missing").replace("{id}", "x").replace("{tag}", "t");
            let reply =
                call(&method.to_uppercase(), &format!("{}{concrete}", server.base), Some(&server.admin_token), None);
            assert_ne!(reply.status, 405, "{method} {path} is not routed");
            assert!(!reply.text.contains("no route"), "{method} {path} is not routed: {}", reply.text);
        }
    }
}
