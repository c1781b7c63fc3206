//! The protocol suite's core cases against the AWS build running locally for real: the local
//! server in forwarding mode (`--lambda-endpoint`) hands every route event to the function
//! binaries of `functions/aws` under `cargo lambda watch`, which run the service on DynamoDB
//! (moto) and answer clients through the local server's `@connections` endpoint.
//!
//! `cargo lambda` comes from `ROOMCAST_CARGO_LAMBDA` (default: the venv `scripts/test.sh`
//! installs, `~/.cache/roomcast/lambda-venv/bin/cargo-lambda`); without it the tests FAIL.
#![cfg(all(unix, feature = "dynamodb"))]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Local, start};
use roomcast_testkit::aws::moto::{Dynamo, dynamo};
use roomcast_testkit::process::{Lifeline, free_port, wait_listening};

/// How long the watcher may take to listen.
const WATCH_START: Duration = Duration::from_secs(120);

struct Stack {
    local: Local,
    _dynamo: Dynamo,
    _watch: Lifeline,
}

fn cargo_lambda() -> PathBuf {
    std::env::var_os("ROOMCAST_CARGO_LAMBDA").map_or_else(
        || {
            let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
            home.join(".cache/roomcast/lambda-venv/bin/cargo-lambda")
        },
        PathBuf::from,
    )
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn start_stack() -> Result<Stack, String> {
    let bin = cargo_lambda();
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run scripts/test.sh (it installs cargo-lambda)",
            bin.display()
        ));
    }
    // The function binaries are built now, so no invocation waits for a compile.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args(["build", "-p", "roomcast-aws", "--bins"])
        .current_dir(workspace())
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !built.success() {
        return Err("building the function binaries failed".into());
    }
    let dynamo = dynamo();
    let invoke_port = free_port();
    let table = format!("lambda-{}", std::process::id());
    let lambda_endpoint = format!("http://127.0.0.1:{invoke_port}");
    let local = start(&[
        "--dynamodb-endpoint",
        &dynamo.endpoint,
        "--table",
        &table,
        "--lambda-endpoint",
        &lambda_endpoint,
        "--rate-per-sec",
        "1000",
        "--rate-burst",
        "1000",
    ]);
    let env = [
        "ROOMCAST_JWT_SECRET=roomcast-protocol-suite-secret-0123456789".to_owned(),
        format!("ROOMCAST_TABLE={table}"),
        format!(
            "ROOMCAST_MANAGEMENT_ENDPOINT=http://127.0.0.1:{}",
            local.management_port()
        ),
        format!("AWS_ENDPOINT_URL_DYNAMODB={}", dynamo.endpoint),
        "AWS_ACCESS_KEY_ID=test".to_owned(),
        "AWS_SECRET_ACCESS_KEY=test".to_owned(),
        "AWS_REGION=us-east-1".to_owned(),
        "ROOMCAST_RATE_PER_SEC=1000".to_owned(),
        "ROOMCAST_RATE_BURST=1000".to_owned(),
    ];
    let mut command = Lifeline::command(None, &bin);
    command.args(["lambda", "watch", "-p", "roomcast-aws", "-A", "127.0.0.1"]);
    command.args(["-P", &invoke_port.to_string()]);
    for var in &env {
        command.args(["--env-var", var]);
    }
    command
        .current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut watch =
        Lifeline::spawn(command).map_err(|e| format!("starting cargo lambda watch: {e}"))?;
    wait_listening(invoke_port, WATCH_START, || watch.exited())
        .map_err(|e| format!("cargo lambda watch: {e}"))?;
    Ok(Stack {
        local,
        _dynamo: dynamo,
        _watch: watch,
    })
}

fn stack() -> &'static Local {
    static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();
    match STACK.get_or_init(start_stack) {
        Ok(stack) => &stack.local,
        Err(e) => panic!("the Lambda stack did not start: {e}"),
    }
}

roomcast_protocol_tests::protocol_cases!(stack();
    bad_tokens_refused_401,
    subprotocol_token_accepted_and_echoed,
    join_reports_head_members_and_presence,
    message_acked_then_delivered_to_others_and_own_devices,
    resend_same_id_returns_original_seq,
    edit_and_delete_author_only,
    typing_is_delivered_not_stored,
    read_cursor_moves_forward_only,
    presence_aggregates_devices_with_last_seen,
    history_pages_before_after_limit,
    rejected_frames_get_stable_error_codes,
    tenants_are_isolated,
    resume_replays_exactly_the_missed_messages,
    http_publish_needs_service_role,
    support_conversation_through_the_inbox,
    jwt_attacks_refused_401,
    non_members_cannot_act_in_a_room,
    nobody_changes_another_users_message,
    tenants_are_isolated_on_every_path,
    http_api_is_tenant_isolated,
);
