//! The Lambda event source mappings (`roomcast_testkit::aws::mappings`) against real moto, with
//! a small HTTP server on loopback standing in for `cargo lambda watch`'s Invoke API: the events
//! they send deserialize as `aws_lambda_events` types, and they follow Lambda's documented
//! handling of partial batch failures, function errors (bisection, retries, the on-failure
//! destination), event filtering for streams, and, for SQS, visibility timeouts and redrive to
//! a dead-letter queue.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use roomcast_testkit::aws::mappings::{
    AwsEndpoint, Function, QueueMapping, QueueSettings, StreamMapping, StreamSettings,
    create_queue, create_queue_with_dlq, drain_queue,
};
use roomcast_testkit::aws::moto::{Dynamo, dynamo};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(15);

/// One moto for the whole file (every test uses its own table or queue).
fn aws() -> AwsEndpoint {
    static MOTO: OnceLock<Dynamo> = OnceLock::new();
    AwsEndpoint::new(MOTO.get_or_init(dynamo).endpoint.clone())
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// What the stand-in function answers.
struct Reply {
    status: u16,
    function_error: bool,
    body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            function_error: false,
            body,
        }
    }

    /// What cargo lambda answers when the function returns an error.
    fn error_status() -> Self {
        Self {
            status: 500,
            function_error: false,
            body: json!({"errorType": "Poison", "errorMessage": "poisoned batch"}),
        }
    }

    /// What the Lambda service answers when the function returns an error.
    fn function_error() -> Self {
        Self {
            status: 200,
            function_error: true,
            body: json!({"errorType": "Poison", "errorMessage": "poisoned record"}),
        }
    }
}

type Handler = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// The stand-in for the Invoke API: records every event, answers with the handler.
struct FakeFunction {
    function: Function,
    events: Arc<Mutex<Vec<Value>>>,
}

impl FakeFunction {
    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

async fn fake_function<F, Fut>(handler: F) -> FakeFunction
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let handler: Handler = Arc::new(move |event| Box::pin(handler(event)));
    let events = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let recorded = events.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (handler, recorded) = (handler.clone(), recorded.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (handler, recorded) = (handler.clone(), recorded.clone());
                    async move {
                        assert_eq!(
                            req.uri().path(),
                            "/2015-03-31/functions/consumer/invocations"
                        );
                        let body = req.into_body().collect().await?.to_bytes();
                        let event: Value = serde_json::from_slice(&body).unwrap();
                        recorded.lock().unwrap().push(event.clone());
                        let reply = handler(event).await;
                        let mut response = Response::builder().status(reply.status);
                        if reply.function_error {
                            response = response.header("X-Amz-Function-Error", "Unhandled");
                        }
                        Ok::<_, hyper::Error>(
                            response
                                .body(Full::new(Bytes::from(reply.body.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    FakeFunction {
        function: Function::new(url, "consumer").with_timeout(Duration::from_secs(10)),
        events,
    }
}

// ---- DynamoDB streams ----

async fn table_with_stream(aws: &AwsEndpoint, name: &str) {
    aws.dynamodb()
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn put(aws: &AwsEndpoint, table: &str, pk: &str, v: u32) {
    aws.dynamodb()
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("v", AttributeValue::N(v.to_string()))
        .send()
        .await
        .unwrap();
}

/// The partition keys of an event's records.
fn keys(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["dynamodb"]["Keys"]["pk"]["S"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn records(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .flat_map(|e| e["Records"].as_array().unwrap().clone())
        .collect()
}

fn sequence_number(record: &Value) -> String {
    record["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A result failing the records of `event` whose key is in `failing`.
fn failures_for(event: &Value, failing: &[&str]) -> Value {
    let failures: Vec<Value> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| failing.contains(&r["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap()))
        .map(|r| json!({"itemIdentifier": sequence_number(r)}))
        .collect();
    json!({ "batchItemFailures": failures })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_arrive_in_order_with_their_images() {
    let aws = aws();
    let table = unique("stream-order");
    table_with_stream(&aws, &table).await;
    put(&aws, &table, "a", 1).await;
    put(&aws, &table, "b", 1).await;
    aws.dynamodb()
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("a".into()))
        .update_expression("SET v = :v")
        .expression_attribute_values(":v", AttributeValue::N("2".into()))
        .send()
        .await
        .unwrap();
    aws.dynamodb()
        .delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("b".into()))
        .send()
        .await
        .unwrap();

    let function = fake_function(|_| async { Reply::ok(json!({"batchItemFailures": []})) }).await;
    let mapping = StreamMapping::start(
        &aws,
        &table,
        function.function.clone(),
        StreamSettings::default(),
    )
    .unwrap();
    // A change made while the mapping runs arrives too.
    mapping
        .wait_until(WITHIN, |c| c.records_succeeded >= 4)
        .await
        .unwrap();
    put(&aws, &table, "c", 1).await;
    let counters = mapping
        .wait_until(WITHIN, |c| c.records_succeeded >= 5)
        .await
        .unwrap();
    assert_eq!(counters.records_delivered, 5);
    assert_eq!(counters.invocation_errors, 0);

    let events = function.events();
    for event in &events {
        let typed: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(event.clone()).unwrap();
        for record in typed.records {
            assert_eq!(record.event_version.as_deref(), Some("1.1"));
            assert_eq!(record.event_source.as_deref(), Some("aws:dynamodb"));
            assert_eq!(
                record.event_source_arn.as_deref(),
                Some(&*mapping.stream_arn)
            );
            assert_eq!(record.aws_region, "us-east-1");
            assert!(!record.event_id.is_empty());
            assert_eq!(
                record.change.stream_view_type,
                Some(aws_lambda_events::event::dynamodb::StreamViewType::NewAndOldImages)
            );
            assert!(record.change.approximate_creation_date_time.timestamp() > 1_600_000_000);
            assert!(record.change.size_bytes > 0);
        }
    }
    let records = records(&events);
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["INSERT", "INSERT", "MODIFY", "REMOVE", "INSERT"]);
    let keys: Vec<&str> = records
        .iter()
        .map(|r| r["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b", "a", "b", "c"]);
    let image = |r: &Value, which: &str| r["dynamodb"].get(which).cloned();
    assert_eq!(
        image(&records[0], "NewImage"),
        Some(json!({"pk": {"S": "a"}, "v": {"N": "1"}}))
    );
    assert_eq!(image(&records[0], "OldImage"), None);
    assert_eq!(
        image(&records[2], "OldImage"),
        Some(json!({"pk": {"S": "a"}, "v": {"N": "1"}}))
    );
    assert_eq!(
        image(&records[2], "NewImage"),
        Some(json!({"pk": {"S": "a"}, "v": {"N": "2"}}))
    );
    assert_eq!(
        image(&records[3], "OldImage"),
        Some(json!({"pk": {"S": "b"}, "v": {"N": "1"}}))
    );
    assert_eq!(image(&records[3], "NewImage"), None);
    let sequence: Vec<u128> = records
        .iter()
        .map(|r| sequence_number(r).parse().unwrap())
        .collect();
    assert!(sequence.windows(2).all(|w| w[0] < w[1]), "{sequence:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_failure_retries_from_the_lowest_failed_record() {
    let aws = aws();
    let table = unique("stream-partial");
    table_with_stream(&aws, &table).await;
    for k in ["p0", "p1", "p2", "p3", "p4"] {
        put(&aws, &table, k, 1).await;
    }
    let failed_once = Arc::new(Mutex::new(false));
    let function = fake_function(move |event| {
        let failed_once = failed_once.clone();
        async move {
            let mut failed = failed_once.lock().unwrap();
            if *failed {
                Reply::ok(json!({}))
            } else {
                *failed = true;
                // Two failures: Lambda retries from the lowest.
                Reply::ok(failures_for(&event, &["p4", "p2"]))
            }
        }
    })
    .await;
    let mapping = StreamMapping::start(
        &aws,
        &table,
        function.function.clone(),
        StreamSettings::default(),
    )
    .unwrap();
    let counters = mapping
        .wait_until(WITHIN, |c| c.records_succeeded >= 5)
        .await
        .unwrap();
    let batches: Vec<Vec<String>> = function.events().iter().map(keys).collect();
    assert_eq!(
        batches,
        [vec!["p0", "p1", "p2", "p3", "p4"], vec!["p2", "p3", "p4"]]
    );
    assert_eq!(counters.batches_invoked, 2);
    assert_eq!(counters.records_reported_failed, 2);
    assert_eq!(counters.invocation_errors, 0);
    assert_eq!(counters.records_discarded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_bisects_and_exhausted_retries_go_to_the_destination() {
    let aws = aws();
    let table = unique("stream-bisect");
    table_with_stream(&aws, &table).await;
    let sqs = aws.sqs();
    let destination = create_queue(&sqs, &unique("stream-bisect-failures"), 30, None)
        .await
        .unwrap();
    for k in ["e0", "e1", "e2", "e3"] {
        put(&aws, &table, k, 1).await;
    }
    // e2 poisons every batch it is in: a 500 for a batch of several (cargo lambda's answer),
    // `X-Amz-Function-Error` for e2 alone (the Lambda service's).
    let function = fake_function(|event| async move {
        let keys = keys(&event);
        if !keys.iter().any(|k| k == "e2") {
            Reply::ok(Value::Null)
        } else if keys.len() > 1 {
            Reply::error_status()
        } else {
            Reply::function_error()
        }
    })
    .await;
    let settings = StreamSettings {
        maximum_retry_attempts: Some(1),
        on_failure_queue_url: Some(destination.url.clone()),
        ..StreamSettings::default()
    };
    let mapping = StreamMapping::start(&aws, &table, function.function.clone(), settings).unwrap();
    let counters = mapping
        .wait_until(WITHIN, |c| c.records_succeeded >= 3 && c.failures_sent >= 1)
        .await
        .unwrap();
    let batches: Vec<Vec<String>> = function.events().iter().map(keys).collect();
    assert_eq!(
        batches,
        [
            vec!["e0", "e1", "e2", "e3"],
            vec!["e0", "e1"],
            vec!["e2", "e3"],
            // Alone, e2 has its retries: the first attempt and one retry.
            vec!["e2"],
            vec!["e2"],
            vec!["e3"],
        ]
    );
    assert_eq!(counters.batches_bisected, 2);
    assert_eq!(counters.invocation_errors, 4);
    assert_eq!(counters.records_discarded, 1);
    assert_eq!(counters.failures_sent, 1);

    let e2 = records(&function.events())
        .into_iter()
        .find(|r| r["dynamodb"]["Keys"]["pk"]["S"] == "e2")
        .unwrap();
    let failures = drain_queue(&sqs, &destination.url, 10).await.unwrap();
    assert_eq!(failures.len(), 1);
    let failure: Value = serde_json::from_str(failures[0].body().unwrap()).unwrap();
    let info = &failure["DDBStreamBatchInfo"];
    assert_eq!(info["startSequenceNumber"], json!(sequence_number(&e2)));
    assert_eq!(info["endSequenceNumber"], json!(sequence_number(&e2)));
    assert_eq!(info["batchSize"], json!(1));
    assert_eq!(info["streamArn"], json!(mapping.stream_arn));
    assert!(info["shardId"].as_str().unwrap().starts_with("shardId-"));
    assert_eq!(
        failure["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    // [e2, e3], then e2 twice.
    assert_eq!(
        failure["requestContext"]["approximateInvokeCount"],
        json!(3)
    );
    assert_eq!(failure["responseContext"]["functionError"], "Unhandled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bisection_a_failing_batch_is_given_up_whole() {
    let aws = aws();
    let table = unique("stream-whole");
    table_with_stream(&aws, &table).await;
    let sqs = aws.sqs();
    let destination = create_queue(&sqs, &unique("stream-whole-failures"), 30, None)
        .await
        .unwrap();
    put(&aws, &table, "x0", 1).await;
    put(&aws, &table, "x1", 1).await;
    let function = fake_function(|_| async { Reply::error_status() }).await;
    let settings = StreamSettings {
        bisect_batch_on_function_error: false,
        maximum_retry_attempts: Some(0),
        on_failure_queue_url: Some(destination.url.clone()),
        ..StreamSettings::default()
    };
    let mapping = StreamMapping::start(&aws, &table, function.function.clone(), settings).unwrap();
    let counters = mapping
        .wait_until(WITHIN, |c| c.failures_sent >= 1)
        .await
        .unwrap();
    assert_eq!(counters.batches_invoked, 1);
    assert_eq!(counters.records_discarded, 2);
    let failures = drain_queue(&sqs, &destination.url, 10).await.unwrap();
    assert_eq!(failures.len(), 1);
    let failure: Value = serde_json::from_str(failures[0].body().unwrap()).unwrap();
    assert_eq!(failure["DDBStreamBatchInfo"]["batchSize"], json!(2));
    assert_eq!(failure["responseContext"]["statusCode"], json!(500));
}

/// A table with the deployments' key schema (`pk`, `sk`) and a stream.
async fn table_with_sort_key_and_stream(aws: &AwsEndpoint, name: &str) {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    aws.dynamodb()
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn put_keyed(aws: &AwsEndpoint, table: &str, pk: &str, sk: &str, v: u32) {
    aws.dynamodb()
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::S(sk.into()))
        .item("v", AttributeValue::N(v.to_string()))
        .send()
        .await
        .unwrap();
}

/// roomcast's patterns (`roomcast_aws::events::STREAM_FILTER_PATTERNS`): messages, member events.
fn roomcast_filters() -> Vec<Value> {
    vec![
        json!({"dynamodb": {"Keys": {
            "pk": {"S": [{"prefix": "R#"}]},
            "sk": {"S": [{"prefix": "M#"}]},
        }}}),
        json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "EV#"}]}}}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_send_only_the_matching_records_and_move_past_the_others() {
    let aws = aws();
    let table = unique("stream-filters");
    table_with_sort_key_and_stream(&aws, &table).await;
    let (room, message) = ("R#t/lobby", |seq: u32| format!("M#{seq:020}"));
    put_keyed(&aws, &table, room, &message(1), 1).await; // passes
    put_keyed(&aws, &table, "C#c1", "C", 1).await;
    put_keyed(&aws, &table, "EV#t/lobby", "ev-1", 1).await; // passes
    put_keyed(&aws, &table, room, "S#c1", 1).await;
    put_keyed(&aws, &table, room, "ST#HEAD", 1).await;
    // A tenant named `M`: its endpoint directory entries start `M#` as messages do.
    put_keyed(&aws, &table, "EPS", "M#e1", 1).await;
    put_keyed(&aws, &table, room, &message(1), 2).await; // passes (an edit)
    put_keyed(&aws, &table, room, &message(2), 1).await; // passes
    aws.dynamodb()
        .delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(room.into()))
        .key("sk", AttributeValue::S(message(2)))
        .send()
        .await
        .unwrap(); // passes (a deletion)
    put_keyed(&aws, &table, room, "ST#HEAD", 2).await; // the last record read is dropped

    let function = fake_function(|_| async { Reply::ok(json!({})) }).await;
    let settings = StreamSettings {
        filter_patterns: roomcast_filters(),
        ..StreamSettings::default()
    };
    let mapping = StreamMapping::start(&aws, &table, function.function.clone(), settings).unwrap();
    let counters = mapping
        .wait_until(WITHIN, |c| c.records_succeeded + c.records_filtered >= 10)
        .await
        .unwrap();
    assert_eq!(counters.records_succeeded, 5);
    assert_eq!(counters.records_delivered, 5);
    assert_eq!(counters.records_filtered, 5);
    assert_eq!(counters.invocation_errors, 0);
    let sent: Vec<(String, String, String)> = records(&function.events())
        .iter()
        .map(|r| {
            let key = |k: &str| r["dynamodb"]["Keys"][k]["S"].as_str().unwrap().to_owned();
            (
                r["eventName"].as_str().unwrap().to_owned(),
                key("pk"),
                key("sk"),
            )
        })
        .collect();
    let want = |name: &str, pk: &str, sk: &str| (name.to_owned(), pk.to_owned(), sk.to_owned());
    assert_eq!(
        sent,
        [
            want("INSERT", room, &message(1)),
            want("INSERT", "EV#t/lobby", "ev-1"),
            want("MODIFY", room, &message(1)),
            want("INSERT", room, &message(2)),
            want("REMOVE", room, &message(2)),
        ]
    );

    // The stream goes on past the dropped records, none of them sent later.
    put_keyed(&aws, &table, "C#c1", "C", 2).await;
    put_keyed(&aws, &table, room, &message(3), 1).await;
    let counters = mapping
        .wait_until(WITHIN, |c| {
            c.records_succeeded >= 6 && c.records_filtered >= 6
        })
        .await
        .unwrap();
    assert_eq!(
        (counters.records_delivered, counters.records_filtered),
        (6, 6)
    );
    let last = records(&function.events()).pop().unwrap();
    assert_eq!(last["dynamodb"]["Keys"]["sk"]["S"], json!(message(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_pattern_outside_the_emulated_rules_fails_the_start() {
    let aws = aws();
    let table = unique("stream-bad-filter");
    table_with_sort_key_and_stream(&aws, &table).await;
    let function = fake_function(|_| async { Reply::ok(json!({})) }).await;
    for (pattern, says) in [
        (
            json!({"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "#"}]}}}}),
            "not emulated",
        ),
        (json!({"eventName": ["INSERT"]}), "`dynamodb` key"),
    ] {
        let settings = StreamSettings {
            filter_patterns: vec![roomcast_filters()[0].clone(), pattern.clone()],
            ..StreamSettings::default()
        };
        let error = StreamMapping::start(&aws, &table, function.function.clone(), settings)
            .err()
            .unwrap_or_else(|| panic!("{pattern} accepted"))
            .to_string();
        assert!(
            error.contains("filter pattern 2") && error.contains(says),
            "{pattern}: {error}"
        );
    }
    assert!(function.events().is_empty());
}

// ---- SQS ----

async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: &str) {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_attributes(
            "kind",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("test")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn bodies(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect()
}

/// A result failing the messages of `event` whose body is in `failing`.
fn message_failures(event: &Value, failing: &[&str]) -> Value {
    let failures: Vec<Value> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| failing.contains(&r["body"].as_str().unwrap()))
        .map(|r| json!({"itemIdentifier": r["messageId"]}))
        .collect();
    json!({ "batchItemFailures": failures })
}

async fn queue_counts(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> (u64, u64) {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: QueueAttributeName| -> u64 {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .map_or(0, |v| v.parse().unwrap())
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_deletes_successes_and_listed_failures_come_back_until_the_dead_letter_queue() {
    let aws = aws();
    let sqs = aws.sqs();
    // Visible again 1 s after a receive; the second receive is the last before the DLQ.
    let (queue, dlq) = create_queue_with_dlq(&sqs, &unique("queue-partial"), 1, 2)
        .await
        .unwrap();
    for body in ["m0", "m1", "m2", "m3"] {
        send(&sqs, &queue.url, body).await;
    }
    let function =
        fake_function(|event| async move { Reply::ok(message_failures(&event, &["m1"])) }).await;
    let mapping = QueueMapping::start(
        &aws,
        &queue.url,
        function.function.clone(),
        QueueSettings::default(),
    )
    .unwrap();

    // m1 fails twice (two receives), then SQS moves it to the dead-letter queue.
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + WITHIN;
    while dead.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dead = drain_queue(&sqs, &dlq.url, 10).await.unwrap();
    }
    assert_eq!(dead.len(), 1, "{:?}", mapping.counters());
    assert_eq!(dead[0].body(), Some("m1"));
    assert_eq!(queue_counts(&sqs, &queue.url).await, (0, 0));

    let counters = mapping.counters();
    assert_eq!(counters.batches_invoked, 2);
    assert_eq!(counters.records_succeeded, 3);
    assert_eq!(counters.records_reported_failed, 2);
    assert_eq!(counters.invocation_errors, 0);
    let events = function.events();
    let batches: Vec<Vec<String>> = events.iter().map(bodies).collect();
    assert_eq!(batches, [vec!["m0", "m1", "m2", "m3"], vec!["m1"]]);

    for (event, receives) in events.iter().zip(["1", "2"]) {
        let typed: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(event.clone()).unwrap();
        for message in &typed.records {
            assert_eq!(message.event_source.as_deref(), Some("aws:sqs"));
            assert_eq!(
                message.event_source_arn.as_deref(),
                Some(&*mapping.queue_arn)
            );
            assert_eq!(message.aws_region.as_deref(), Some("us-east-1"));
            assert!(message.message_id.is_some() && message.receipt_handle.is_some());
            let md5 = message.md5_of_body.as_deref().unwrap();
            assert!(
                md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()),
                "{md5}"
            );
            for name in [
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
            ] {
                assert!(message.attributes.contains_key(name), "{name}");
            }
            assert_eq!(message.attributes["ApproximateReceiveCount"], receives);
            let kind = &message.message_attributes["kind"];
            assert_eq!(kind.string_value.as_deref(), Some("test"));
            assert_eq!(kind.data_type.as_deref(), Some("String"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_leaves_the_batch_to_its_visibility_timeout() {
    let aws = aws();
    let sqs = aws.sqs();
    // A long visibility timeout: only n0, whose visibility the function changes, comes back.
    let queue = create_queue(&sqs, &unique("queue-error"), 30, None)
        .await
        .unwrap();
    send(&sqs, &queue.url, "n0").await;
    send(&sqs, &queue.url, "n1").await;
    let (client, url) = (sqs.clone(), queue.url.clone());
    let calls = Arc::new(Mutex::new(0));
    let function = fake_function(move |event| {
        let (client, url, calls) = (client.clone(), url.clone(), calls.clone());
        async move {
            let first = {
                let mut calls = calls.lock().unwrap();
                *calls += 1;
                *calls == 1
            };
            if !first {
                return Reply::ok(json!({"batchItemFailures": []}));
            }
            // As a function may: make n0 visible again at once, then fail.
            for record in event["Records"].as_array().unwrap() {
                if record["body"] == "n0" {
                    client
                        .change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(record["receiptHandle"].as_str().unwrap())
                        .visibility_timeout(0)
                        .send()
                        .await
                        .unwrap();
                }
            }
            Reply::error_status()
        }
    })
    .await;
    let mapping = QueueMapping::start(
        &aws,
        &queue.url,
        function.function.clone(),
        QueueSettings::default(),
    )
    .unwrap();
    let counters = mapping
        .wait_until(Duration::from_secs(5), |c| c.records_succeeded >= 1)
        .await
        .unwrap();
    assert_eq!(counters.invocation_errors, 1);
    let events = function.events();
    let batches: Vec<Vec<String>> = events.iter().map(bodies).collect();
    assert_eq!(batches, [vec!["n0", "n1"], vec!["n0"]]);
    assert_eq!(
        events[1]["Records"][0]["attributes"]["ApproximateReceiveCount"],
        "2"
    );
    // n1 was not deleted: it waits out its 30 s.
    assert_eq!(queue_counts(&sqs, &queue.url).await, (0, 1));
}
