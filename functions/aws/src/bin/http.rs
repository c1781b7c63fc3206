//! Lambda function for the HTTP API: history, server-side publish, health.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    roomcast_aws::lambda::run_http_function().await
}
