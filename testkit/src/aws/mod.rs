//! AWS test gear (feature `aws`): a real DynamoDB implementation for tests ([`moto`]), a fault
//! proxy in front of it ([`fault_proxy`]), and the capacity meter of the cost tests and the
//! cost model ([`capacity`]); with feature `aws-lambda`, the Lambda functions' test harness
//! ([`lambda`]).

pub mod capacity;
pub mod fault_proxy;
#[cfg(feature = "aws-lambda")]
pub mod lambda;
pub mod moto;
