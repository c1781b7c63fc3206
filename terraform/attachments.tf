# Attachments (docs/deploy.md, "Attachments"): one private bucket of the files shared in chat.
# Browsers upload with a presigned POST the functions sign (an S3 POST policy: exact key, size
# and type, tagged roomcast=pending) and download with presigned GETs; the functions read only
# the first bytes of a file to check it when a message attaches it (then retag it
# roomcast=attached). Uploads never attached expire by the lifecycle rule below, as their slots
# expire by the table's TTL.

resource "aws_s3_bucket" "attachments" {
  # checkov:skip=CKV_AWS_18:Access logging needs a second bucket to log into; every request is a presigned one the functions signed (the functions' logs say who got which link). CloudTrail S3 data events can be turned on for the bucket where an audit trail of object reads is required.
  # checkov:skip=CKV_AWS_144:Cross-region replication would copy chat files to a second region: an operator's choice (and cost), not a default.
  # checkov:skip=CKV2_AWS_62:Nothing consumes object events: the functions check uploads when a message attaches them.
  # checkov:skip=CKV_AWS_21:Versioning is off on purpose: a deleted message deletes its file, which a noncurrent version would keep. Objects are written once under a random key, never overwritten.
  bucket_prefix = "${var.name}-attachments-"
}

resource "aws_s3_bucket_public_access_block" "attachments" {
  bucket                  = aws_s3_bucket.attachments.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "attachments" {
  bucket = aws_s3_bucket.attachments.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "attachments" {
  bucket = aws_s3_bucket.attachments.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.roomcast.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "attachments" {
  bucket = aws_s3_bucket.attachments.id
  versioning_configuration {
    status = "Disabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "attachments" {
  bucket = aws_s3_bucket.attachments.id

  # Uploads no message carries: the tag an upload starts with (roomcast_aws::s3::PENDING).
  rule {
    id     = "expire-pending-uploads"
    status = "Enabled"
    filter {
      tag {
        key   = "roomcast"
        value = "pending"
      }
    }
    expiration {
      days = 1
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_cors_configuration" "attachments" {
  bucket = aws_s3_bucket.attachments.id
  cors_rule {
    allowed_methods = ["GET", "POST"]
    allowed_origins = var.attachment_allowed_origins
    allowed_headers = ["*"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3600
  }
}

data "aws_iam_policy_document" "attachments_tls" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.attachments.arn, "${aws_s3_bucket.attachments.arn}/*"]
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

resource "aws_s3_bucket_policy" "attachments" {
  bucket = aws_s3_bucket.attachments.id
  policy = data.aws_iam_policy_document.attachments_tls.json

  depends_on = [aws_s3_bucket_public_access_block.attachments]
}
