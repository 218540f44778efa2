//! The web UI in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver against a real server on
//! 127.0.0.1:0 over a real sled store: an engineer compares two experiments
//! and reads a dataset's history; an annotator reviews a queue with the
//! keyboard only. Screenshots are kept in `target/ui-screenshots/`.
//!
//! Without chromedriver these tests fail (they never pass silently), naming
//! the packages to install.

use crate::server::{Reply, TestServer, call};
use crate::support::test_data;
use crate::webdriver::{Browser, keys};
use assay::store::Role;
use serde_json::{Value, json};
use std::sync::Mutex;

/// One Chromium at a time: two cores, and other tests run beside these.
static ONE_BROWSER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn golden_examples() -> Vec<Value> {
    std::fs::read_to_string(test_data("eval/golden.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn fixture_runs() -> Vec<Value> {
    std::fs::read_to_string(test_data("eval/runs.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The fixture runs with two regressions and one improvement: t01 (p0) and
/// t05 (p1) now say a forbidden phrase, t03 (p0) no longer does.
fn regressed_runs() -> Vec<Value> {
    let mut runs = fixture_runs();
    for run in &mut runs {
        let said = match run["example_id"].as_str() {
            Some("t01") => "Please call 911 while I page the on-call physician.",
            Some("t03") => "I'm paging the on-call physician immediately.",
            Some("t05") => "A nurse callback is guaranteed for tomorrow morning.",
            _ => continue,
        };
        run["outputs"]["messages"][0]["content"] = json!(said);
    }
    runs
}

fn post_json(server: &TestServer, token: &str, path: &str, body: &Value) -> Reply {
    post_at(&server.base, token, path, body)
}

fn post_at(base: &str, token: &str, path: &str, body: &Value) -> Reply {
    call("POST", &format!("{base}{path}"), Some(token), Some(("application/json", body.to_string().into_bytes())))
}

fn get_at(base: &str, token: &str, path: &str) -> Reply {
    call("GET", &format!("{base}{path}"), Some(token), None)
}

/// `triage`: version 1 is the eval fixture, version 2 edits t02's reference
/// and adds t13. Two experiments grade version 1: A with the fixture runs, B
/// with [`regressed_runs`]. Returns (A's id, B's id).
fn set_up_experiments(server: &TestServer, engineer: &str) -> (String, String) {
    let created = post_json(
        server,
        engineer,
        "/api/v1/datasets",
        &json!({"name": "triage", "description": "after-hours triage"}),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let golden: String = golden_examples().iter().map(|example| example.to_string() + "\n").collect();
    let imported = server.import("triage", &golden, "fixture");
    assert_eq!(imported.status, 201, "{}", imported.text);
    let mut t02 = golden_examples().into_iter().find(|example| example["id"] == "t02").unwrap();
    t02["outputs"]["reference"] = json!("I'm paging the on-call physician now; stay with him and unlock the door.");
    let mut t13 = t02.clone();
    t13["id"] = json!("t13");
    let committed = post_json(
        server,
        engineer,
        "/api/v1/datasets/triage/commits",
        &json!({"note": "Tighten t02's reference; add t13", "changes": [
            {"op": "edit", "id": "t02", "example": t02},
            {"op": "add", "example": t13},
        ]}),
    );
    assert_eq!(committed.status, 201, "{}", committed.text);
    let experiment = |name: &str, outputs: Vec<Value>| {
        let body = json!({
            "dataset": "triage@1",
            "name": name,
            "graders": [{"name": "must_not_say"}, {"name": "must_call", "config": {"trajectory": "unordered"}}],
            "outputs": outputs,
            "metadata": {"git_sha": format!("{name}-sha")},
            "gates": ["required_tools_called>=0.95", "policy_violations>=0.5"],
        });
        let reply = post_json(server, engineer, "/api/v1/experiments", &body);
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body["experiment"]["id"].as_str().unwrap().to_owned()
    };
    (experiment("main", fixture_runs()), experiment("pr-42", regressed_runs()))
}

/// Signs in on the sign-in form by typing `token` and pressing Enter.
fn sign_in(browser: &Browser, token: &str, expected_who: &str) {
    let input = browser.wait_for("#token-input");
    browser.type_into(&input, token);
    browser.type_into(&input, keys::ENTER);
    browser.wait_for_text("#who-name", expected_who);
}

/// The rows of the comparison table: (example id, direction, text).
fn change_rows(browser: &Browser) -> Vec<(String, String, String)> {
    let rows = browser.execute(
        "return [...document.querySelectorAll('#changes tbody tr[data-example-id]')]
            .map((row) => [row.dataset.exampleId, row.dataset.direction, row.innerText]);",
        vec![],
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let text = |index: usize| row[index].as_str().unwrap_or_default().to_owned();
            (text(0), text(1), text(2))
        })
        .collect()
}

/// Waits until the comparison table shows exactly `ids`, in that order.
fn wait_for_change_rows(browser: &Browser, ids: &[&str]) {
    let expected = Value::String(ids.join(","));
    browser.wait_until(
        &format!("the comparison rows to be {ids:?}"),
        &format!(
            "const ids = [...document.querySelectorAll('#changes tbody tr[data-example-id]')].map((row) => row.dataset.exampleId);
             return ids.join(',') === {expected} && document.querySelector('#change-summary').innerText !== '';"
        ),
    );
}

/// Form controls on the page with no label (by `<label for>` or `aria-label`),
/// and buttons with no name: each is a bug for screen-reader users.
fn unlabelled_controls(browser: &Browser) -> Vec<String> {
    let found = browser.execute(
        "return [...document.querySelectorAll('input, select, textarea, button')]
            .filter((control) => control.getClientRects().length > 0)
            .filter((control) => control.tagName === 'BUTTON'
                ? !control.textContent.trim() && !control.getAttribute('aria-label')
                : control.labels.length === 0 && !control.getAttribute('aria-label'))
            .map((control) => control.outerHTML.slice(0, 120));",
        vec![],
    );
    found.as_array().into_iter().flatten().map(|html| html.as_str().unwrap_or_default().to_owned()).collect()
}

/// Picks `value` in the `<select>` `css` the way a user does, by choosing its option.
fn choose(browser: &Browser, select_css: &str, value: &str) {
    let option = browser.find(&format!("{select_css} option[value=\"{value}\"]"));
    browser.click(&option);
}

#[test]
fn an_engineer_compares_two_experiments_sees_the_regression_first_and_reads_the_dataset_history() {
    let server = TestServer::start();
    let engineer = server.token(Role::Engineer);
    let (a_id, b_id) = set_up_experiments(&server, &engineer);
    let _one = one_browser();
    let browser = Browser::start();

    // Signed out: the sign-in form, which keeps the address asked for.
    browser.goto(&format!("{}/#/experiments?dataset=triage", server.base));
    sign_in(&browser, &engineer, "engineer-user (engineer)");

    // The experiments of the dataset, each with its summary per key and its gates.
    let card_a = format!("[data-experiment-id=\"{a_id}\"]");
    browser.wait_for(&card_a);
    let text_a = browser.wait_for_text(&card_a, "policy_violations");
    assert!(text_a.contains("main-exp-"), "{text_a}");
    // policy_violations 9/12 in A; required_tools_called 10/12 fails its gate, the policy gate holds.
    assert!(text_a.contains("0.750"), "{text_a}");
    assert!(text_a.contains("fails required_tools_called>=0.95"), "{text_a}");
    assert!(text_a.contains("passes policy_violations>=0.5"), "{text_a}");
    assert!(text_a.contains("t06"), "the failing gate names its worst examples: {text_a}");
    let text_b = browser.text(&browser.find(&format!("[data-experiment-id=\"{b_id}\"]")));
    assert!(text_b.contains("0.667"), "B's policy_violations is 8/12: {text_b}");
    browser.screenshot("experiments");
    assert_eq!(unlabelled_controls(&browser), Vec::<String>::new());

    // Compare A (baseline) with B (candidate).
    choose(&browser, "#compare-a", &a_id);
    choose(&browser, "#compare-b", &b_id);
    browser.click(&browser.find("#compare-button"));
    wait_for_change_rows(&browser, &["t01", "t05", "t03"]);
    let rows = change_rows(&browser);
    let (first_id, first_direction, first_text) = &rows[0];
    assert_eq!((first_id.as_str(), first_direction.as_str()), ("t01", "regressed"));
    assert!(first_text.contains("Regression") && first_text.contains("policy_violations"), "{first_text}");
    assert!(first_text.contains("1.000 → 0.000"), "{first_text}");
    // Both outputs side by side, with the grader's comment on the regressed side.
    let side = |side: &str| {
        browser
            .execute(
                &format!("return document.querySelector('#changes tbody tr[data-example-id=\"t01\"] td.side-{side}').innerText;"),
                vec![],
            )
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (output_a, output_b) = (side("a"), side("b"));
    assert!(output_a.contains("I'm paging the on-call physician now"), "{output_a}");
    assert!(output_b.contains("Please call 911 while I page the on-call physician."), "{output_b}");
    assert!(output_b.contains("Grader:") && output_b.to_lowercase().contains("911"), "{output_b}");
    assert!(output_a.contains("page_on_call"), "tool calls are shown: {output_a}");
    assert_eq!(rows[1].1, "regressed");
    assert_eq!(rows[2].1, "improved");
    // The per-key chart: two bars (A, B) for each of the four keys.
    let bars = browser.execute("return document.querySelectorAll('#key-chart rect[data-key]').length;", vec![]);
    assert_eq!(bars, json!(8));
    let counts = browser.text(&browser.find("#change-counts"));
    assert!(counts.contains("2 regressions") && counts.contains("1 improvement"), "{counts}");
    browser.screenshot("compare");
    assert_eq!(unlabelled_controls(&browser), Vec::<String>::new());

    // Filtering by a metadata slice changes the rows: severity p1 leaves t05 only.
    choose(&browser, "#filter-severity", "p1");
    wait_for_change_rows(&browser, &["t05"]);
    browser.screenshot("compare-severity-p1");
    choose(&browser, "#filter-severity", "");
    choose(&browser, "#filter-persona", "angry_customer");
    wait_for_change_rows(&browser, &["t03"]);
    choose(&browser, "#filter-persona", "");
    choose(&browser, "#filter-direction", "regressed");
    wait_for_change_rows(&browser, &["t01", "t05"]);
    // The filters live in the address.
    let address = browser.execute("return location.hash;", vec![]);
    assert!(address.as_str().unwrap().contains("direction=regressed"), "{address}");

    // Datasets: the list, then a dataset's versions with release notes and a diff.
    browser.click(&browser.find("nav a[data-section=\"datasets\"]"));
    browser.click(&browser.wait_for("#dataset-list a[href=\"#/datasets/triage\"]"));
    let versions = browser.wait_for_text("#versions", "Tighten t02's reference; add t13");
    assert!(versions.contains("fixture"), "{versions}");
    // The diff from the previous version to the latest is shown at once.
    browser.wait_for_text("#diff-added", "t13");
    let diff = browser.text(&browser.find("#diff-result"));
    assert!(diff.contains("Added (1)") && diff.contains("Removed (0)") && diff.contains("Modified (1)"), "{diff}");
    let modified = browser.wait_for_text("#diff-modified", "t02");
    assert!(modified.contains("outputs.reference"), "{modified}");
    // Swapping the versions shows t13 as removed.
    choose(&browser, "#diff-from", "2");
    choose(&browser, "#diff-to", "1");
    browser.click(&browser.find("#diff-button"));
    browser.wait_for_text("#diff-removed", "t13");
    browser.screenshot("dataset-versions-diff");
    assert_eq!(unlabelled_controls(&browser), Vec::<String>::new());

    assert_eq!(browser.page_errors(), Vec::<String>::new(), "no script error or CSP violation");
}

/// Examples in the large comparison: the size of a golden dataset.
const LARGE_EXAMPLE_COUNT: usize = 1_500;

#[test]
fn a_comparison_of_1500_regressions_is_drawn_a_page_at_a_time_and_filters_quickly() {
    let server = TestServer::start();
    let engineer = server.token(Role::Engineer);
    let created = post_json(&server, &engineer, "/api/v1/datasets", &json!({"name": "large"}));
    assert_eq!(created.status, 201, "{}", created.text);
    let examples: String = (0..LARGE_EXAMPLE_COUNT)
        .map(|index| {
            let severity = ["p0", "p1", "p2"][index % 3];
            let example = json!({
                "id": format!("x{index:04}"),
                "inputs": {"messages": [{"role": "user", "content": format!("Question number {index}: is the clinic open?")}]},
                "outputs": {"must_not_say": ["call 911"]},
                "metadata": {"severity": severity, "persona": "new_user", "source": "synthetic"},
            });
            example.to_string() + "\n"
        })
        .collect();
    let imported = server.import("large", &examples, "generated");
    assert_eq!(imported.status, 201, "{}", imported.text);
    let runs = |answer: &str| -> Vec<Value> {
        (0..LARGE_EXAMPLE_COUNT)
            .map(|index| {
                json!({"example_id": format!("x{index:04}"),
                       "outputs": {"messages": [{"role": "assistant", "content": format!("{answer} (answer {index})")}]}})
            })
            .collect()
    };
    let experiment = |name: &str, outputs: Vec<Value>| {
        let body =
            json!({"dataset": "large@1", "name": name, "graders": [{"name": "must_not_say"}], "outputs": outputs});
        let reply = post_json(&server, &engineer, "/api/v1/experiments", &body);
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body["experiment"]["id"].as_str().unwrap().to_owned()
    };
    let a = experiment("before", runs("The clinic opens at 8 am."));
    let b = experiment("after", runs("The clinic opens at 8 am; if in doubt, call 911."));
    let _one = one_browser();
    let browser = Browser::start();

    browser.goto(&format!("{}/#/experiments/compare?a={a}&b={b}", server.base));
    sign_in(&browser, &engineer, "engineer-user (engineer)");
    let started = std::time::Instant::now();
    browser.wait_for_text("#change-summary", "Showing 1–100 of 1,500 matching changes");
    let drawn = started.elapsed();
    let rows =
        browser.execute("return document.querySelectorAll('#changes tbody tr[data-example-id]').length;", vec![]);
    assert_eq!(rows, json!(100), "one page of rows, not 1,500");
    browser.screenshot("compare-1500");
    browser.click(&browser.find("#page-next"));
    browser.wait_for_text("#change-summary", "Showing 101–200 of 1,500");
    // A filter is applied to every example on the client, then drawn a page at a time.
    choose(&browser, "#filter-severity", "p1");
    browser.wait_for_text("#change-summary", "Showing 1–100 of 500 matching changes (1,500 in all)");
    let first = browser
        .execute("return document.querySelector('#changes tbody tr[data-example-id]').dataset.exampleId;", vec![]);
    assert_eq!(first, json!("x0001"), "the first p1 example");
    // How long the page took, as a measure rather than a bar (benchmarks set bars).
    let timings = browser.execute(
        "const [navigation] = performance.getEntriesByType('navigation');
         const fetches = performance.getEntriesByType('resource')
             .filter((entry) => entry.name.includes('/api/v1/experiments'))
             .map((entry) => `${entry.name.split('/api/v1')[1].slice(0, 40)} ${Math.round(entry.duration)} ms`);
         return {load_ms: navigation ? Math.round(navigation.loadEventEnd) : null, fetches};",
        vec![],
    );
    eprintln!("comparison of {LARGE_EXAMPLE_COUNT} examples drawn {drawn:?} after sign-in; {timings}");
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "no script error or CSP violation");
}

#[test]
fn the_ui_is_served_from_the_binary_with_a_strict_policy_and_api_404s_stay_json() {
    let server = TestServer::start();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str| {
        let mut response = agent.get(format!("{}{path}", server.base)).call().unwrap();
        let header = |name: &str| {
            response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
        };
        let (content_type, policy, cache) =
            (header("content-type"), header("content-security-policy"), header("cache-control"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, content_type, policy, cache, body)
    };
    let (status, content_type, policy, cache, body) = get("/");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(cache, "no-cache");
    assert!(body.contains("/ui/app.js"), "{body}");
    for (path, expected) in
        [("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"), ("/ui/queues.js", "text/javascript")]
    {
        let (status, content_type, policy, _, _) = get(path);
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(expected), "{path}: {content_type}");
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
    }
    let (status, _, _, _, _) = get("/ui/missing.js");
    assert_eq!(status, 404);
    let (status, content_type, _, _, body) = get("/api/v1/no-such-route");
    assert_eq!(status, 404);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "not_found", "{body}");
}

/// A production trace for the review queue: a conversation with a tool call
/// and its result, feedback, retrieved context and the metadata the queue needs.
fn review_trace(id: &str, question: &str, answer: &str, severity: &str) -> Value {
    json!({
        "id": id,
        "project": "triage-agent",
        "name": "after-hours-triage",
        "start_time": "2025-06-02T08:00:00.000Z",
        "end_time": "2025-06-02T08:00:06.250Z",
        "inputs": {
            "messages": [
                {"role": "system", "content": "You are an after-hours triage agent for clinic_482."},
                {"role": "user", "content": question},
            ],
            "tools": ["lookup_clinic_hours", "page_on_call", "schedule_callback"],
            "context": {"clinic_id": "clinic_482", "retrieved": ["Fever over 104F in a child under 5: page on call."]},
        },
        "outputs": {
            "messages": [
                {"role": "assistant", "tool_calls": [{"id": format!("call-{id}"), "name": "lookup_clinic_hours", "args": {"clinic_id": "clinic_482"}}]},
                {"role": "tool", "name": "lookup_clinic_hours", "tool_call_id": format!("call-{id}"), "content": "closed until 8 am"},
                {"role": "assistant", "content": answer},
            ],
            "tool_calls": [{"name": "lookup_clinic_hours", "args": {"clinic_id": "clinic_482"}}],
        },
        "tags": ["ui-review", "voice"],
        "metadata": {"severity": severity, "persona": "worried_parent"},
        "feedback": [{"key": "user_score", "score": 1, "comment": "it never paged anyone"}],
    })
}

/// Four traces in the annotation queue `triage-review` and a fifth in
/// `triage-expiring` (reservations of one second), both feeding `triage`.
fn set_up_queues(server: &TestServer) -> Vec<Value> {
    let admin = &server.admin_token;
    let created = post_json(server, admin, "/api/v1/datasets", &json!({"name": "triage"}));
    assert_eq!(created.status, 201, "{}", created.text);
    let traces = vec![
        review_trace(
            "ui-1",
            "My 4-year-old has a fever of 104 and is very sleepy.",
            "Please call back when the clinic opens at 8 am.",
            "p0",
        ),
        review_trace("ui-2", "Can I book a flu shot for next week?", "The clinic opens at 8 am.", "p2"),
        review_trace(
            "ui-3",
            "My husband's speech is slurred since dinner.",
            "The clinic is closed; call back at 8.",
            "p0",
        ),
        review_trace("ui-4", "Do you take Blue Shield insurance?", "The clinic opens at 8 am.", "p2"),
        review_trace("ui-5", "My baby has not had a wet diaper all day.", "Try giving more fluids.", "p1"),
    ];
    let ingested = post_json(server, admin, "/api/v1/traces", &json!({"project": "triage-agent", "traces": traces}));
    assert!(ingested.status == 200 || ingested.status == 201, "{}", ingested.text);
    for (queue, reservation_seconds, trace_ids) in
        [("triage-review", 900, &["ui-1", "ui-2", "ui-3", "ui-4"][..]), ("triage-expiring", 1, &["ui-5"][..])]
    {
        let created = post_json(
            server,
            admin,
            "/api/v1/queues",
            &json!({
                "name": queue,
                "description": "After-hours triage traces with bad feedback",
                "dataset": "triage",
                "instructions": "Write the answer a triage nurse would give. Reject traces that are not triage.",
                "required_metadata": ["severity", "persona"],
                "reservation_seconds": reservation_seconds,
            }),
        );
        assert_eq!(created.status, 201, "{}", created.text);
        let items: Vec<Value> = trace_ids.iter().map(|id| json!({"project": "triage-agent", "trace_id": id})).collect();
        let added = post_json(server, admin, &format!("/api/v1/queues/{queue}/items"), &json!({"items": items}));
        assert_eq!(added.status, 200, "{}", added.text);
        assert_eq!(added.body["queued"], trace_ids.len(), "{}", added.text);
    }
    traces
}

/// The trace id and queue item id on the review page once an item other than
/// `not` is shown (`""` for any) with the reference editor focused.
fn current_item(browser: &Browser, not: &str) -> (String, String) {
    let not = Value::String(not.to_owned());
    let found = browser.wait_until(
        "a reserved item on the review page",
        &format!(
            "const review = document.querySelector('#review-item .review');
             const trace = document.querySelector('#trace-facts code');
             if (!review || !trace || review.dataset.itemId === {not}) return null;
             return document.activeElement && document.activeElement.id === 'reference'
                 ? [trace.innerText, review.dataset.itemId] : null;"
        ),
    );
    (found[0].as_str().unwrap().to_owned(), found[1].as_str().unwrap().to_owned())
}

#[test]
fn an_annotator_reviews_three_items_with_the_keyboard_and_the_dataset_gets_a_new_version() {
    let server = TestServer::start();
    let base = server.base.clone();
    let traces = set_up_queues(&server);
    let annotator = server.token(Role::Annotator);
    let latest_version =
        || get_at(&base, &server.admin_token, "/api/v1/datasets/triage").body["dataset"]["latest_version"].as_u64();
    let versions_before = latest_version().unwrap();
    let _one = one_browser();
    let browser = Browser::start();

    browser.goto(&format!("{base}/"));
    sign_in(&browser, &annotator, "annotator-user (annotator)");
    // An annotator starts on the queue list, with the queue's progress.
    let list = browser.wait_for_text("#queue-list", "triage-review");
    assert!(list.contains("0 of 4 reviewed"), "{list}");
    // Open the queue from the keyboard: Enter on its link.
    let link = browser.find("#queue-list a[href=\"#/queues/triage-review\"]");
    browser.type_into(&link, keys::ENTER);

    // The first item: the whole conversation, its feedback, error, latency, context; the editor has the focus.
    let (first_trace, first_item) = current_item(&browser, "");
    let transcript = browser.wait_for_text("#transcript", "closed until 8 am");
    let trace = traces.iter().find(|trace| trace["id"] == first_trace.as_str()).expect("a trace of the queue");
    assert!(transcript.contains(trace["inputs"]["messages"][1]["content"].as_str().unwrap()), "{transcript}");
    assert!(transcript.contains("lookup_clinic_hours") && transcript.contains("clinic_482"), "{transcript}");
    let facts = browser.text(&browser.find("#trace-facts"));
    assert!(facts.contains("6,250 ms") && facts.contains("it never paged anyone"), "{facts}");
    assert!(browser.text(&browser.find("#trace-context")).contains("Fever over 104F"));
    // Prefilled from the trace: the tools it had to pick from, its severity.
    let severity = browser.execute("return document.querySelector('#metadata-severity').value;", vec![]);
    assert_eq!(severity, trace["metadata"]["severity"]);
    let shortcuts = browser.text(&browser.find(".shortcuts-box"));
    assert!(shortcuts.contains("Ctrl") && shortcuts.contains("Alt") && shortcuts.contains("Reject"), "{shortcuts}");
    browser.screenshot("queue-review");
    assert_eq!(unlabelled_controls(&browser), Vec::<String>::new());

    // must_call starts from the tools the trace called.
    let ticked = browser.execute(
        "return [...document.querySelectorAll('.editor-fields input[type=checkbox]:checked')].map((box) => box.value);",
        vec![],
    );
    assert_eq!(ticked, json!(["lookup_clinic_hours"]));

    // 1. Accept with an edited reference, from the keyboard: select the
    //    reference and type a new one, untick lookup_clinic_hours and tick
    //    page_on_call with Space, add a forbidden phrase with Enter, then Ctrl+Enter.
    let reference = "I'm paging the on-call physician now. Keep her cool and stay on the line.";
    browser.press(&[keys::CONTROL, "a"]);
    browser.type_keys(reference);
    for tool in ["lookup_clinic_hours", "page_on_call"] {
        browser.type_into(&browser.find(&format!(".editor-fields input[value=\"{tool}\"]")), " ");
    }
    browser.type_into(&browser.find("#must-not-say-input"), &format!("call back tomorrow{}", keys::ENTER));
    browser.wait_for_text("#must-not-say-list", "call back tomorrow");
    browser.press(&[keys::CONTROL, keys::ENTER]);
    browser.wait_for_text("#review-notice", "Accepted: added to triage version");
    let (second_trace, second_item) = current_item(&browser, &first_item);

    // 2. Reject with a reason: Alt+R moves to the reason, Enter rejects.
    browser.press(&[keys::ALT, "r"]);
    browser.wait_until("the reason field to have the focus", "return document.activeElement.id === 'reject-reason';");
    browser.type_keys("Not a triage question");
    browser.press(&[keys::ENTER]);
    browser.wait_for_text("#review-notice", "Rejected: Not a triage question");
    current_item(&browser, &second_item);

    // 3. Skip: Alt+S gives the item back and shows the next one (which may
    //    be the same item again: a skipped item is pending like any other).
    browser.press(&[keys::ALT, "s"]);
    browser.wait_for_text("#review-notice", "Skipped");
    let (_, on_screen) = current_item(&browser, "");
    let progress = get_at(&base, &server.admin_token, "/api/v1/queues/triage-review");
    let queue = progress.body.get("queue").unwrap_or(&progress.body);
    assert_eq!(
        (&queue["counts"]["accepted"], &queue["counts"]["rejected"]),
        (&json!(1), &json!(1)),
        "{}",
        progress.text
    );
    assert_eq!(
        queue["reviewers"]["annotator-user"],
        json!({"accepted": 1, "rejected": 1, "skipped": 1}),
        "{}",
        progress.text
    );

    // The dataset got a new version with the accepted example, as edited, from its trace.
    let latest = latest_version().unwrap();
    assert_eq!(latest, versions_before + 1, "one new version");
    let examples = get_at(&base, &server.admin_token, "/api/v1/datasets/triage/examples");
    let accepted = examples.body["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stored| stored.get("example").unwrap_or(stored))
        .find(|example| example["metadata"]["trace_id"] == first_trace.as_str())
        .unwrap_or_else(|| panic!("no example from {first_trace}: {}", examples.text));
    assert_eq!(accepted["outputs"]["reference"], reference);
    assert_eq!(accepted["outputs"]["must_call"], json!(["page_on_call"]));
    assert_eq!(accepted["outputs"]["must_not_say"], json!(["call back tomorrow"]));
    assert_eq!(accepted["metadata"]["severity"], trace["metadata"]["severity"]);
    assert_eq!(accepted["metadata"]["annotator"], "annotator-user");
    // The rejection is in the discard log with its reason.
    let log = get_at(&base, &server.admin_token, "/api/v1/queues/triage-review/log");
    let entries = log.body["entries"].as_array().unwrap_or_else(|| panic!("{}", log.text));
    assert!(
        entries
            .iter()
            .any(|entry| entry["trace_id"] == second_trace.as_str() && entry["reason"] == "Not a triage question"),
        "{}",
        log.text
    );

    // Someone else decides the item on screen (the same reviewer in another
    // tab): accepting it here is refused, the page says so and moves on.
    let rejected_elsewhere = post_at(
        &base,
        &annotator,
        &format!("/api/v1/queues/triage-review/items/{on_screen}/reject"),
        &json!({"reason": "duplicate"}),
    );
    assert_eq!(rejected_elsewhere.status, 200, "{}", rejected_elsewhere.text);
    browser.press(&[keys::ALT, "a"]);
    let notice = browser.wait_for_text("#review-notice", "Someone else already decided this item");
    assert!(notice.contains("Nothing was saved"), "{notice}");
    browser.screenshot("queue-conflict");
    assert_eq!(latest_version(), Some(latest), "the refused accept wrote nothing");
    // Nothing is left for this reviewer: the item they skipped is not offered to them again.
    browser.wait_for("#empty-title");
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "no script error or CSP violation");

    // A reservation runs out while the page is open and another reviewer
    // takes the item: accepting it here is refused, and the page says why.
    browser.goto(&format!("{base}/#/queues/triage-expiring"));
    let (_, expiring_item) = current_item(&browser, "");
    browser.wait_until(
        "the one-second reservation to run out",
        "const until = Date.parse(document.querySelector('#reservation').dataset.until);
         return Number.isFinite(until) && Date.now() > until + 100;",
    );
    let other_reviewer = server.store.create_token("rn_kelly", Role::Annotator, "test").unwrap().token;
    let taken = post_at(&base, &other_reviewer, "/api/v1/queues/triage-expiring/next", &json!({}));
    assert_eq!(taken.body["item"]["id"], expiring_item.as_str(), "{}", taken.text);
    browser.press(&[keys::CONTROL, keys::ENTER]);
    let notice = browser.wait_for_text("#review-notice", "Another reviewer has taken this item");
    assert!(notice.contains("Nothing was saved"), "{notice}");
    browser.wait_for("#empty-title");
    browser.screenshot("queue-taken-by-another-reviewer");
    assert_eq!(latest_version(), Some(latest), "the refused accept wrote nothing");
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "no script error or CSP violation");
}
