output "websocket_url" {
  description = "The wss:// URL clients (the widget, the SDK) connect to."
  value       = aws_apigatewayv2_stage.websocket.invoke_url
}

output "http_api_url" {
  description = "Base URL of the HTTP API (GET/POST /rooms/{room}/messages, GET /health)."
  value       = aws_apigatewayv2_stage.http.invoke_url
}

output "table_name" {
  description = "The DynamoDB table."
  value       = aws_dynamodb_table.chat.name
}

output "management_endpoint" {
  description = "The Management API endpoint (@connections) of the WebSocket stage."
  value       = local.management_endpoint
}

output "function_names" {
  description = "Lambda function names, by function."
  value       = { for name, f in aws_lambda_function.function : name => f.function_name }
}

output "deliveries_queue_url" {
  description = "The SQS queue of webhook deliveries (one message per event and endpoint)."
  value       = aws_sqs_queue.deliveries.url
}

output "deliveries_queue_arn" {
  description = "ARN of the deliveries queue."
  value       = aws_sqs_queue.deliveries.arn
}

output "deliveries_dlq_url" {
  description = "The deliveries queue's dead-letter queue (messages deliver failed on 50 times)."
  value       = aws_sqs_queue.deliveries_dlq.url
}

output "events_failures_queue_url" {
  description = "Stream records the events function could not process (the event source mapping's on-failure destination)."
  value       = aws_sqs_queue.events_failures.url
}
