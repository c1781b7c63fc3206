//! Lambda function for `$connect`: verifies the token and registers the connection.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_websocket_function("$connect").await
}
