# Nine functions, one role each, each role granted only what its function's code (and, for
# events and deliver, its event source mapping: events.tf) calls.

resource "aws_cloudwatch_log_group" "function" {
  for_each = local.functions

  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.roomcast.arn
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [data.aws_service_principal.lambda.name]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "ChatTable"
    actions   = [for action in each.value.dynamodb_actions : "dynamodb:${action}"]
    resources = [aws_dynamodb_table.chat.arn]
  }

  dynamic "statement" {
    for_each = each.value.manages_websocket ? [1] : []
    content {
      sid       = "ManageConnections"
      actions   = ["execute-api:ManageConnections"]
      resources = ["${aws_apigatewayv2_api.websocket.execution_arn}/${var.stage_name}/*/@connections/*"]
    }
  }

  statement {
    sid       = "JwtKey"
    actions   = ["ssm:GetParameter"]
    resources = [data.aws_ssm_parameter.jwt_key.arn]
  }

  statement {
    sid       = "StackKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.roomcast.arn]
  }

  # The queues, the stream and their key, per function (locals.function_statements).
  dynamic "statement" {
    for_each = local.function_statements[each.key]
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }

  # The operator endpoint's secret: the events function installs that endpoint at cold start.
  dynamic "statement" {
    for_each = each.key == "events" ? data.aws_ssm_parameter.webhook_secret[*].arn : []
    content {
      sid       = "WebhookSecret"
      actions   = ["ssm:GetParameter"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.jwt_key_kms_key_arn == null ? [] : [var.jwt_key_kms_key_arn]
    content {
      sid       = "JwtKeyParameterKey"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${local.region}.${local.dns_suffix}"]
      }
    }
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions.
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "${var.name}-${each.key}"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

resource "aws_lambda_function" "function" {
  # checkov:skip=CKV_AWS_117:The functions call AWS APIs (DynamoDB, API Gateway, SSM, SQS) and deliver POSTs to customers' webhook endpoints on the Internet; a VPC would add NAT or endpoint costs and cold-start latency and protect nothing.
  # checkov:skip=CKV_AWS_116:API Gateway invokes the API functions synchronously and event source mappings invoke events and deliver; a dead-letter queue applies only to asynchronous invocations (events' failed batches go to events-failures, deliveries to deliveries-dlq: events.tf). The one asynchronous function, fanout, carries live deliveries whose members recover a lost slice from history (aws_lambda_function_event_invoke_config.fanout).
  # checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the user owns; the artifacts are built from this repository by scripts/build-lambdas.sh.
  for_each = local.functions

  function_name    = "${var.name}-${each.key}"
  description      = each.value.description
  role             = aws_iam_role.function[each.key].arn
  filename         = "${var.artifacts_dir}/${each.key}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.artifacts_dir}/${each.key}/bootstrap.zip")
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = var.lambda_memory_mb
  timeout          = coalesce(each.value.timeout, var.lambda_timeout_seconds)
  kms_key_arn      = aws_kms_key.roomcast.arn

  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = local.environment
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  depends_on = [aws_iam_role_policy.function]
}

# The fanout function is invoked asynchronously (functions/aws/src/fanout.rs): Lambda retries a
# failed invocation twice (a frame posted twice is deduplicated by clients by its seq), and a
# slice still queued after a minute is dropped, no longer live; its members fill the gap from
# history when the next message arrives or when they resume.
resource "aws_lambda_function_event_invoke_config" "fanout" {
  function_name                = aws_lambda_function.function["fanout"].function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 60
}

resource "aws_lambda_permission" "websocket" {
  for_each = local.websocket_functions

  statement_id  = "AllowApiGatewayWebSocket"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  principal     = data.aws_service_principal.apigateway.name
  source_arn    = "${aws_apigatewayv2_api.websocket.execution_arn}/${var.stage_name}/${each.value.route}"
}

resource "aws_lambda_permission" "http" {
  statement_id  = "AllowApiGatewayHttp"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["http"].function_name
  principal     = data.aws_service_principal.apigateway.name
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}
