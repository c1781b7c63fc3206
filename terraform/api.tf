# The WebSocket API (routes on the frame's `action`) and the HTTP API (history, publish, health).

resource "aws_apigatewayv2_api" "websocket" {
  name                       = "${var.name}-websocket"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
  description                = "roomcast protocol v1 (docs/protocol.md)"
}

resource "aws_apigatewayv2_integration" "websocket" {
  for_each = local.websocket_functions

  api_id             = aws_apigatewayv2_api.websocket.id
  integration_type   = "AWS_PROXY"
  integration_method = "POST"
  integration_uri    = aws_lambda_function.function[each.key].invoke_arn
}

resource "aws_apigatewayv2_route" "websocket" {
  # checkov:skip=CKV_AWS_309:Authorization is the JWT check of the $connect function (the token rides in the Sec-WebSocket-Protocol header or the query, which a Lambda authorizer would have to parse the same way); API Gateway allows authorizers only on $connect, and every other route is reachable only on a connection $connect accepted.
  for_each = local.websocket_functions

  api_id             = aws_apigatewayv2_api.websocket.id
  route_key          = each.value.route
  target             = "integrations/${aws_apigatewayv2_integration.websocket[each.key].id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "websocket_access" {
  name              = "/aws/apigateway/${var.name}-websocket"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.roomcast.arn
}

# The WebSocket API's execution logs (websocket_execution_log_level). API Gateway writes them to
# a group it names itself and would create with no retention and no key: created here first,
# so it has both and `terraform destroy` removes it.
resource "aws_cloudwatch_log_group" "websocket_execution" {
  name              = "API-Gateway-Execution-Logs_${aws_apigatewayv2_api.websocket.id}/${var.stage_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.roomcast.arn
}

# WebSocket stages do not auto-deploy (auto_deploy is for HTTP APIs): an explicit deployment,
# replaced whenever a route or an integration changes, so route edits go live on apply. The new
# deployment is created before the stage moves to it and the old one is deleted.
resource "aws_apigatewayv2_deployment" "websocket" {
  api_id      = aws_apigatewayv2_api.websocket.id
  description = "roomcast WebSocket routes"

  triggers = {
    redeployment = sha1(jsonencode([
      aws_apigatewayv2_route.websocket,
      aws_apigatewayv2_integration.websocket,
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_apigatewayv2_stage" "websocket" {
  # checkov:skip=CKV2_AWS_51:Clients are browsers and apps authenticated by JWT on $connect; they cannot present client certificates (mutual TLS is for server-to-server APIs).
  api_id        = aws_apigatewayv2_api.websocket.id
  name          = var.stage_name
  deployment_id = aws_apigatewayv2_deployment.websocket.id

  # Execution logs at websocket_execution_log_level; never data traces (they would log frames
  # and tokens).
  default_route_settings {
    throttling_rate_limit  = var.websocket_throttle_rate
    throttling_burst_limit = var.websocket_throttle_burst
    logging_level          = var.websocket_execution_log_level
    data_trace_enabled     = false
  }

  dynamic "route_settings" {
    for_each = local.websocket_functions
    content {
      route_key              = route_settings.value.route
      throttling_rate_limit  = route_settings.value.route == "$connect" ? var.connect_throttle_rate : var.websocket_throttle_rate
      throttling_burst_limit = var.websocket_throttle_burst
      logging_level          = var.websocket_execution_log_level
      data_trace_enabled     = false
    }
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.websocket_access.arn
    format = jsonencode({
      requestId    = "$context.requestId"
      connectionId = "$context.connectionId"
      routeKey     = "$context.routeKey"
      eventType    = "$context.eventType"
      status       = "$context.status"
      ip           = "$context.identity.sourceIp"
      requestTime  = "$context.requestTimeEpoch"
      latency      = "$context.integrationLatency"
      error        = "$context.error.message"
      integration  = "$context.integration.error"
    })
  }

  depends_on = [aws_api_gateway_account.this, aws_cloudwatch_log_group.websocket_execution]
}

resource "aws_apigatewayv2_api" "http" {
  name          = "${var.name}-http"
  protocol_type = "HTTP"
  description   = "roomcast HTTP API: history, server-side publish, health, upload slots, download links (docs/protocol.md section 12)"

  # Any origin: the API authenticates with bearer tokens, never cookies, and the widget runs on
  # customers' pages (roomcast_core::http::cors, which deploy.rs holds this to).
  cors_configuration {
    allow_origins  = ["*"]
    allow_methods  = ["DELETE", "GET", "PATCH", "POST", "PUT"]
    allow_headers  = ["authorization", "content-type"]
    expose_headers = ["content-disposition", "content-length"]
    max_age        = 600
  }
}

resource "aws_apigatewayv2_integration" "http" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.function["http"].invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "http" {
  # checkov:skip=CKV_AWS_309:The function verifies the bearer JWT itself, with the same pinned algorithm and claims as the WebSocket API; API Gateway's JWT authorizer cannot verify HS256 tokens. /health is public by design, and so is /embed/token (a publishable key from an allowed Origin, rate-limited per key and address).
  for_each = toset(["GET /health", "GET /rooms/{room}/messages", "POST /rooms/{room}/messages", "POST /rooms/{room}/uploads", "GET /rooms/{room}/attachments/{id}", "POST /embed/token"])

  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.http.id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "http_access" {
  name              = "/aws/apigateway/${var.name}-http"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.roomcast.arn
}

# Deployed like the WebSocket API: explicitly, again whenever a route or the integration changes.
resource "aws_apigatewayv2_deployment" "http" {
  api_id      = aws_apigatewayv2_api.http.id
  description = "roomcast HTTP routes"

  triggers = {
    redeployment = sha1(jsonencode([
      aws_apigatewayv2_route.http,
      aws_apigatewayv2_integration.http,
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_apigatewayv2_stage" "http" {
  api_id        = aws_apigatewayv2_api.http.id
  name          = "$default"
  deployment_id = aws_apigatewayv2_deployment.http.id

  default_route_settings {
    throttling_rate_limit  = var.http_throttle_rate
    throttling_burst_limit = var.http_throttle_burst
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_access.arn
    format = jsonencode({
      requestId   = "$context.requestId"
      routeKey    = "$context.routeKey"
      status      = "$context.status"
      ip          = "$context.identity.sourceIp"
      requestTime = "$context.requestTimeEpoch"
      latency     = "$context.integrationLatency"
      error       = "$context.error.message"
    })
  }
}

# WebSocket access and execution logs need the region's API Gateway CloudWatch role: one
# setting per account and region, shared by every API there. Only with
# manage_api_gateway_account = true does this stack set it (and, AWS provider 6, reset it on
# destroy); docs/deploy.md says when.
data "aws_iam_policy_document" "assume_apigateway" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [data.aws_service_principal.apigateway.name]
    }
  }
}

resource "aws_iam_role" "apigateway_logs" {
  count = var.manage_api_gateway_account ? 1 : 0

  name               = "${var.name}-apigateway-logs"
  assume_role_policy = data.aws_iam_policy_document.assume_apigateway.json
}

resource "aws_iam_role_policy_attachment" "apigateway_logs" {
  count = var.manage_api_gateway_account ? 1 : 0

  role       = aws_iam_role.apigateway_logs[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count = var.manage_api_gateway_account ? 1 : 0

  cloudwatch_role_arn = aws_iam_role.apigateway_logs[0].arn

  depends_on = [aws_iam_role_policy_attachment.apigateway_logs]
}
