//! A fake API server for the middle test tier: a kube `Client` whose
//! requests go to a closure instead of a cluster, with every request
//! recorded in order. Tests of the I/O shells (the reconciler's execute
//! path, the event recorder, the leader watchdog) assert on what was sent,
//! in which order and with which preconditions, and make the "server"
//! answer 404, 409 or whatever the case needs. Built on tower-test's mock
//! service, as kube-rs's own controller examples test their reconcilers.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub method: String,
    pub path: String,
    /// The JSON body (`Null` when there was none).
    pub body: Value,
}

impl Recorded {
    /// `"PATCH /apis/apps/v1/namespaces/ns/replicasets/x"`: short enough to
    /// compare whole sequences in an assertion.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub(crate) struct FakeApi {
    pub client: Client,
    requests: Arc<Mutex<Vec<Recorded>>>,
    server: JoinHandle<()>,
}

impl FakeApi {
    /// Starts a fake server answering each request with `respond`'s status
    /// code and JSON body.
    pub fn start(respond: impl Fn(&Recorded) -> (u16, Value) + Send + 'static) -> FakeApi {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log = requests.clone();
        let server = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("request body");
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, reply) = respond(&recorded);
                log.lock().unwrap().push(recorded);
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        FakeApi {
            client: Client::new(service, "default"),
            requests,
            server,
        }
    }

    /// Every request so far, in the order the server received them.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests as `METHOD path` lines.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::line).collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A metav1.Status error body, as the API server sends with 4xx/5xx.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "code": code, "reason": reason, "message": message}),
    )
}

/// The request body echoed back with a resourceVersion, as a create,
/// replace or patch answer that callers decode into the object.
pub(crate) fn echo(r: &Recorded, resource_version: &str) -> (u16, Value) {
    let mut body = if r.body.is_object() {
        r.body.clone()
    } else {
        json!({})
    };
    body["metadata"]["resourceVersion"] = json!(resource_version);
    (200, body)
}
