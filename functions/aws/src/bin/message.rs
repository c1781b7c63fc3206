//! Lambda function for the `message` route: stores a message, acks it, fans it out.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_websocket_function("message").await
}
