# Alarms: any function error or throttle, fan-out failures the functions report (their EMF
# metrics, namespace `roomcast`, dimension Route), API Gateway integration and execution errors
# of the WebSocket stage, 5xx answers of the HTTP API, DynamoDB throttling; integration events:
# the events function's stream lag, messages in deliveries-dlq or events-failures, deliveries
# waiting too long for the deliver function.

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.functions

  alarm_name          = "${var.name}-${each.key}-errors"
  alarm_description   = "The ${each.key} function failed invocations."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.function[each.key].function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each = local.functions

  alarm_name          = "${var.name}-${each.key}-throttles"
  alarm_description   = "The ${each.key} function was throttled (account or reserved concurrency reached)."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.function[each.key].function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "fanout_failures" {
  for_each = local.websocket_functions

  alarm_name          = "${var.name}-${each.key}-fanout-failures"
  alarm_description   = "Frames of the ${each.value.route} route could not be delivered (Management API errors other than 410, or 429 after retries)."
  namespace           = "roomcast"
  metric_name         = "FanoutFailed"
  dimensions          = { Route = each.value.route }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "table_throttles" {
  alarm_name          = "${var.name}-table-throttles"
  alarm_description   = "DynamoDB throttled requests to the chat table."
  namespace           = "AWS/DynamoDB"
  metric_name         = "ThrottledRequests"
  dimensions          = { TableName = aws_dynamodb_table.chat.name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "websocket_integration_errors" {
  alarm_name          = "${var.name}-websocket-integration-errors"
  alarm_description   = "The WebSocket API could not invoke a function or got an error from it (IntegrationError)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "IntegrationError"
  dimensions          = { ApiId = aws_apigatewayv2_api.websocket.id, Stage = aws_apigatewayv2_stage.websocket.name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "websocket_execution_errors" {
  alarm_name          = "${var.name}-websocket-execution-errors"
  alarm_description   = "The WebSocket API failed requests itself (ExecutionError); the execution log group says why."
  namespace           = "AWS/ApiGateway"
  metric_name         = "ExecutionError"
  dimensions          = { ApiId = aws_apigatewayv2_api.websocket.id, Stage = aws_apigatewayv2_stage.websocket.name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "http_5xx" {
  alarm_name          = "${var.name}-http-5xx"
  alarm_description   = "The HTTP API answered 5xx (a function error, timeout or throttle)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = aws_apigatewayv2_api.http.id, Stage = aws_apigatewayv2_stage.http.name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "events_iterator_age" {
  alarm_name          = "${var.name}-events-iterator-age"
  alarm_description   = "The events function is more than a minute behind the table's stream (events are late; records older than a day are dropped to events-failures)."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = aws_lambda_function.function["events"].function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = 60000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "events_failures_depth" {
  alarm_name          = "${var.name}-events-failures-depth"
  alarm_description   = "Stream records the events function could not process went to the events-failures queue: their events were not delivered (the messages name the shard and sequence numbers)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.events_failures.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "deliveries_dlq_depth" {
  alarm_name          = "${var.name}-deliveries-dlq-depth"
  alarm_description   = "Messages the deliver function failed on 50 times went to deliveries-dlq (poison messages; refused and expired deliveries are dead-lettered in the table instead)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.deliveries_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}

# Deliveries waiting for the deliver function. A dead endpoint's deliveries stay in the queue
# for the whole retry window (24 h) but do not hold this up: SQS leaves a message received three
# times or more out of ApproximateAgeOfOldestMessage (its CloudWatch metrics page), so a retried
# delivery stops counting after its third attempt (15 s in with the default backoff). An hour
# then means a backlog: deliver throttled, failing, or held back by deliver_max_concurrency, or
# an endpoint's Retry-After putting a delivery off by over an hour in its first attempts.
resource "aws_cloudwatch_metric_alarm" "deliveries_age" {
  alarm_name          = "${var.name}-deliveries-age"
  alarm_description   = "The oldest delivery not yet retried twice has waited over an hour: the deliver function is not keeping up (throttled, failing, or deliver_max_concurrency too low)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.deliveries.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = 3600
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
}
