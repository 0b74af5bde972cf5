################################################################################
# Instance role: the ECS agent on the GPU instances, and SSM Session Manager
# (shells and TensorBoard port forwarding, instead of SSH and a bastion)
################################################################################

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    sid     = "EC2AssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name_prefix        = "${var.name}-instance-"
  description        = "TFOD GPU container instances: ECS agent and SSM Session Manager"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

# AWS-managed policies, kept current by AWS as the ECS agent and the SSM agent
# change. Containers cannot use this role: the launch template's IMDS hop
# limit of 1 keeps bridge-mode containers away from the instance metadata.
resource "aws_iam_role_policy_attachment" "instance" {
  for_each = {
    ecs_agent = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
    ssm_core  = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
  }

  role       = aws_iam_role.instance.name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "instance" {
  name_prefix = "${var.name}-instance-"
  role        = aws_iam_role.instance.name
}

################################################################################
# Roles the ECS tasks assume (only tasks of this account)
################################################################################

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "ECSTasksAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.${local.dns_suffix}"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

################################################################################
# Task execution role: the ECS agent pulls the images and writes the logs
################################################################################

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-execution-"
  description        = "TFOD training task execution: pull the images, write the logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.this.arn, "${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) > 0 ? [1] : []

    content {
      sid       = "PullTaskImages"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = local.ecr_repository_arns
    }
  }

  # GetAuthorizationToken has no resource-level permissions: "*" is the only
  # resource AWS accepts for it.
  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) > 0 ? [1] : []

    content {
      sid       = "GetRegistryToken"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-images-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

################################################################################
# Task role: what train.sh and the artifacts sidecar may do. Read the records
# and config locations, read and write the artifacts prefix, nothing else.
################################################################################

resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  description        = "TFOD training task: read the records and configs, read and write the artifacts prefix"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  dynamic "statement" {
    for_each = local.read_locations

    content {
      sid       = "ListInputs${statement.key}"
      actions   = ["s3:ListBucket"]
      resources = [statement.value.bucket_arn]

      dynamic "condition" {
        for_each = length(statement.value.list_prefixes) > 0 ? [1] : []

        content {
          test     = "StringLike"
          variable = "s3:prefix"
          values   = statement.value.list_prefixes
        }
      }
    }
  }

  statement {
    sid       = "ReadInputs"
    actions   = ["s3:GetObject"]
    resources = [for l in local.read_locations : l.objects_arn]
  }

  # Upload (multipart uploads included): the sidecar and train.sh's end-of-run
  # upload write the run's folder, <prefix>/runs/<RUN_NAME>/.
  statement {
    sid       = "WriteArtifacts"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.artifacts_bucket_arn}/${var.artifacts_prefix}/*"]
  }

  # Read back: train.sh in a task relaunched after a spot reclaim lists and
  # downloads the run's checkpoints, and checks for its export.json.
  statement {
    sid       = "ListArtifacts"
    actions   = ["s3:ListBucket"]
    resources = [local.artifacts_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.artifacts_prefix}/*"]
    }
  }

  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${local.artifacts_bucket_arn}/${var.artifacts_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "read-inputs-write-artifacts"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
