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
