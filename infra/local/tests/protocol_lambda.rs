//! The protocol suite's core cases against the AWS build running locally for real: the local
//! server in forwarding mode (`--lambda-endpoint`) hands every route event to the function
//! binaries of `functions/aws` under `cargo lambda watch`, which run the service on DynamoDB
//! (moto) and answer clients through the local server's `@connections` endpoint.
//!
//! Integration events run as deployed: the table's stream (moto's DynamoDB Streams API) feeds
//! the `events` function and the SQS delivery queue (moto's, with its dead-letter queue) the
//! `deliver` function, each through an emulation of Lambda's event source mapping
//! ([`roomcast_testkit::aws::mappings`]), the stream's with the deployed filter criteria
//! (`STREAM_FILTER_PATTERNS`: only messages and member events reach `events`); the webhook
//! cases then run against the whole.
//!
//! Attachments go to a bucket on moto's S3 (`AWS_ENDPOINT_URL_S3`): the functions sign the
//! POST uploads and GET downloads the attachment cases send to it directly.
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
use roomcast_aws::dynamo::STREAM_FILTER_PATTERNS;
use roomcast_aws::{DynamoConfig, DynamoStore};
use roomcast_core::auth::Claims;
use roomcast_protocol_tests::deployment::{EMBED_KEYS, PRESENCE_MAX_CONNECTIONS};
use roomcast_protocol_tests::{Capabilities, Deployment};
use roomcast_testkit::aws::mappings::{
    AwsEndpoint, Function, QueueMapping, QueueSettings, StreamMapping, StreamSettings,
    create_queue, create_queue_with_dlq, warm,
};
use roomcast_testkit::aws::moto::{Dynamo, dynamo};
use roomcast_testkit::process::{Lifeline, free_port, wait_listening};

/// How long the watcher may take to listen.
const WATCH_START: Duration = Duration::from_secs(120);

/// Receives before a delivery goes to the dead-letter queue (as deployed).
const MAX_RECEIVES: u32 = 50;

/// The stack; dropped in reverse order of start (the mappings before the functions they call).
struct Stack {
    _deliveries: QueueMapping,
    _stream: StreamMapping,
    local: Local,
    _watch: Lifeline,
    _dynamo: Dynamo,
}

/// The deployed filter patterns of the events function's stream mapping.
fn stream_filter_patterns() -> Result<Vec<serde_json::Value>, String> {
    STREAM_FILTER_PATTERNS
        .iter()
        .map(|p| serde_json::from_str(p).map_err(|e| format!("filter pattern {p}: {e}")))
        .collect()
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own: the stack
/// starts inside a test's runtime, which cannot block on another future.
fn on_own_runtime<T, Fut>(work: impl FnOnce() -> Fut + Send + 'static) -> Result<T, String>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(work())
    })
    .join()
    .map_err(|_| "a set-up step panicked".to_owned())?
}

/// Turns on the stream of `table` at `aws`.
fn enable_stream(aws: &AwsEndpoint, table: &str) -> Result<(), String> {
    let store = DynamoStore::new(aws.dynamodb(), table.to_owned(), DynamoConfig::default());
    on_own_runtime(async move || {
        store
            .enable_stream()
            .await
            .map_err(|e| format!("enabling the table's stream: {e}"))
    })
}

/// The SQS queues the stack creates on moto: (deliveries, on-failure destination of the
/// stream mapping).
fn queues(aws: &AwsEndpoint, name: &str) -> Result<(String, String), String> {
    let (sqs, name) = (aws.sqs(), name.to_owned());
    on_own_runtime(async move || {
        let (deliveries, _) = create_queue_with_dlq(&sqs, &name, 30, MAX_RECEIVES)
            .await
            .map_err(|e| e.to_string())?;
        let failures = create_queue(&sqs, &format!("{name}-failures"), 30, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok((deliveries.url, failures.url))
    })
}

/// Creates the attachments bucket `name` on moto's S3 at `aws`.
fn attachments_bucket(aws: &AwsEndpoint, name: &str) -> Result<(), String> {
    let (s3, name) = (aws.s3(), name.to_owned());
    on_own_runtime(async move || {
        s3.create_bucket()
            .bucket(&name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("creating the attachments bucket: {e}"))
    })
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
    let aws = AwsEndpoint::new(&dynamo.endpoint);
    let (delivery_queue, failures_queue) = queues(&aws, &table)?;
    let bucket = format!("attachments-{}", std::process::id());
    attachments_bucket(&aws, &bucket)?;
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
        format!("AWS_ENDPOINT_URL_SQS={}", dynamo.endpoint),
        // Attachments in a bucket on moto's S3 (the functions sign POSTs and GETs to it).
        format!("AWS_ENDPOINT_URL_S3={}", dynamo.endpoint),
        format!("ROOMCAST_ATTACHMENT_BUCKET={bucket}"),
        // The quota case asks for slots until refused: a low quota keeps it short.
        "ROOMCAST_UPLOADS_PER_USER_DAY=20".to_owned(),
        format!("ROOMCAST_DELIVERY_QUEUE_URL={delivery_queue}"),
        // Webhooks to the cases' loopback receivers, retried quickly.
        "ROOMCAST_WEBHOOK_ALLOW_PRIVATE=true".to_owned(),
        "ROOMCAST_WEBHOOK_FIRST_RETRY_MS=200".to_owned(),
        "ROOMCAST_WEBHOOK_TIMEOUT_MS=1000".to_owned(),
        "AWS_ACCESS_KEY_ID=test".to_owned(),
        "AWS_SECRET_ACCESS_KEY=test".to_owned(),
        "AWS_REGION=us-east-1".to_owned(),
        "ROOMCAST_RATE_PER_SEC=1000".to_owned(),
        "ROOMCAST_RATE_BURST=1000".to_owned(),
        format!("ROOMCAST_PRESENCE_MAX_CONNECTIONS={PRESENCE_MAX_CONNECTIONS}"),
    ];
    let mut command = Lifeline::command(None, &bin);
    // `--ignore-changes`: the functions as built at start serve the whole run; an edit in the
    // workspace meanwhile (another checkout's work) must not rebuild and reload them mid-suite,
    // which stalls every invocation past the cases' timeouts.
    command.args([
        "lambda",
        "watch",
        "--ignore-changes",
        "-p",
        "roomcast-aws",
        "-A",
        "127.0.0.1",
    ]);
    // As Lambda, several instances of a function at once (the queue mapping's batches).
    command.args([
        "--concurrency",
        &QueueSettings::default().concurrency.to_string(),
    ]);
    command.args(["-P", &invoke_port.to_string()]);
    for var in &env {
        command.args(["--env-var", var]);
    }
    // The functions' logs go to the file `ROOMCAST_LAMBDA_LOG` names, when set.
    let log = |()| -> Stdio {
        std::env::var_os("ROOMCAST_LAMBDA_LOG")
            .and_then(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok()
            })
            .map_or_else(Stdio::null, Stdio::from)
    };
    // The suite's publishable key (`--env-var` would split its JSON at the commas): the
    // functions inherit the watcher's environment.
    command.env("ROOMCAST_EMBED_KEYS", EMBED_KEYS);
    command
        .current_dir(workspace())
        .stdout(log(()))
        .stderr(log(()));
    let mut watch =
        Lifeline::spawn(command).map_err(|e| format!("starting cargo lambda watch: {e}"))?;
    wait_listening(invoke_port, WATCH_START, || watch.exited())
        .map_err(|e| format!("cargo lambda watch: {e}"))?;
    let (events, deliver) = (
        Function::new(&lambda_endpoint, "events"),
        Function::new(&lambda_endpoint, "deliver"),
    );
    let queue_settings = QueueSettings::default();
    warm(&events, 1).map_err(|e| e.to_string())?;
    warm(&deliver, queue_settings.concurrency).map_err(|e| e.to_string())?;
    // The local server made the table before it listened; the events function reads its
    // stream, as deployed.
    enable_stream(&aws, &table)?;
    // The filters are the deployed ones: only messages and member events reach the function.
    let filter_patterns = stream_filter_patterns()?;
    let stream = StreamMapping::start(
        &aws,
        &table,
        events,
        StreamSettings {
            // As deployed: retried until the record ages out (`-1`).
            maximum_retry_attempts: None,
            on_failure_queue_url: Some(failures_queue),
            filter_patterns,
            ..StreamSettings::default()
        },
    )
    .map_err(|e| format!("stream mapping: {e}"))?;
    let deliveries = QueueMapping::start(&aws, &delivery_queue, deliver, queue_settings)
        .map_err(|e| format!("queue mapping: {e}"))?;
    Ok(Stack {
        _deliveries: deliveries,
        _stream: stream,
        local,
        _watch: watch,
        _dynamo: dynamo,
    })
}

/// The stack as a suite deployment: the local server's addresses, with webhooks delivered by
/// the functions (never restarted: a Lambda deployment has no server to kill).
struct LambdaStack(&'static Local);

#[async_trait::async_trait]
impl Deployment for LambdaStack {
    fn ws_url(&self) -> String {
        self.0.ws_url()
    }

    fn http_url(&self) -> Option<String> {
        self.0.http_url()
    }

    fn management_url(&self) -> Option<String> {
        self.0.management_url()
    }

    fn sign(&self, claims: &Claims) -> String {
        self.0.sign(claims)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            restart: false,
            webhooks: true,
            attachments: true,
            // The functions run with the suite's publishable key.
            embed: true,
            ..self.0.capabilities()
        }
    }
}

/// The least any one wait of a case allows here: an agent's desk change is answered after
/// about a dozen sequential DynamoDB calls, and moto serves one at a time to the suite's
/// concurrent cases; on a loaded 2-core machine that has passed the default 5 s.
const LAMBDA_WAIT: Duration = Duration::from_secs(15);

fn stack() -> Box<LambdaStack> {
    static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();
    roomcast_protocol_tests::client::raise_wait_timeout(LAMBDA_WAIT);
    match STACK.get_or_init(start_stack) {
        Ok(stack) => Box::new(LambdaStack(&stack.local)),
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
    reactions_are_counted_and_told_to_the_room,
    replies_show_the_original_as_it_is_now,
    typing_is_delivered_not_stored,
    read_cursor_moves_forward_only,
    presence_aggregates_devices_with_last_seen,
    big_room_announces_occupancy_not_presence,
    history_pages_before_after_limit,
    rejected_frames_get_stable_error_codes,
    tenants_are_isolated,
    resume_replays_exactly_the_missed_messages,
    rust_client_exchanges_messages_and_history,
    http_publish_needs_service_role,
    support_conversation_through_the_inbox,
    jwt_attacks_refused_401,
    non_members_cannot_act_in_a_room,
    nobody_changes_another_users_message,
    tenants_are_isolated_on_every_path,
    http_api_is_tenant_isolated,
    http_api_answers_cors,
    desk_round_robin_under_capacity_then_the_freed_place,
    desk_transfer_and_unassign_by_the_assigned_agent_only,
    desk_identified_visitors_are_listed_and_found,
    desk_rating_after_close_is_a_system_message,
    desk_block_closes_the_visitors_socket_4003,
    desk_blocked_visitor_refused_until_unblocked,
    desk_assigned_agent_moderates_the_conversation,
);

roomcast_protocol_tests::protocol_test!(desk_embed_visitor_token_from_an_allowed_origin_only, stack(),
    [HttpApi, Embed], d => roomcast_protocol_tests::cases::desk_embed_visitor_token_from_an_allowed_origin_only(d));

roomcast_protocol_tests::protocol_test!(attachments_reach_members_byte_identical, stack(),
    [HttpApi, Attachments], d => roomcast_protocol_tests::cases::attachments_reach_members_byte_identical(d));
roomcast_protocol_tests::protocol_test!(attachment_bad_inputs_are_refused, stack(),
    [HttpApi, Attachments], d => roomcast_protocol_tests::cases::attachment_bad_inputs_are_refused(d));
roomcast_protocol_tests::protocol_test!(deleted_message_takes_its_attachment, stack(),
    [HttpApi, Attachments], d => roomcast_protocol_tests::cases::deleted_message_takes_its_attachment(d));
roomcast_protocol_tests::protocol_test!(upload_slots_are_held_to_a_quota, stack(),
    [HttpApi, Attachments], d => roomcast_protocol_tests::cases::upload_slots_are_held_to_a_quota(d));
roomcast_protocol_tests::protocol_test!(events_are_delivered_signed_with_every_change, stack(),
    [HttpApi, Webhooks], d => roomcast_protocol_tests::cases::events_are_delivered_signed_with_every_change(d));
roomcast_protocol_tests::protocol_test!(endpoints_are_per_tenant_and_filtered, stack(),
    [HttpApi, Webhooks], d => roomcast_protocol_tests::cases::endpoints_are_per_tenant_and_filtered(d));
roomcast_protocol_tests::protocol_test!(failed_deliveries_are_retried_until_accepted, stack(),
    [HttpApi, Webhooks], d => roomcast_protocol_tests::cases::failed_deliveries_are_retried_until_accepted(d));
roomcast_protocol_tests::protocol_test!(refused_deliveries_are_dead_lettered_and_replayed, stack(),
    [HttpApi, Webhooks], d => roomcast_protocol_tests::cases::refused_deliveries_are_dead_lettered_and_replayed(d));
roomcast_protocol_tests::protocol_test!(secret_rotation_signs_with_both_secrets, stack(),
    [HttpApi, Webhooks], d => roomcast_protocol_tests::cases::secret_rotation_signs_with_both_secrets(d));
roomcast_protocol_tests::protocol_test!(slow_endpoint_delays_nobody, stack(),
    [HttpApi, Webhooks], d => roomcast_protocol_tests::cases::slow_endpoint_delays_nobody(d));
