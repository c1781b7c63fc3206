//! Lambda function on the delivery queue: signed webhook POSTs, retries and dead letters.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_deliver_function().await
}
