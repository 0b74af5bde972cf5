################################################################################
# Artifacts bucket: checkpoints, TensorBoard events and the exported model of
# every run, at s3://<bucket>/<artifacts_prefix>/runs/<run name>/
################################################################################

locals {
  artifacts_bucket_name = var.create_artifacts_bucket ? aws_s3_bucket.artifacts[0].id : data.aws_s3_bucket.existing[0].id
  artifacts_bucket_arn  = "arn:${local.partition}:s3:::${local.artifacts_bucket_name}"
  artifacts_uri         = "s3://${local.artifacts_bucket_name}/${var.artifacts_prefix}"
}

# An existing bucket (create_artifacts_bucket = false): looked up so that a
# typo fails at plan time; its settings stay as they are.
data "aws_s3_bucket" "existing" {
  count = var.create_artifacts_bucket ? 0 : 1

  bucket = var.artifacts_bucket
}

resource "aws_s3_bucket" "artifacts" {
  count = var.create_artifacts_bucket ? 1 : 0

  bucket        = var.artifacts_bucket != "" ? var.artifacts_bucket : null
  bucket_prefix = var.artifacts_bucket != "" ? null : "${var.name}-artifacts-"
  force_destroy = var.artifacts_force_destroy

  tags = { Name = "${var.name}-artifacts" }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  count = var.create_artifacts_bucket ? 1 : 0

  bucket                  = aws_s3_bucket.artifacts[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  count = var.create_artifacts_bucket ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  count = var.create_artifacts_bucket ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  count = var.create_artifacts_bucket ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  count = var.create_artifacts_bucket ? 1 : 0

  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.artifacts_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}
