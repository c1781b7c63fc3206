//! Lambda function for `$disconnect`: forgets the connection, announces offline presence.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_websocket_function("$disconnect").await
}
