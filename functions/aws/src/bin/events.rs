//! Lambda function on the table's stream: the events of stored changes to the delivery queue.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_events_function().await
}
