//! The generated API specs under docs/schema/ equal a fresh generation from the wire types, and
//! every example frame in docs/protocol.md is valid against them and is what the server reads
//! (client actions) or writes (server frames); its examples of HTTP answers are valid against
//! the OpenAPI document.
//!
//! After a change to the wire types, regenerate the specs with
//! `ROOMCAST_WRITE_SPECS=1 cargo test -p roomcast-core --features schema --test specs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use roomcast_core::protocol::{ServerFrame, parse_client_frame};
use roomcast_core::spec::{
    client_action_schema, documents, openapi, server_frame_schema, tag_value,
};
use serde_json::{Value, json};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// A document as committed: pretty JSON and a final newline.
fn rendered(document: &Value) -> String {
    // Invariant: a `Value` always serializes.
    serde_json::to_string_pretty(document).expect("a JSON value serializes") + "\n"
}

#[test]
fn committed_specs_equal_a_fresh_generation() {
    let dir = docs().join("schema");
    let write = std::env::var_os("ROOMCAST_WRITE_SPECS").is_some();
    let mut stale = Vec::new();
    for document in documents().expect("every type is described alike when read and written") {
        let path = dir.join(document.file);
        let fresh = rendered(&document.content);
        if write {
            std::fs::create_dir_all(&dir).expect("docs/schema/ can be created");
            std::fs::write(&path, &fresh).expect("a spec can be written");
        } else {
            // Compared as JSON, so key order (serde_json's map order depends on its features)
            // cannot fail the check.
            let committed = std::fs::read_to_string(&path).ok();
            let committed = committed.and_then(|text| serde_json::from_str::<Value>(&text).ok());
            if committed.as_ref() != Some(&document.content) {
                stale.push(document.file);
            }
        }
        println!("docs/schema/{}: {} bytes", document.file, fresh.len());
    }
    assert!(
        stale.is_empty(),
        "docs/schema/ {stale:?} differ from the wire types: run \
         `ROOMCAST_WRITE_SPECS=1 cargo test -p roomcast-core --features schema --test specs` \
         and commit the result"
    );
}

/// A JSON example in docs/protocol.md: the line it starts on, the heading it is under and the
/// value.
struct Example {
    line: usize,
    heading: String,
    value: Value,
}

/// Every JSON object in docs/protocol.md's code blocks: a ```json block as one value, else each
/// of its lines; in other blocks (the worked example), what follows `→` or `←` on a line. A line
/// that looks like a frame but does not parse is an error: the doc would show a broken frame.
fn examples(doc: &str) -> Result<Vec<Example>, String> {
    let mut found = Vec::new();
    let mut block: Option<(String, Vec<(usize, &str)>)> = None;
    let mut heading = "";
    for (index, raw) in doc.lines().enumerate() {
        let line = raw.trim_start();
        if let Some(language) = line.strip_prefix("```") {
            match block.take() {
                Some((language, lines)) => {
                    found.extend(block_examples(&language, &lines, heading)?);
                }
                None => block = Some((language.trim().to_owned(), Vec::new())),
            }
        } else if let Some((_, lines)) = block.as_mut() {
            lines.push((index + 1, line));
        } else if line.starts_with('#') {
            heading = line;
        }
    }
    Ok(found)
}

fn block_examples(
    language: &str,
    lines: &[(usize, &str)],
    heading: &str,
) -> Result<Vec<Example>, String> {
    let example = |line, value| Example {
        line,
        heading: heading.to_owned(),
        value,
    };
    let Some(&(first, _)) = lines.first() else {
        return Ok(Vec::new());
    };
    if language == "json" {
        let whole: Vec<&str> = lines.iter().map(|(_, l)| *l).collect();
        if let Ok(value) = serde_json::from_str(&whole.join("\n")) {
            return Ok(vec![example(first, value)]);
        }
    }
    let mut found = Vec::new();
    for &(line, text) in lines {
        let json = if language == "json" {
            text
        } else {
            match text
                .find(['→', '←'])
                .and_then(|at| text[at..].find('{').map(|b| at + b))
            {
                Some(start) => &text[start..],
                None => continue,
            }
        };
        match serde_json::from_str::<Value>(json) {
            Ok(value) => found.push(example(line, value)),
            Err(e) if json.contains("\"action\"") || json.contains("\"type\"") => {
                return Err(format!(
                    "docs/protocol.md:{line}: a frame that is not JSON: {e}"
                ));
            }
            Err(_) => {}
        }
    }
    Ok(found)
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).expect("the generated schema is a valid JSON Schema")
}

/// A validator of the success answer of the HTTP operation a heading names (the headings of
/// protocol.md §12: ``### `GET /rooms/{room}/messages` ``), from the OpenAPI document.
fn http_answer_validator(openapi: &Value, heading: &str) -> Option<jsonschema::Validator> {
    let named = heading.trim_start_matches('#').trim().trim_matches('`');
    let (method, path) = named.split_once(' ')?;
    let pointer = format!(
        "/paths/{}/{}/responses",
        path.replace('~', "~0").replace('/', "~1"),
        method.to_lowercase()
    );
    let responses = openapi.pointer(&pointer)?.as_object()?;
    let (_, success) = responses
        .iter()
        .find(|(status, _)| status.starts_with('2'))?;
    let mut schema = success
        .pointer("/content/application~1json/schema")?
        .clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema["components"] = openapi["components"].clone();
    Some(validator(&schema))
}

/// The `action`s or `type`s a schema's oneOf describes.
fn tags(schema: &Value, tag: &str) -> BTreeSet<String> {
    let variants = schema["oneOf"].as_array().into_iter().flatten();
    variants.filter_map(|v| tag_value(v, tag)).collect()
}

/// `value`'s `tag`, when it is a string.
fn tag_of(value: &Value, tag: &str) -> Option<String> {
    value.get(tag).and_then(Value::as_str).map(str::to_owned)
}

#[test]
fn protocol_examples_are_frames_the_server_reads_or_writes() {
    let doc = std::fs::read_to_string(docs().join("protocol.md")).expect("docs/protocol.md");
    let (client_schema, server_schema) = (client_action_schema(), server_frame_schema());
    let client = validator(&client_schema);
    let server = validator(&server_schema);
    let mut failures = Vec::new();
    let openapi = openapi().expect("every type is described alike when read and written");
    let (mut actions, mut frames, mut answers) = (0, 0, 0);
    let (mut shown_actions, mut shown_frames) = (BTreeSet::new(), BTreeSet::new());
    for Example {
        line,
        heading,
        value,
    } in examples(&doc).unwrap_or_else(|e| panic!("{e}"))
    {
        let at = format!("docs/protocol.md:{line}");
        let text = value.to_string();
        if let Some(action) = tag_of(&value, "action") {
            actions += 1;
            shown_actions.insert(action);
            failures.extend(
                client
                    .iter_errors(&value)
                    .map(|e| format!("{at}: {e} at {}", e.instance_path())),
            );
            if let Err(f) = parse_client_frame(&text) {
                failures.push(format!("{at}: the server refuses it: {:?}", f.rejection));
            }
        } else if let Some(frame_type) = tag_of(&value, "type") {
            frames += 1;
            shown_frames.insert(frame_type);
            failures.extend(
                server
                    .iter_errors(&value)
                    .map(|e| format!("{at}: {e} at {}", e.instance_path())),
            );
            // The server writes exactly this: reading it as a frame and writing it back loses
            // or adds nothing (key order aside).
            match serde_json::from_value::<ServerFrame>(value.clone()) {
                Ok(frame) => {
                    let written: Value =
                        serde_json::from_str(&frame.to_json()).expect("a frame's JSON parses");
                    if written != value {
                        failures.push(format!("{at}: the server would write {written}"));
                    }
                }
                Err(e) => failures.push(format!("{at}: not a server frame: {e}")),
            }
        } else if let Some(answer) = http_answer_validator(&openapi, &heading) {
            answers += 1;
            failures.extend(
                answer
                    .iter_errors(&value)
                    .map(|e| format!("{at}: {e} at {}", e.instance_path())),
            );
        }
    }
    println!(
        "docs/protocol.md: {actions} client actions, {frames} server frames and {answers} HTTP \
         answers validated"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every action and frame has an example (which also keeps the search from passing on
    // finding nothing).
    let (all_actions, all_frames) = (tags(&client_schema, "action"), tags(&server_schema, "type"));
    let unshown: Vec<_> = (all_actions.difference(&shown_actions))
        .chain(all_frames.difference(&shown_frames))
        .collect();
    assert!(
        unshown.is_empty(),
        "docs/protocol.md shows no example of {unshown:?}"
    );
}

/// The rules the client schema states (names, ids, emoji, limits, scores) agree with the
/// parser: every ASCII character, the Unicode white space and every bound is accepted by both
/// or refused by both.
#[test]
fn client_schema_rules_agree_with_the_parser() {
    let client = validator(&client_action_schema());
    let mut frames = Vec::new();
    let texts = ('\0'..='\x7f')
        .chain([
            'é', '\u{200b}', '\u{85}', '\u{a0}', '\u{1680}', '\u{2028}', '\u{3000}',
        ])
        .chain(['\u{feff}', '👍'])
        .map(String::from)
        .chain(["", "a", "👨‍👩‍👧‍👦", "😀😀😀😀😀😀😀😀", "a b"].map(String::from))
        .chain([7, 8, 9, 63, 64, 65, 128, 129].map(|n| "a".repeat(n)));
    for text in texts {
        frames.extend([
            json!({"action": "join", "room": text}),
            json!({"action": "transfer", "room": "r", "to": text}),
            json!({"action": "block", "user": text}),
            json!({"action": "members", "room": "r", "cursor": text}),
            json!({"action": "message", "room": "r", "id": text, "body": "x"}),
            json!({"action": "react", "room": "r", "seq": 1, "emoji": text}),
            json!({"action": "unreact", "room": "r", "seq": 1, "emoji": text}),
        ]);
    }
    for n in [0, 1, 5, 6, 100, 101] {
        frames.extend([
            json!({"action": "history", "room": "r", "limit": n}),
            json!({"action": "members", "room": "r", "limit": n}),
            json!({"action": "rate", "room": "r", "score": n}),
        ]);
    }
    let disagreements: Vec<String> = frames
        .iter()
        .filter(|frame| client.is_valid(frame) != parse_client_frame(&frame.to_string()).is_ok())
        .map(Value::to_string)
        .collect();
    assert!(
        disagreements.is_empty(),
        "the schema and the parser disagree on {disagreements:?}"
    );
}
