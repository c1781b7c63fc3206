//! Lambda function for the `typing` route: fans out typing indicators (never stored).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_websocket_function("typing").await
}
