# roomcast on AWS: API Gateway WebSocket + HTTP APIs, six Rust Lambda functions (arm64,
# provided.al2023), one DynamoDB table. The layout and the reasons are in docs/deploy.md; a test
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

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  region     = data.aws_region.current.region

  # Every function: the API Gateway route it serves (null: the HTTP API), the DynamoDB actions
  # its code calls (a transaction's items are authorized as PutItem/UpdateItem), and whether it
  # posts to or deletes connections (Management API). functions/aws/tests/deploy.rs observes
  # what each function's code calls and fails when these lists differ from it.
  functions = {
    connect = {
      route             = "$connect"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "PutItem", "Query"]
      manages_websocket = false
    }
    disconnect = {
      route             = "$disconnect"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "Query", "UpdateItem"]
      manages_websocket = true
    }
    message = {
      route             = "message"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"]
      manages_websocket = true
    }
    typing = {
      route             = "typing"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "Query", "UpdateItem"]
      manages_websocket = true
    }
    default = {
      route             = "$default"
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"]
      manages_websocket = true
    }
    http = {
      route             = null
      dynamodb_actions  = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "UpdateItem"]
      manages_websocket = true
    }
  }
  websocket_functions = { for name, f in local.functions : name => f if f.route != null }

  table_name = var.name

  # The Management API endpoint of the stage. Built from the API id, not from the stage
  # resource: the stage depends on the functions, which need this.
  management_endpoint = "https://${aws_apigatewayv2_api.websocket.id}.execute-api.${local.region}.${local.dns_suffix}/${var.stage_name}"

  # Set on every function; the code's list is roomcast_aws::lambda::env::DEPLOYED. The key comes
  # from SSM at cold start: no plain-text key is ever set here.
  environment = {
    ROOMCAST_TABLE                    = aws_dynamodb_table.chat.name
    ROOMCAST_JWT_KEY_PARAMETER        = var.jwt_key_parameter_name
    ROOMCAST_JWT_ALG                  = var.jwt_alg
    ROOMCAST_JWT_JWKS                 = var.jwt_jwks
    ROOMCAST_JWT_ISSUER               = var.jwt_issuer
    ROOMCAST_JWT_AUDIENCE             = var.jwt_audience
    ROOMCAST_MANAGEMENT_ENDPOINT      = local.management_endpoint
    ROOMCAST_MESSAGE_RETENTION_DAYS   = var.message_retention_days == 0 ? "" : tostring(var.message_retention_days)
    ROOMCAST_RATE_PER_SEC             = tostring(var.rate_per_sec)
    ROOMCAST_RATE_BURST               = tostring(var.rate_burst)
    ROOMCAST_JWT_LEEWAY_SECS          = tostring(var.jwt_leeway_secs)
    ROOMCAST_MAX_CONNECTIONS_PER_USER = tostring(var.max_connections_per_user)
    ROOMCAST_LOG                      = var.log_level
  }
}

# One customer managed key for the table, the logs and the functions' environment.
resource "aws_kms_key" "roomcast" {
  description             = "${var.name}: DynamoDB table, CloudWatch logs, Lambda environment"
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
# needs one; fan-out and history are Queries of a room's partition). Deletion protection is on
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
}
