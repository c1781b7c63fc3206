//! AWS test gear (feature `aws`): a real DynamoDB implementation for tests ([`moto`]), a fault
//! proxy in front of it ([`fault_proxy`]), and the capacity meter of the cost tests and the
//! cost model ([`capacity`]); with feature `aws-lambda`, the Lambda functions' test harness
//! ([`lambda`]) and Lambda's Invoke API for the `fanout` function ([`invoke`]); with feature `aws-mappings`, the Lambda event source mappings (DynamoDB stream
//! and SQS queue to a function under `cargo lambda watch`) and SQS queue helpers ([`mappings`]).

pub mod capacity;
pub mod fault_proxy;
#[cfg(feature = "aws-lambda")]
pub mod invoke;
#[cfg(feature = "aws-lambda")]
pub mod lambda;
#[cfg(feature = "aws-mappings")]
pub mod mappings;
pub mod moto;
