# Integration events (docs/events.md, "AWS"): the table's stream → the events function → one SQS
# message per event and endpoint in `deliveries` → the deliver function, which POSTs it. A
# delivery that fails retryably stays in the queue: deliver sets its visibility to the backoff
# (at most 12 h, SQS's limit) and reports it failed, so SQS hands it out again then; a success is
# deleted. Dead letters (refused, or the retry window passed) are written to the table, where
# the endpoints API lists and replays them; `deliveries-dlq` catches only messages deliver
# cannot handle at all, and `events-failures` the stream batches events could not process.

# maxReceiveCount 50: a delivery is retried for up to 24 h with exponential backoff
# (var.webhook_retry_for_secs; docs/events.md: about 22 attempts, a Retry-After or a throttled
# batch adding receives), so 50 receives are reached only by a message deliver fails on every
# time (a poison message), never by a slow endpoint.
resource "aws_sqs_queue" "deliveries" {
  name                      = "${var.name}-deliveries"
  message_retention_seconds = 345600 # 4 days; the retry window is at most 3 (variables.tf)
  # Six times deliver's timeout (30 s, main.tf), as AWS recommends for a Lambda function's
  # source queue. A retry's delay is set per message (ChangeMessageVisibility), not here.
  visibility_timeout_seconds        = 180
  kms_master_key_id                 = aws_kms_key.roomcast.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.deliveries_dlq.arn
    maxReceiveCount     = 50
  })
}

resource "aws_sqs_queue" "deliveries_dlq" {
  name                              = "${var.name}-deliveries-dlq"
  message_retention_seconds         = 1209600 # 14 days, the most SQS keeps
  kms_master_key_id                 = aws_kms_key.roomcast.arn
  kms_data_key_reuse_period_seconds = 300
}

# Only the deliveries queue may use deliveries-dlq as its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "deliveries_dlq" {
  queue_url = aws_sqs_queue.deliveries_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.deliveries.arn]
  })
}

resource "aws_sqs_queue" "events_failures" {
  name                              = "${var.name}-events-failures"
  message_retention_seconds         = 1209600 # 14 days, the most SQS keeps
  kms_master_key_id                 = aws_kms_key.roomcast.arn
  kms_data_key_reuse_period_seconds = 300
}

# Every queue refuses requests that are not over TLS.
data "aws_iam_policy_document" "queue_tls" {
  for_each = {
    deliveries      = aws_sqs_queue.deliveries.arn
    deliveries_dlq  = aws_sqs_queue.deliveries_dlq.arn
    events_failures = aws_sqs_queue.events_failures.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "tls" {
  for_each = {
    deliveries      = aws_sqs_queue.deliveries.id
    deliveries_dlq  = aws_sqs_queue.deliveries_dlq.id
    events_failures = aws_sqs_queue.events_failures.id
  }

  queue_url = each.value
  policy    = data.aws_iam_policy_document.queue_tls[each.key].json
}

# The stream → events. From the oldest record kept (24 h), 100 records or 1 s per batch; the
# function reports the records it could not process (ReportBatchItemFailures), a failing batch
# is split in two to isolate the bad record, a record is retried 10 times or for a day, then its
# shard, sequence numbers and the batch's size go to events-failures and the stream moves on.
# Only messages (sort key M# in a room partition R#) and member events (EV#) become events:
# the filters drop every other record (connections, subscriptions, heads, …) before the
# function, so those are not billed (STREAM_FILTER_PATTERNS in functions/aws/src/events.rs;
# the deploy test holds these to it).
resource "aws_lambda_event_source_mapping" "events" {
  function_name                      = aws_lambda_function.function["events"].arn
  event_source_arn                   = aws_dynamodb_table.chat.stream_arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = 100
  maximum_batching_window_in_seconds = 1
  bisect_batch_on_function_error     = true
  function_response_types            = ["ReportBatchItemFailures"]
  maximum_retry_attempts             = -1
  maximum_record_age_in_seconds      = 86400

  filter_criteria {
    filter {
      pattern = jsonencode({ dynamodb = { Keys = { pk = { S = [{ prefix = "R#" }] }, sk = { S = [{ prefix = "M#" }] } } } })
    }
    filter {
      pattern = jsonencode({ dynamodb = { Keys = { pk = { S = [{ prefix = "EV#" }] } } } })
    }
  }

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.events_failures.arn
    }
  }
}

# deliveries → deliver: 10 messages a batch, at once, the failed ones reported (the others are
# deleted); at most var.deliver_max_concurrency functions run, so a burst of events cannot take
# the account's concurrency from the chat functions.
resource "aws_lambda_event_source_mapping" "deliver" {
  function_name                      = aws_lambda_function.function["deliver"].arn
  event_source_arn                   = aws_sqs_queue.deliveries.arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 0
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.deliver_max_concurrency
  }
}
