//! `/v1/{name}/changes` in the OpenAPI document: the collection's change feed, a stream of
//! Server-Sent Events (see `crate::feed`).

use serde_json::{Value, json};

use super::responses;
use crate::feed::stream::EVENT_STREAM;

/// The path item of a collection's change feed.
pub(super) fn changes_path(n: &str) -> Value {
    let position = json!({"type": "string", "pattern": "^[0-9]{1,18}$"});
    let described = "Each event is `id: <position>`, `event: create|update|delete` and `data:` \
        one line of JSON, `{\"type\", \"id\", \"version\", \"time\"}`: the document's type and \
        id, its version after the write (for a delete, the version deleted) and the time of the \
        write (RFC 3339, UTC). Positions are shared by every collection, increase in commit \
        order and have no gaps, so a client resumes exactly where it was with \
        `Last-Event-ID`. Lines starting with `:` are heartbeats. The stream ends when the \
        gateway shuts down.";
    json!({
        "get": {
            "operationId": format!("changes_{n}"), "tags": [n],
            "summary": format!("Follow the creates, updates and deletes of {n} as \
                Server-Sent Events"),
            "description": "Starts after the position given (`Last-Event-ID`, or `after`), or \
                at the end of the change log. Events older than the log's retention are gone: \
                resuming before them answers 410.",
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "required": false,
                 "description": "The id of the last event received: the stream resumes right \
                     after it.", "schema": position},
                {"name": "after", "in": "query", "required": false,
                 "description": "As `Last-Event-ID` (which wins when both are given).",
                 "schema": position},
            ],
            "responses": responses(json!({"200": {
                "description": described,
                "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
            }}), &[400, 404, 406, 410, 503]),
        },
    })
}
