//! The machine-readable API contract, generated from the wire types: the JSON Schemas of client
//! actions and server frames, an AsyncAPI 3 document of the WebSocket API and an OpenAPI 3.1
//! document of the HTTP API. Pure: it builds the documents as JSON values; tests/specs.rs writes
//! them under docs/schema/ and fails when the committed files differ from a fresh generation.
//! docs/protocol.md stays the readable contract.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::attachments::{DownloadLink, UploadGrant, UploadRequest};
use crate::http::{ErrorBody, Health, HistoryPage, PublishBody, Published};
use crate::limits::{
    MAX_CLIENT_ID_LEN, MAX_EMOJI_CHARS, MAX_HISTORY_LIMIT, MAX_MEMBERS_PAGE, MAX_NAME_LEN,
};
use crate::protocol::{ClientFrame, ServerFrame};
use crate::service::{EndpointChange, TokenRequest, VisitorToken};
use crate::support::roster::MAX_CAPACITY;

/// One generated document: its file name under docs/schema/ and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// File name, relative to docs/schema/.
    pub file: &'static str,
    /// The JSON document.
    pub content: Value,
}

/// Every generated document, in a fixed order.
pub fn documents() -> Result<Vec<Document>, String> {
    Ok(vec![
        Document {
            file: "client-action.json",
            content: client_action_schema(),
        },
        Document {
            file: "server-frame.json",
            content: server_frame_schema(),
        },
        Document {
            file: "asyncapi.json",
            content: asyncapi()?,
        },
        Document {
            file: "openapi.json",
            content: openapi()?,
        },
    ])
}

/// Which side of the wire a type is described for: what the server reads (fields with a default
/// are optional) or what it writes (fields it always writes are required, `null` included).
#[derive(Debug, Clone, Copy)]
enum Side {
    Read,
    Write,
}

fn settings(base: SchemaSettings, side: Side, definitions_path: &'static str) -> SchemaSettings {
    let base = base.with(|s| s.definitions_path = definitions_path.into());
    match side {
        Side::Read => base.for_deserialize(),
        Side::Write => base.for_serialize(),
    }
}

/// What `ref` is on a client frame. No Rust field carries it: the parser reads it from the raw
/// frame (`protocol::parse_client_frame`), so [`client_frame_rules`] adds it to every action.
fn reference_property() -> Value {
    json!({
        "description": "Echoed as `ref` by the `error` frame that rejects this frame (the frame's `id` wins when it has one); a number comes back as a string. Replies that carry a `ref` (`upload`, `status`, `members`, desk replies) echo it too.",
        "type": ["string", "number"]
    })
}

/// The characters of a name (`protocol::validate_name`), as a JSON Schema pattern.
const NAME_PATTERN: &str = "^[A-Za-z0-9_.:@-]+$";
/// Printable ASCII without space (`protocol::validate_client_id`), as a JSON Schema pattern.
const CLIENT_ID_PATTERN: &str = "^[!-~]+$";
/// No white space (Unicode's `White_Space`, as Rust's `char::is_whitespace`) or control
/// character (`Cc`) (`protocol::validate_emoji`), as a JSON Schema pattern. Spelled out rather
/// than `\s`, which in ECMAScript also takes U+FEFF. (The 32-byte bound needs no rule: 8
/// characters take at most 32 bytes.)
const EMOJI_PATTERN: &str =
    "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+$";

/// The rule of protocol.md §4's validation table that JSON Schema can state for `field` of
/// `action`, as keywords to add to the field's schema (tests/specs.rs checks them against the
/// parser, character by character and at each bound).
fn field_rule(action: &str, field: &str) -> Option<Value> {
    let range = |max: u32| json!({"minimum": 1, "maximum": max});
    match (action, field) {
        (_, "room" | "to" | "user" | "cursor") => {
            Some(json!({"minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": NAME_PATTERN}))
        }
        ("message", "id") => Some(
            json!({"minLength": 1, "maxLength": MAX_CLIENT_ID_LEN, "pattern": CLIENT_ID_PATTERN}),
        ),
        ("react" | "unreact", "emoji") => {
            Some(json!({"minLength": 1, "maxLength": MAX_EMOJI_CHARS, "pattern": EMOJI_PATTERN}))
        }
        ("history", "limit") => Some(range(MAX_HISTORY_LIMIT)),
        ("members", "limit") => Some(range(MAX_MEMBERS_PAGE)),
        ("rate", "score") => Some(range(5)),
        ("availability", "capacity") => Some(range(MAX_CAPACITY)),
        _ => None,
    }
}

/// `ClientFrame`'s schema transform: each action's fields get the rules of [`field_rule`], and
/// each action a `ref`.
pub(crate) fn client_frame_rules(schema: &mut Schema) {
    let Some(Value::Array(variants)) = schema.get_mut("oneOf") else {
        return;
    };
    for variant in variants {
        let action = tag_value(variant, "action").unwrap_or_default();
        let Some(properties) = variant.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, property) in properties.iter_mut() {
            if let (Some(Value::Object(rule)), Some(property)) =
                (field_rule(&action, field), property.as_object_mut())
            {
                property.extend(rule);
            }
        }
        properties.entry("ref").or_insert_with(reference_property);
    }
}

fn titled(mut root: Schema, title: &str) -> Value {
    root.insert("title".into(), title.into());
    root.to_value()
}

/// JSON Schema (2020-12) of every frame a client may send: a oneOf by `action`.
pub fn client_action_schema() -> Value {
    let generator = settings(SchemaSettings::draft2020_12(), Side::Read, "/$defs").into_generator();
    titled(
        generator.into_root_schema_for::<ClientFrame>(),
        "ClientAction",
    )
}

/// JSON Schema (2020-12) of every frame the server sends: a oneOf by `type`.
pub fn server_frame_schema() -> Value {
    let generator =
        settings(SchemaSettings::draft2020_12(), Side::Write, "/$defs").into_generator();
    titled(
        generator.into_root_schema_for::<ServerFrame>(),
        "ServerFrame",
    )
}

/// Where components live in both documents.
const COMPONENTS: &str = "/components/schemas";

/// Adds `more` to `into`; a name both hold must describe the same thing (a type read and written
/// alike), else the documents would silently pick one.
fn merge_definitions(
    into: &mut Map<String, Value>,
    more: Map<String, Value>,
) -> Result<(), String> {
    for (name, schema) in more {
        match into.get(&name) {
            Some(existing) if *existing != schema => {
                return Err(format!(
                    "`{name}` is described differently as read and as written: rename one"
                ));
            }
            _ => {
                into.insert(name, schema);
            }
        }
    }
    Ok(())
}

/// The variants of an internally tagged enum's root schema, each with its tag value, and the
/// definitions they refer to.
type Variants = (Vec<(String, Value)>, Map<String, Value>);

fn variants_of(mut root: Schema, tag: &str) -> Result<Variants, String> {
    let definitions = match root.pointer_mut(COMPONENTS) {
        Some(Value::Object(map)) => std::mem::take(map),
        _ => Map::new(),
    };
    let Some(Value::Array(entries)) = root.remove("oneOf") else {
        return Err(format!("the `{tag}` enum's schema is not a oneOf"));
    };
    let mut variants = Vec::with_capacity(entries.len());
    for mut entry in entries {
        let name = tag_value(&entry, tag).ok_or_else(|| format!("a variant without `{tag}`"))?;
        if let Some(object) = entry.as_object_mut() {
            object.remove("$schema");
        }
        variants.push((name, entry));
    }
    Ok((variants, definitions))
}

/// The `const` of property `tag` (`action`, `type`) in a variant of a tagged enum's schema, or
/// in one of its `allOf` parts.
pub fn tag_value(variant: &Value, tag: &str) -> Option<String> {
    let own = variant
        .pointer(&format!("/properties/{tag}/const"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    own.or_else(|| {
        variant
            .get("allOf")?
            .as_array()?
            .iter()
            .find_map(|part| tag_value(part, tag))
    })
}

/// The AsyncAPI 3 document of the WebSocket API: one channel (a connection), the client
/// actions the server receives and the frames it sends, with their payloads from the same
/// types as [`client_action_schema`] and [`server_frame_schema`] (in AsyncAPI's schema format,
/// JSON Schema draft-07).
pub fn asyncapi() -> Result<Value, String> {
    let read = settings(SchemaSettings::draft07(), Side::Read, COMPONENTS).into_generator();
    let write = settings(SchemaSettings::draft07(), Side::Write, COMPONENTS).into_generator();
    let (actions, mut schemas) = variants_of(read.into_root_schema_for::<ClientFrame>(), "action")?;
    let (frames, written) = variants_of(write.into_root_schema_for::<ServerFrame>(), "type")?;
    merge_definitions(&mut schemas, written)?;

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operation_messages = |kind: &str, variants: Vec<(String, Value)>| {
        let mut refs = Vec::new();
        for (name, schema) in variants {
            let key = format!("{kind}.{name}");
            let mut message = json!({
                "name": name,
                "title": format!("{name} ({kind})"),
                "payload": {"$ref": format!("#{COMPONENTS}/{key}")},
            });
            if let Some(description) = schema.get("description") {
                message["summary"] = description.clone();
            }
            messages.insert(key.clone(), message);
            channel_messages.insert(
                key.clone(),
                json!({"$ref": format!("#/components/messages/{key}")}),
            );
            refs.push(json!({"$ref": format!("#/channels/connection/messages/{key}")}));
            schemas.insert(key, schema);
        }
        refs
    };
    let received = operation_messages("action", actions);
    let sent = operation_messages("frame", frames);

    Ok(json!({
        "asyncapi": "3.1.0",
        "info": {
            "title": "roomcast WebSocket API",
            "version": "1",
            "description": "Protocol v1, generated from the core's wire types (shared/src/protocol.rs). docs/protocol.md is the readable contract: processing order, validation rules, errors, close codes, limits and guarantees.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:3001",
                "protocol": "ws",
                "description": "The local server (infra/local). AWS: wss://{api-id}.execute-api.{region}.amazonaws.com/{stage}; edge: wss://{worker-host}/rooms/{room}/ws (protocol.md §14).",
                "security": [{"$ref": "#/components/securitySchemes/queryToken"}],
            }
        },
        "channels": {
            "connection": {
                "address": "/",
                "title": "A connection",
                "description": "One WebSocket connection: JSON text frames, client frames carry `action`, server frames `type`.",
                "messages": channel_messages,
            }
        },
        "operations": {
            "receiveAction": {
                "action": "receive",
                "channel": {"$ref": "#/channels/connection"},
                "summary": "A client action: handled in the order received.",
                "messages": received,
            },
            "sendFrame": {
                "action": "send",
                "channel": {"$ref": "#/channels/connection"},
                "summary": "A server frame: a reply to the connection's action, or a room's fan-out.",
                "messages": sent,
            },
        },
        "components": {
            "securitySchemes": {
                "queryToken": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The JWT (protocol.md §3) as `?token=`, or as the second entry of `Sec-WebSocket-Protocol: roomcast.v1, <JWT>`.",
                }
            },
            "messages": messages,
            "schemas": schemas,
        },
    }))
}

/// A JSON body of `schema`.
fn json_content(schema: Schema) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// One HTTP operation of [`openapi`].
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    /// Whether it takes the `Authorization: Bearer` token.
    bearer: bool,
    /// Query parameters: name, description.
    query: &'static [(&'static str, &'static str)],
    request: Option<Value>,
    /// Success statuses with their descriptions, and their body.
    success: (&'static [(u16, &'static str)], Option<Value>),
    /// Error statuses (each with the error body).
    errors: &'static [u16],
}

/// The query of the endpoints API's listings.
const LISTING_LIMIT: &[(&str, &str)] = &[("limit", "At most this many, 1-100 (default 100).")];

/// The path parameters of `path` (its `{name}` segments), as strings.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// `get_rooms_room_messages` for `GET /rooms/{room}/messages`.
fn operation_id(method: &str, path: &str) -> String {
    let words = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty());
    std::iter::once(method)
        .chain(words)
        .collect::<Vec<_>>()
        .join("_")
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "`BAD_FRAME` or `INVALID`",
        401 => "`UNAUTHORIZED`: a missing or bad Bearer token",
        403 => "`FORBIDDEN`",
        404 => "`NOT_FOUND`",
        405 => "`INVALID`: a method the endpoint does not serve",
        409 => "`CONFLICT`",
        413 => "`TOO_LARGE`",
        429 => "`RATE_LIMITED` or `LIMIT_EXCEEDED`",
        _ => "`UNAVAILABLE`: storage failed",
    }
}

/// What the endpoints API answers: built as JSON by the service, described in docs/events.md.
fn endpoints_answer() -> Option<Value> {
    Some(json!({"application/json": {"schema": {
        "type": "object",
        "description": "The endpoints API's answer, as docs/events.md describes it (built as JSON by the service, not from a Rust type).",
    }}}))
}

/// The OpenAPI 3.1 document of the HTTP API (`http::route`): request and answer bodies from
/// the types the core reads and writes.
pub fn openapi() -> Result<Value, String> {
    let mut read =
        settings(SchemaSettings::draft2020_12(), Side::Read, COMPONENTS).into_generator();
    let mut write =
        settings(SchemaSettings::draft2020_12(), Side::Write, COMPONENTS).into_generator();
    fn body<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<Value> {
        Some(json_content(generator.subschema_for::<T>()))
    }
    let error = write.subschema_for::<ErrorBody<'_>>();
    let binary = Some(json!({"application/octet-stream": {"schema": {}}}));
    let change = body::<EndpointChange>(&mut read);
    let operations = [
        Operation {
            method: "get",
            path: "/health",
            summary: "Liveness",
            bearer: false,
            query: &[],
            request: None,
            success: (&[(200, "Up")], body::<Health>(&mut write)),
            errors: &[],
        },
        Operation {
            method: "get",
            path: "/rooms/{room}/messages",
            summary: "A page of a room's history, oldest first (protocol.md §12)",
            bearer: true,
            query: &[
                ("before", "Only messages with seq < before."),
                ("after", "Only messages with seq > after, oldest first."),
                ("limit", "Page size, 1-100 (default 50)."),
            ],
            request: None,
            success: (&[(200, "The page")], body::<HistoryPage<'_>>(&mut write)),
            errors: &[400, 401, 403, 429, 503],
        },
        Operation {
            method: "post",
            path: "/rooms/{room}/messages",
            summary: "Server-side publish (role `service`); 200 with `duplicate: true` for an id stored before",
            bearer: true,
            query: &[],
            request: body::<PublishBody>(&mut read),
            success: (
                &[
                    (201, "Stored"),
                    (
                        200,
                        "Stored before (`duplicate: true`): nothing new was stored",
                    ),
                ],
                body::<Published<'_>>(&mut write),
            ),
            errors: &[400, 401, 403, 413, 429, 503],
        },
        Operation {
            method: "post",
            path: "/rooms/{room}/uploads",
            summary: "An attachment slot and where to send the bytes (protocol.md §16)",
            bearer: true,
            query: &[],
            request: body::<UploadRequest>(&mut read),
            success: (&[(201, "The slot")], body::<UploadGrant>(&mut write)),
            errors: &[400, 401, 403, 413, 429, 503],
        },
        Operation {
            method: "get",
            path: "/rooms/{room}/attachments/{id}",
            summary: "A short-lived download link to an attachment",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(200, "The link")], body::<DownloadLink>(&mut write)),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Operation {
            method: "put",
            path: "/uploads/{token}",
            summary: "The bytes of a slot, to its signed link (local server and edge)",
            bearer: false,
            query: &[],
            request: binary.clone(),
            success: (&[(204, "Stored")], None),
            errors: &[400, 403, 409, 413],
        },
        Operation {
            method: "get",
            path: "/files/{token}",
            summary: "An attachment's bytes, from its signed link (local server and edge)",
            bearer: false,
            query: &[],
            request: None,
            success: (&[(200, "The bytes")], binary),
            errors: &[403, 404],
        },
        Operation {
            method: "post",
            path: "/embed/token",
            summary: "A visitor token for a publishable key, from an allowed `Origin` (protocol.md §15)",
            bearer: false,
            query: &[],
            request: body::<TokenRequest>(&mut read),
            success: (&[(200, "The token")], body::<VisitorToken>(&mut write)),
            errors: &[400, 403, 413, 429, 503],
        },
        Operation {
            method: "get",
            path: "/events/endpoints",
            summary: "The tenant's webhook endpoints (role `service`, docs/events.md)",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(200, "The endpoints")], endpoints_answer()),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            method: "post",
            path: "/events/endpoints",
            summary: "Create an endpoint; the answer shows its secret once",
            bearer: true,
            query: &[],
            request: change.clone(),
            success: (&[(201, "Created")], endpoints_answer()),
            errors: &[400, 401, 403, 404, 413, 429, 503],
        },
        Operation {
            method: "get",
            path: "/events/endpoints/{id}",
            summary: "One endpoint",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(200, "The endpoint")], endpoints_answer()),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            method: "patch",
            path: "/events/endpoints/{id}",
            summary: "Change an endpoint",
            bearer: true,
            query: &[],
            request: change,
            success: (&[(200, "Changed")], endpoints_answer()),
            errors: &[400, 401, 403, 404, 413, 429, 503],
        },
        Operation {
            method: "delete",
            path: "/events/endpoints/{id}",
            summary: "Delete an endpoint",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(200, "Deleted")], endpoints_answer()),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            method: "post",
            path: "/events/endpoints/{id}/rotate",
            summary: "A new signing secret; the previous one stays valid for a while",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(200, "The new secret")], endpoints_answer()),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            method: "post",
            path: "/events/endpoints/{id}/test",
            summary: "Send a test event to an endpoint",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(201, "Queued")], endpoints_answer()),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            method: "get",
            path: "/events/endpoints/{id}/attempts",
            summary: "Recent delivery attempts to an endpoint",
            bearer: true,
            query: LISTING_LIMIT,
            request: None,
            success: (&[(200, "The attempts")], endpoints_answer()),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Operation {
            method: "get",
            path: "/events/endpoints/{id}/dead-letters",
            summary: "Events an endpoint did not take after every retry",
            bearer: true,
            query: LISTING_LIMIT,
            request: None,
            success: (&[(200, "The dead letters")], endpoints_answer()),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Operation {
            method: "post",
            path: "/events/endpoints/{id}/dead-letters/{event}/replay",
            summary: "Deliver a dead letter again",
            bearer: true,
            query: &[],
            request: None,
            success: (&[(200, "Queued again")], endpoints_answer()),
            errors: &[401, 403, 404, 429, 503],
        },
    ];

    let mut paths = Map::new();
    for op in operations {
        let mut parameters = path_parameters(op.path);
        parameters.extend(op.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description,
                   "schema": {"type": "integer", "minimum": 0}})
        }));
        let mut responses = Map::new();
        let (statuses, content) = op.success;
        for (status, description) in statuses {
            let mut success = json!({"description": description});
            if let Some(content) = &content {
                success["content"] = content.clone();
            }
            responses.insert(status.to_string(), success);
        }
        for status in op.errors {
            responses.insert(
                status.to_string(),
                json!({"description": error_description(*status), "content": json_content(error.clone())}),
            );
        }
        let mut operation = json!({
            "summary": op.summary,
            "operationId": operation_id(op.method, op.path),
            "parameters": parameters,
            "responses": responses,
            "security": if op.bearer { json!([{"bearer": []}]) } else { json!([]) },
        });
        if let Some(content) = op.request {
            operation["requestBody"] = json!({"required": true, "content": content});
        }
        let item = paths
            .entry(op.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or("a path item is an object")?;
        item.insert(op.method.into(), operation);
    }

    let mut schemas = read.take_definitions(true);
    merge_definitions(&mut schemas, write.take_definitions(true))?;
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "roomcast HTTP API",
            "version": "1",
            "description": "Generated from the core's HTTP mapping (shared/src/http.rs) and the types it reads and writes. docs/protocol.md §12 is the readable contract; every route answers CORS for any origin.",
        },
        "servers": [{"url": "http://127.0.0.1:3001", "description": "The local server (the AWS HTTP API and the edge Worker serve the same paths)"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }))
}
