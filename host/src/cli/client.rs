//! A small blocking HTTP client for the client commands: `--server` /
//! `ASSAY_URL`, `--token` / `ASSAY_TOKEN`, JSON errors turned into messages.

use clap::Args;
use serde_json::Value;
use std::time::Duration;

/// Where the server is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The Assay server.
    #[arg(long, env = "ASSAY_URL", default_value = "http://127.0.0.1:7777", global = true)]
    pub server: String,
    /// A bearer token (see `assay token create`).
    #[arg(long, env = "ASSAY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The server refused the request: the command ran and the answer is no.
#[derive(Debug, thiserror::Error)]
#[error("the server refused ({status} {code}): {message}")]
pub struct Refused {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Largest response the client reads (an export of a large drift dataset).
const RESPONSE_BYTES_MAX: u64 = 1 << 30;

impl Client {
    pub fn new(arguments: &ClientArgs) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Client { base: arguments.server.trim_end_matches('/').to_owned(), token: arguments.token.clone(), agent }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let text = self.get_text(path)?;
        Ok(serde_json::from_str(&text)?)
    }

    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let request = self.authorize(self.agent.get(&self.url(path)));
        self.finish(request.call())
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.authorize(self.agent.delete(&self.url(path)));
        Ok(serde_json::from_str(&self.finish(request.call())?)?)
    }

    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = self.url(path);
        let request = match method {
            "PUT" => self.agent.put(&url),
            _ => self.agent.post(&url),
        };
        let request = self.authorize(request).header("content-type", "application/json");
        Ok(serde_json::from_str(&self.finish(request.send(body.to_string().as_bytes()))?)?)
    }

    pub fn post_text(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<Value> {
        let request = self.authorize(self.agent.post(&self.url(path))).header("content-type", content_type);
        Ok(serde_json::from_str(&self.finish(request.send(body))?)?)
    }

    /// Posts a body whose refusal still carries a report (trace ingest
    /// answers 422 with the per-item report when every item is refused):
    /// the JSON of a 2xx or 422 answer; other refusals are errors.
    pub fn post_for_report(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<Value> {
        let request = self.authorize(self.agent.post(&self.url(path))).header("content-type", content_type);
        let mut response = request
            .send(body)
            .map_err(|error| anyhow::anyhow!("could not reach the server at {}: {error}", self.base))?;
        if response.status().as_u16() == 422 {
            let text = response.body_mut().with_config().limit(RESPONSE_BYTES_MAX).read_to_string()?;
            let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if report.get("rejected").is_some() {
                return Ok(report);
            }
            let error = &report["error"];
            return Err(Refused {
                status: 422,
                code: error["code"].as_str().unwrap_or("unknown").to_owned(),
                message: error["message"].as_str().map(str::to_owned).unwrap_or(text),
            }
            .into());
        }
        Ok(serde_json::from_str(&self.finish(Ok(response))?)?)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn finish(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> anyhow::Result<String> {
        let mut response =
            response.map_err(|error| anyhow::anyhow!("could not reach the server at {}: {error}", self.base))?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(RESPONSE_BYTES_MAX).read_to_string()?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &parsed["error"];
        Err(Refused {
            status,
            code: error["code"].as_str().unwrap_or("unknown").to_owned(),
            message: error["message"].as_str().map(str::to_owned).unwrap_or(text),
        }
        .into())
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
