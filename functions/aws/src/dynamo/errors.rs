//! SDK errors → [`StoreError`]: what is retryable, what a failed condition looks like, and the
//! reasons of a cancelled transaction.

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::error::TransactionCanceledException;
use roomcast_core::store::StoreError;

/// The service's error code (`ConditionalCheckFailedException`, …), if the service answered.
pub(super) fn error_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// Whether a conditional write failed its condition (nothing was written).
pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    error_code(e) == Some("ConditionalCheckFailedException")
}

/// Throttling, 5xx, timeouts and unreachable endpoints are `Unavailable` (retryable; the SDK
/// has already retried them). A write that timed out may still have landed: retrying is safe
/// because every write here is idempotent or conditional. Anything else is `Other`.
pub(super) fn sdk_error<E>(
    operation: &str,
    e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const RETRYABLE: [&str; 6] = [
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    ];
    let server_side = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let retryable = server_side
        || matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
        || error_code(&e).is_some_and(|code| RETRYABLE.contains(&code));
    let message = format!("DynamoDB {operation}: {}", DisplayErrorContext(&e));
    if retryable {
        tracing::warn!(%message, "DynamoDB unavailable");
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

/// A request the SDK refused to build (a missing required field: a bug here).
pub(super) fn build_error(e: BuildError) -> StoreError {
    StoreError::Other(format!("invalid DynamoDB request: {e}"))
}

/// The cancellation reason codes, in the order of the transaction's items. Taken from the
/// structured reasons; when a response carries none, from the message, which lists them as
/// `[ConditionalCheckFailed, None, None]`.
pub(super) fn cancellation_codes(e: &TransactionCanceledException) -> Vec<String> {
    let structured: Vec<String> = e
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("None").to_owned())
        .collect();
    if !structured.is_empty() {
        return structured;
    }
    codes_from_message(e.message().unwrap_or_default())
}

/// The codes listed at the end of a cancellation message.
fn codes_from_message(message: &str) -> Vec<String> {
    let Some((_, listed)) = message.rsplit_once('[') else {
        return Vec::new();
    };
    listed
        .trim_end_matches(']')
        .split(',')
        .map(|code| code.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_codes_from_the_message() {
        assert_eq!(
            codes_from_message(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [None, None, ConditionalCheckFailed]"
            ),
            vec!["None", "None", "ConditionalCheckFailed"]
        );
        assert!(codes_from_message("no list").is_empty());
    }
}
