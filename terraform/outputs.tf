################################################################################
# What runtask.sh reads from configs.json (`make runtask-config` writes
# `terraform output -json` there: {"<name>": {"value": ...}})
################################################################################

output "profile" {
  description = "AWS CLI profile runtask.sh passes to the aws CLI (empty: the default credential chain)."
  value       = var.profile
}

output "region" {
  description = "AWS region of the cluster."
  value       = var.region
}

output "cluster_name" {
  description = "Name of the ECS cluster to run the training task in."
  value       = aws_ecs_cluster.this.name
}

output "task_definition" {
  description = "ARN (with revision) of the training task definition."
  value       = aws_ecs_task_definition.training.arn
}

output "container_name" {
  description = "Name of the training container, whose command runtask.sh overrides with train.sh's arguments."
  value       = local.container_names.training
}

output "log_group" {
  description = "CloudWatch log group of both containers."
  value       = aws_cloudwatch_log_group.this.name
}

output "subnets" {
  description = "IDs of the subnets the GPU instances run in (private ones behind the NAT gateway, public ones without it)."
  value       = local.instance_subnet_ids
}

output "security_group" {
  description = "ID of the GPU instances' security group (no inbound rule)."
  value       = aws_security_group.instances.id
}

output "artifacts_bucket" {
  description = "Name of the S3 bucket the artifacts sidecar uploads each run to."
  value       = local.artifacts_bucket_name
}

################################################################################
# More, for people and scripts
################################################################################

output "artifacts_uri" {
  description = "s3:// prefix (ARTIFACTS_TARGET) under which each run's artifacts land, in runs/<run name>/."
  value       = local.artifacts_uri
}

output "log_stream_prefix" {
  description = "awslogs stream prefix: a container's log stream is <prefix>/<container name>/<task id>."
  value       = local.log_stream_prefix
}

output "artifacts_container_name" {
  description = "Name of the artifacts sidecar container."
  value       = local.container_names.artifacts
}

output "capacity_provider" {
  description = "Name of the ECS capacity provider (the cluster's default) that scales the GPU instances."
  value       = aws_ecs_capacity_provider.gpu.name
}

output "autoscaling_group" {
  description = "Name of the GPU Auto Scaling group (0 instances while no task runs)."
  value       = aws_autoscaling_group.gpu.name
}
