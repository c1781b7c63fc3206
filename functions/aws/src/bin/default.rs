//! Lambda function for `$default`: join, leave, read, presence, history, edit, delete, ping and unknown actions.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_websocket_function("$default").await
}
