variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1."
  }
}

variable "name" {
  description = "Name of the stack: prefixes every resource (functions, table, APIs, log groups)."
  type        = string
  default     = "roomcast"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters of a-z, 0-9 and -, starting with a letter."
  }
}

variable "stage_name" {
  description = "WebSocket API stage: the last path segment of the wss:// URL."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.stage_name))
    error_message = "stage_name must be 1-64 characters of A-Z, a-z, 0-9, _ and -."
  }
}

variable "artifacts_dir" {
  description = "Directory holding <function>/bootstrap.zip for every function, as built by scripts/build-lambdas.sh (cargo lambda build --profile lambda --arm64 --output-format zip); SAM deploys the same files."
  type        = string
  default     = "../target/lambda"
}

variable "jwt_key_parameter_name" {
  description = "Name of the SSM Parameter Store SecureString that holds the JWT key: the HS256 secret, or the PEM public key for RS256/ES256. Create it, in var.region, before planning (docs/deploy.md): plan fails when it is missing or not a SecureString. Terraform never decrypts it."
  type        = string
  default     = "/roomcast/jwt-key"

  validation {
    # RE2 (Terraform's regex) repeats at most 1000 times: the length is checked apart.
    condition     = can(regex("^/[A-Za-z0-9_.\\-/]+$", var.jwt_key_parameter_name)) && length(var.jwt_key_parameter_name) <= 1011
    error_message = "jwt_key_parameter_name must be a fully qualified parameter name starting with /."
  }
}

variable "jwt_key_kms_key_arn" {
  description = "ARN of the customer managed KMS key that encrypts the JWT key parameter, if it is not the AWS managed key aws/ssm. Functions get kms:Decrypt on it, through SSM only."
  type        = string
  default     = null

  validation {
    condition     = var.jwt_key_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.jwt_key_kms_key_arn))
    error_message = "jwt_key_kms_key_arn must be a KMS key ARN."
  }
}

variable "jwt_alg" {
  description = "JWT algorithm the functions accept (pinned: tokens with any other alg are refused)."
  type        = string
  default     = "HS256"

  validation {
    condition     = contains(["HS256", "RS256", "ES256"], var.jwt_alg)
    error_message = "jwt_alg must be HS256, RS256 or ES256."
  }
}

variable "jwt_jwks" {
  description = "Further verification keys chosen by the token's kid, for key rotation: a JWKS document ({\"keys\": [...]}) of RSA or EC P-256 public keys, each with its kid. Empty: none. It is in the functions' configuration in plain text, so put public keys here, not HS256 secrets."
  type        = string
  default     = ""
}

variable "jwt_issuer" {
  description = "Required iss claim; empty: not checked."
  type        = string
  default     = ""
}

variable "jwt_audience" {
  description = "Required aud claim; empty: not checked."
  type        = string
  default     = ""
}

variable "message_retention_days" {
  description = "Days a message is kept (a DynamoDB TTL); 0 keeps messages forever."
  type        = number
  default     = 0

  validation {
    condition     = var.message_retention_days >= 0 && var.message_retention_days <= 3650 && floor(var.message_retention_days) == var.message_retention_days
    error_message = "message_retention_days must be a whole number of days, 0 to 3650."
  }
}

variable "rate_per_sec" {
  description = "Frames per second each connection may send (token bucket refill)."
  type        = number
  default     = 10

  validation {
    condition     = var.rate_per_sec >= 1 && var.rate_per_sec <= 1000
    error_message = "rate_per_sec must be 1 to 1000."
  }
}

variable "rate_burst" {
  description = "Frames a connection may send at once (token bucket size)."
  type        = number
  default     = 30

  validation {
    condition     = var.rate_burst >= 1 && var.rate_burst <= 10000
    error_message = "rate_burst must be 1 to 10000."
  }
}

variable "jwt_leeway_secs" {
  description = "Clock skew tolerated on the tokens' exp and nbf, in seconds."
  type        = number
  default     = 0

  validation {
    condition     = var.jwt_leeway_secs >= 0 && var.jwt_leeway_secs <= 300
    error_message = "jwt_leeway_secs must be 0 to 300."
  }
}

variable "max_connections_per_user" {
  description = "Live connections one user may hold; more are refused with 429."
  type        = number
  default     = 20

  validation {
    condition     = var.max_connections_per_user >= 1 && var.max_connections_per_user <= 1000
    error_message = "max_connections_per_user must be 1 to 1000."
  }
}

variable "presence_max_connections" {
  description = "Most connections a room holds with the presence of individuals; a bigger room announces its occupancy instead (protocol.md §17)."
  type        = number
  default     = 100

  validation {
    condition     = var.presence_max_connections >= 1 && floor(var.presence_max_connections) == var.presence_max_connections
    error_message = "presence_max_connections must be a whole number, at least 1."
  }
}

variable "log_level" {
  description = "The functions' log level: error, warn, info, debug or trace."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["error", "warn", "info", "debug", "trace"], var.log_level)
    error_message = "log_level must be error, warn, info, debug or trace."
  }
}

variable "websocket_throttle_rate" {
  description = "Steady-state requests per second the WebSocket stage accepts per route (API Gateway route throttling)."
  type        = number
  default     = 1000

  validation {
    condition     = var.websocket_throttle_rate > 0
    error_message = "websocket_throttle_rate must be positive."
  }
}

variable "websocket_throttle_burst" {
  description = "Burst of requests the WebSocket stage accepts per route."
  type        = number
  default     = 2000

  validation {
    condition     = var.websocket_throttle_burst > 0 && floor(var.websocket_throttle_burst) == var.websocket_throttle_burst
    error_message = "websocket_throttle_burst must be a positive whole number."
  }
}

variable "connect_throttle_rate" {
  description = "Steady-state $connect requests per second (each verifies a JWT and writes the connection): kept below the general rate to blunt connection storms."
  type        = number
  default     = 200

  validation {
    condition     = var.connect_throttle_rate > 0
    error_message = "connect_throttle_rate must be positive."
  }
}

variable "http_throttle_rate" {
  description = "Steady-state requests per second the HTTP API accepts."
  type        = number
  default     = 200

  validation {
    condition     = var.http_throttle_rate > 0
    error_message = "http_throttle_rate must be positive."
  }
}

variable "http_throttle_burst" {
  description = "Burst of requests the HTTP API accepts."
  type        = number
  default     = 400

  validation {
    condition     = var.http_throttle_burst > 0 && floor(var.http_throttle_burst) == var.http_throttle_burst
    error_message = "http_throttle_burst must be a positive whole number."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of each function, MB (CPU grows with it). 256 MB is ample for the Rust functions."
  type        = number
  default     = 256

  validation {
    condition     = var.lambda_memory_mb >= 128 && var.lambda_memory_mb <= 10240
    error_message = "lambda_memory_mb must be 128 to 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of each API function. API Gateway's integration timeout is 29 s. (events: 60 s, deliver: 30 s, main.tf.)"
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_timeout_seconds >= 1 && var.lambda_timeout_seconds <= 29
    error_message = "lambda_timeout_seconds must be 1 to 29."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions of each function: caps what one stack can take from the account's pool; -1 leaves them unreserved."
  type        = number
  default     = -1

  validation {
    condition     = var.reserved_concurrency >= -1
    error_message = "reserved_concurrency must be -1 or more."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps function and access logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "manage_api_gateway_account" {
  description = "Let this stack set the region's API Gateway CloudWatch role (one setting per account and region, shared by every API there; WebSocket access and execution logs need it). Leave false when the region already has one (aws apigateway get-account); set true only when it has none and no other stack manages it: destroy then resets the setting."
  type        = bool
  default     = false
}

variable "table_deletion_protection" {
  description = "DynamoDB deletion protection on the chat table. Keep it on; set false and apply before `terraform destroy` (docs/deploy.md, teardown)."
  type        = bool
  default     = true
}

variable "websocket_execution_log_level" {
  description = "API Gateway execution logging of the WebSocket stage: OFF, ERROR (integration and authorization failures) or INFO (every request; verbose). HTTP APIs have access logs only."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["OFF", "ERROR", "INFO"], var.websocket_execution_log_level)
    error_message = "websocket_execution_log_level must be OFF, ERROR or INFO."
  }
}

variable "webhook_url" {
  description = "The operator's webhook endpoint: receives every tenant's integration events (docs/events.md). Empty: none. Needs webhook_secret_parameter_name."
  type        = string
  default     = ""

  validation {
    condition     = var.webhook_url == "" || (can(regex("^https?://", var.webhook_url)) && var.webhook_secret_parameter_name != "")
    error_message = "webhook_url must be an http(s) URL, and needs webhook_secret_parameter_name (its secret)."
  }
}

variable "webhook_types" {
  description = "Event types the operator's endpoint receives, comma-separated (docs/events.md, catalogue). Empty: every type."
  type        = string
  default     = ""
}

variable "webhook_secret_parameter_name" {
  description = "Name of the SSM Parameter Store SecureString holding the operator endpoint's whsec_ secret, read by the events function at cold start. Encrypt it with aws/ssm or the key of jwt_key_kms_key_arn. Empty: none (no operator endpoint). Terraform reads it at plan, without decryption."
  type        = string
  default     = ""

  validation {
    condition     = var.webhook_secret_parameter_name == "" || (can(regex("^/[A-Za-z0-9_.\\-/]+$", var.webhook_secret_parameter_name)) && length(var.webhook_secret_parameter_name) <= 1011)
    error_message = "webhook_secret_parameter_name must be empty or a fully qualified parameter name starting with /."
  }
}

variable "webhook_timeout_ms" {
  description = "Timeout of one webhook attempt, ms. The deliver function (30 s) runs a batch of 10 attempts at once, so at most 20000."
  type        = number
  default     = 10000

  validation {
    condition     = var.webhook_timeout_ms >= 1000 && var.webhook_timeout_ms <= 20000 && floor(var.webhook_timeout_ms) == var.webhook_timeout_ms
    error_message = "webhook_timeout_ms must be a whole number, 1000 to 20000."
  }
}

variable "webhook_first_retry_ms" {
  description = "Backoff after a delivery's first failure, ms; it doubles after each further one, to at most two hours."
  type        = number
  default     = 5000

  validation {
    condition     = var.webhook_first_retry_ms >= 1000 && var.webhook_first_retry_ms <= 3600000 && floor(var.webhook_first_retry_ms) == var.webhook_first_retry_ms
    error_message = "webhook_first_retry_ms must be a whole number, 1000 to 3600000."
  }
}

variable "webhook_retry_for_secs" {
  description = "How long a delivery is retried before it is dead-lettered, seconds. At most 3 days: the deliveries queue keeps a message 4 days."
  type        = number
  default     = 86400

  validation {
    condition     = var.webhook_retry_for_secs >= 60 && var.webhook_retry_for_secs <= 259200 && floor(var.webhook_retry_for_secs) == var.webhook_retry_for_secs
    error_message = "webhook_retry_for_secs must be a whole number, 60 to 259200."
  }
}

variable "deliver_max_concurrency" {
  description = "Most deliver functions the deliveries queue's event source mapping runs at once (each POSTs 10 webhooks at a time)."
  type        = number
  default     = 20

  validation {
    condition     = var.deliver_max_concurrency >= 2 && var.deliver_max_concurrency <= 1000 && floor(var.deliver_max_concurrency) == var.deliver_max_concurrency
    error_message = "deliver_max_concurrency must be a whole number, 2 to 1000 (SQS event source mappings' range)."
  }
}

variable "alarm_actions" {
  description = "ARNs (SNS topics, …) notified when an alarm fires or recovers."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "attachment_allowed_origins" {
  description = "Origins (scheme://host[:port]) whose pages may upload attachments to the bucket and fetch them (S3 CORS for the presigned POST and GET). [\"*\"] allows any: the presigned request is the authorization either way."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.attachment_allowed_origins) > 0 && alltrue([for o in var.attachment_allowed_origins : o == "*" || can(regex("^https?://[^/]+$", o))])
    error_message = "attachment_allowed_origins must list \"*\" or origins like https://example.com."
  }
}

variable "attachment_max_bytes" {
  description = "Largest attachment, bytes."
  type        = number
  default     = 10485760

  validation {
    condition     = var.attachment_max_bytes >= 1 && var.attachment_max_bytes <= 5368709120 && floor(var.attachment_max_bytes) == var.attachment_max_bytes
    error_message = "attachment_max_bytes must be a whole number, 1 to 5 GiB (one S3 POST)."
  }
}

variable "attachment_types" {
  description = "Allowed attachment types, comma-separated MIME types. Empty: the built-in list (raster images, PDF, text, CSV, SVG as a download, the office formats)."
  type        = string
  default     = ""
}

variable "uploads_per_user_day" {
  description = "Upload slots per user per UTC day."
  type        = number
  default     = 200
}

variable "upload_bytes_per_user_day" {
  description = "Declared upload bytes per user per UTC day."
  type        = number
  default     = 524288000
}

variable "uploads_per_tenant_day" {
  description = "Upload slots per tenant per UTC day."
  type        = number
  default     = 20000
}

variable "upload_bytes_per_tenant_day" {
  description = "Declared upload bytes per tenant per UTC day."
  type        = number
  default     = 21474836480
}

variable "embed_keys" {
  description = "Publishable keys for embedding the widget without a backend: a JSON object by key (pk_...) of {tenant, origins, team?, greeting?, reply_time?, avatars?, office_hours?} (docs/protocol.md section 15). Empty: none. Visitor tokens are signed with a key derived from the HS256 token secret."
  type        = string
  default     = ""
}

variable "embed_token_secs" {
  description = "Lifetime of the visitor tokens POST /embed/token issues, seconds."
  type        = number
  default     = 3600
  validation {
    condition     = var.embed_token_secs >= 60 && var.embed_token_secs <= 86400 && floor(var.embed_token_secs) == var.embed_token_secs
    error_message = "embed_token_secs must be a whole number of seconds, 60 to 86400."
  }
}
