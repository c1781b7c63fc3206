# roomcast on AWS: API Gateway WebSocket + HTTP APIs, nine Rust Lambda functions (arm64,
# provided.al2023), one DynamoDB table with a stream, the SQS queues of integration events. The layout and the reasons are in docs/deploy.md; a test
# (functions/aws/tests/deploy.rs) fails when this module and the code disagree.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

# Service principals as the partition names them (not always `<service>.<dns suffix>`).
data "aws_service_principal" "lambda" {
  service_name = "lambda"
}

data "aws_service_principal" "apigateway" {
  service_name = "apigateway"
}

# The JWT key parameter must exist, in this region, before anything is created: a missing or
# misplaced parameter fails `terraform plan` here instead of every cold start later. Read
# without decryption (no kms:Decrypt needed to plan; the state holds the KMS ciphertext, never
# the key).
data "aws_ssm_parameter" "jwt_key" {
  name            = var.jwt_key_parameter_name
  with_decryption = false

  lifecycle {
    postcondition {
      condition     = self.type == "SecureString"
      error_message = "The JWT key parameter ${var.jwt_key_parameter_name} must be a SecureString (docs/deploy.md, step 2)."
    }
  }
}

# The operator endpoint's secret, when var.webhook_secret_parameter_name names one: read at plan
# like the JWT key (without decryption), so a missing or plain-text parameter fails plan.
data "aws_ssm_parameter" "webhook_secret" {
  count = var.webhook_secret_parameter_name == "" ? 0 : 1

  name            = var.webhook_secret_parameter_name
  with_decryption = false

  lifecycle {
    postcondition {
      condition     = self.type == "SecureString"
      error_message = "The webhook secret parameter ${var.webhook_secret_parameter_name} must be a SecureString (docs/deploy.md)."
    }
  }
}

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  region     = data.aws_region.current.region

  # Every function: the API Gateway route it serves (null: the HTTP API, or no API at all for
  # events and deliver, which event source mappings invoke: events.tf), the DynamoDB actions its
  # code calls (a transaction's items are authorized as PutItem/UpdateItem), whether it posts to
  # or deletes connections (Management API), and its timeout (null: var.lambda_timeout_seconds).
  # functions/aws/tests/deploy.rs observes what each API function's code calls and fails when
  # these lists differ from it; events' and deliver's lists are checked against the test's own.
  functions = {
    connect = {
      route             = "$connect"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "GetItem", "PutItem", "Query"]
      manages_websocket = false
      description       = "roomcast WebSocket route $connect"
      timeout           = null
    }
    disconnect = {
      route             = "$disconnect"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "Query", "UpdateItem"]
      manages_websocket = true
      description       = "roomcast WebSocket route $disconnect"
      timeout           = null
    }
    message = {
      route             = "message"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"]
      manages_websocket = true
      description       = "roomcast WebSocket route message"
      timeout           = null
    }
    typing = {
      route             = "typing"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "Query", "UpdateItem"]
      manages_websocket = true
      description       = "roomcast WebSocket route typing"
      timeout           = null
    }
    default = {
      route             = "$default"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"]
      manages_websocket = true
      description       = "roomcast WebSocket route $default"
      timeout           = null
    }
    http = {
      route             = null
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"]
      manages_websocket = true
      description       = "roomcast HTTP API"
      timeout           = null
    }
    # Integration events (docs/events.md, "AWS"): reads the table's stream, finds the endpoints
    # that want each event and queues one delivery per event and endpoint; at cold start it
    # writes the operator's endpoint item from its configuration. A batch is up to 100 records.
    events = {
      route             = null
      dynamodb_actions  = ["BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query"]
      manages_websocket = false
      description       = "roomcast integration events: the table's stream to the deliveries queue"
      timeout           = 60
    }
    # POSTs each queued delivery to its endpoint (10 at once, each at most
    # var.webhook_timeout_ms), records the attempt, schedules a retry through the message's
    # visibility or dead-letters it in the table.
    deliver = {
      route             = null
      dynamodb_actions  = ["GetItem", "PutItem"]
      manages_websocket = false
      description       = "roomcast integration events: webhook deliveries from the deliveries queue"
      timeout           = 30
    }
    # Big rooms' fan-out (functions/aws/src/fanout.rs): message and http post the first ~1,000
    # recipients of a broadcast themselves and invoke this function asynchronously once per
    # further slice of ~1,000; it posts its slice and cleans up the connections found gone.
    fanout = {
      route             = null
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "Query", "UpdateItem"]
      manages_websocket = true
      description       = "roomcast fan-out: one slice of a big room's broadcast"
      timeout           = null
    }
  }
  websocket_functions = { for name, f in local.functions : name => f if f.route != null }

  table_name = var.name

  # The Management API endpoint of the stage. Built from the API id, not from the stage
  # resource: the stage depends on the functions, which need this.
  management_endpoint = "https://${aws_apigatewayv2_api.websocket.id}.execute-api.${local.region}.${local.dns_suffix}/${var.stage_name}"

  # The fanout function, by name: its resource's attributes would make the roles that may invoke
  # it depend on the functions, which depend on the roles.
  fanout_function_arn = "arn:${local.partition}:lambda:${local.region}:${local.account}:function:${var.name}-fanout"

  # Set on every function; the code's list is roomcast_aws::lambda::env::DEPLOYED. The key comes
  # from SSM at cold start: no plain-text key is ever set here.
  environment = {
    ROOMCAST_TABLE                       = aws_dynamodb_table.chat.name
    ROOMCAST_JWT_KEY_PARAMETER           = var.jwt_key_parameter_name
    ROOMCAST_JWT_ALG                     = var.jwt_alg
    ROOMCAST_JWT_JWKS                    = var.jwt_jwks
    ROOMCAST_JWT_ISSUER                  = var.jwt_issuer
    ROOMCAST_JWT_AUDIENCE                = var.jwt_audience
    ROOMCAST_MANAGEMENT_ENDPOINT         = local.management_endpoint
    ROOMCAST_MESSAGE_RETENTION_DAYS      = var.message_retention_days == 0 ? "" : tostring(var.message_retention_days)
    ROOMCAST_RATE_PER_SEC                = tostring(var.rate_per_sec)
    ROOMCAST_RATE_BURST                  = tostring(var.rate_burst)
    ROOMCAST_JWT_LEEWAY_SECS             = tostring(var.jwt_leeway_secs)
    ROOMCAST_MAX_CONNECTIONS_PER_USER    = tostring(var.max_connections_per_user)
    ROOMCAST_PRESENCE_MAX_CONNECTIONS    = tostring(var.presence_max_connections)
    ROOMCAST_LOG                         = var.log_level
    ROOMCAST_DELIVERY_QUEUE_URL          = aws_sqs_queue.deliveries.url
    ROOMCAST_WEBHOOK_URL                 = var.webhook_url
    ROOMCAST_WEBHOOK_TYPES               = var.webhook_types
    ROOMCAST_WEBHOOK_SECRET_PARAMETER    = var.webhook_secret_parameter_name
    ROOMCAST_WEBHOOK_TIMEOUT_MS          = tostring(var.webhook_timeout_ms)
    ROOMCAST_WEBHOOK_FIRST_RETRY_MS      = tostring(var.webhook_first_retry_ms)
    ROOMCAST_WEBHOOK_RETRY_FOR_SECS      = tostring(var.webhook_retry_for_secs)
    ROOMCAST_ATTACHMENT_BUCKET           = aws_s3_bucket.attachments.bucket
    ROOMCAST_ATTACHMENT_MAX_BYTES        = tostring(var.attachment_max_bytes)
    ROOMCAST_ATTACHMENT_TYPES            = var.attachment_types
    ROOMCAST_UPLOADS_PER_USER_DAY        = tostring(var.uploads_per_user_day)
    ROOMCAST_UPLOAD_BYTES_PER_USER_DAY   = tostring(var.upload_bytes_per_user_day)
    ROOMCAST_UPLOADS_PER_TENANT_DAY      = tostring(var.uploads_per_tenant_day)
    ROOMCAST_UPLOAD_BYTES_PER_TENANT_DAY = tostring(var.upload_bytes_per_tenant_day)
    ROOMCAST_EMBED_KEYS                  = var.embed_keys
    ROOMCAST_EMBED_TOKEN_SECS            = tostring(var.embed_token_secs)
    ROOMCAST_FANOUT_FUNCTION             = "${var.name}-fanout"
  }

  # Statements some functions need beyond the ones every function has (lambda.tf): sending
  # deliveries (the http function's test event and dead-letter replay, and events), reading the
  # stream and sending a failed batch's record to events-failures (events' event source mapping
  # does both with the function's role), consuming deliveries (deliver's mapping receives and
  # deletes; its code changes a message's visibility to schedule the retry). Senders to the
  # KMS-encrypted queues need kms:GenerateDataKey on the stack key (kms:Decrypt every function
  # has). The functions that run attachments (the upload action and messages over WebSocket,
  # uploads, links and publish over HTTP) sign uploads and downloads, read an upload's first
  # bytes, retag and delete objects, all in the attachments bucket (attachments.tf); a presigned
  # upload encrypts with the stack key as its signer, hence kms:GenerateDataKey. The functions
  # that split big rooms' broadcasts (message, http) invoke the fanout function, and only it.
  # functions/aws/tests/deploy.rs holds these lists, and SAM's, to its own.
  function_statements = {
    connect    = []
    disconnect = []
    message = [
      { sid = "AttachmentObjects", actions = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"], resources = ["${aws_s3_bucket.attachments.arn}/*"] },
      { sid = "AttachmentKey", actions = ["kms:GenerateDataKey"], resources = [aws_kms_key.roomcast.arn] },
      { sid = "InvokeFanout", actions = ["lambda:InvokeFunction"], resources = [local.fanout_function_arn] },
    ]
    typing = []
    default = [
      { sid = "AttachmentObjects", actions = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"], resources = ["${aws_s3_bucket.attachments.arn}/*"] },
      { sid = "AttachmentKey", actions = ["kms:GenerateDataKey"], resources = [aws_kms_key.roomcast.arn] },
    ]
    http = [
      { sid = "AttachmentObjects", actions = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"], resources = ["${aws_s3_bucket.attachments.arn}/*"] },
      { sid = "AttachmentKey", actions = ["kms:GenerateDataKey"], resources = [aws_kms_key.roomcast.arn] },
      { sid = "EnqueueDeliveries", actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.deliveries.arn] },
      { sid = "QueueKey", actions = ["kms:GenerateDataKey"], resources = [aws_kms_key.roomcast.arn] },
      { sid = "InvokeFanout", actions = ["lambda:InvokeFunction"], resources = [local.fanout_function_arn] },
    ]
    events = [
      { sid = "EnqueueDeliveries", actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.deliveries.arn] },
      { sid = "QueueKey", actions = ["kms:GenerateDataKey"], resources = [aws_kms_key.roomcast.arn] },
      { sid = "ReadStream", actions = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"], resources = [aws_dynamodb_table.chat.stream_arn] },
      { sid = "ListStreams", actions = ["dynamodb:ListStreams"], resources = ["${aws_dynamodb_table.chat.arn}/stream/*"] },
      { sid = "StreamFailures", actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.events_failures.arn] },
    ]
    fanout = []
    deliver = [
      { sid = "ConsumeDeliveries", actions = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"], resources = [aws_sqs_queue.deliveries.arn] },
    ]
  }
}

# One customer managed key for the table, the logs, the functions' environment and the queues.
resource "aws_kms_key" "roomcast" {
  description             = "${var.name}: DynamoDB table, CloudWatch logs, Lambda environment, SQS queues"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "roomcast" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.roomcast.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:In a key policy, Resource "*" means this key only. The account administers the key (IAM policies then decide who may), as in AWS's default key policy, with the actions listed instead of kms:*.
  # checkov:skip=CKV_AWS_111:As above: a key policy's Resource "*" is the key itself.
  # checkov:skip=CKV_AWS_356:As above: a key policy's Resource "*" is the key itself.
  statement {
    sid = "AccountAdministersAndUses"
    actions = [
      "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt", "kms:DeleteAlias",
      "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
      "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus", "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies",
      "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RetireGrant",
      "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:TagResource",
      "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsOfThisStack"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*${var.name}*",
        # The WebSocket stage's execution logs (API Gateway names that group itself).
        "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:API-Gateway-Execution-Logs_${aws_apigatewayv2_api.websocket.id}/*",
      ]
    }
  }
}

# The single table of roomcast_aws::dynamo (key design in its module doc and in
# docs/architecture.md): pk/sk strings, TTL on `ttl`, no secondary index (no access pattern
# needs one; fan-out and history are Queries of a room's partition), a stream for the events
# function. Deletion protection is on
# unless table_deletion_protection is false: teardown (docs/deploy.md) turns it off first.
resource "aws_dynamodb_table" "chat" {
  name         = local.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.roomcast.arn
  }

  deletion_protection_enabled = var.table_deletion_protection

  # Integration events: the events function reads every change, old and new item (an edit and a
  # tombstone are told apart by comparing them).
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"
}
