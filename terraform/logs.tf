################################################################################
# CloudWatch log group of both containers. Stream names:
# <log_stream_prefix>/<container name>/<task id>, e.g. ecs/training/0123abcd...
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days

  tags = { Name = local.log_group_name }
}
