//! Lambda function `fanout`: posts one slice of a big room's broadcast, handed off by the
//! `message` and `http` functions with an asynchronous Invoke.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_aws::lambda::run_fanout_function().await
}
