# Values computed from the variables alone: no resource or data source may be
# referenced here, so that tests/test_terraform.py can evaluate this file
# offline (terraform apply on a copy of variables.tf and locals.tf).

locals {
  partition  = startswith(var.region, "cn-") ? "aws-cn" : (startswith(var.region, "us-gov-") ? "aws-us-gov" : "aws")
  dns_suffix = local.partition == "aws-cn" ? "amazonaws.com.cn" : "amazonaws.com"

  cluster_name = var.name

  # The task definition's two containers. runtask.sh reads the training
  # container's name from the container_name output and overrides its command.
  container_names = {
    training  = "training"
    artifacts = "artifacts"
  }

  # Paths inside the containers. The image's WORKDIR is /opt/tfod; the working
  # volume, shared by both containers, is mounted at /data.
  work_volume        = "work"
  work_path          = "/data"
  models_dir         = "/opt/tfod/models"
  training_dir       = "${local.work_path}/training"
  exported_model_dir = "${local.work_path}/exported_model"

  # train.sh's positional arguments (the image's ENTRYPOINT is train.sh):
  #   <models_dir> <training_dir> <exported_model_dir> <records_dir|s3://bucket/prefix>
  #   "<zoo model name>" [<training.config|s3://...>] [<hparams.json|s3://...>]
  training_command = [
    local.models_dir,
    local.training_dir,
    local.exported_model_dir,
    trimsuffix(var.records_uri, "/"),
    var.model_name,
    var.training_config_uri,
    var.hparams_uri,
  ]

  training_environment = [
    for k, v in merge({ AWS_REGION = var.region, AWS_DEFAULT_REGION = var.region }, var.training_environment) :
    { name = k, value = v }
  ]

  tensorboard_port  = 6006
  log_group_name    = "/ecs/${var.name}"
  log_stream_prefix = "ecs"

  artifacts_image = var.artifacts_image != "" ? var.artifacts_image : var.container_image

  # S3 locations the task role may read: the records prefix, the folders that
  # hold the two config files, and read_uris.
  read_uris = distinct([
    for u in concat(
      [var.records_uri],
      [regex("^(s3://.+)/[^/]+$", var.training_config_uri)[0]],
      [regex("^(s3://.+)/[^/]+$", var.hparams_uri)[0]],
      var.read_uris,
    ) : trimsuffix(u, "/")
  ])
  read_locations = [
    for u in local.read_uris : {
      bucket_arn    = "arn:${local.partition}:s3:::${regex("^s3://([^/]+)", u)[0]}"
      objects_arn   = "arn:${local.partition}:s3:::${trimprefix(u, "s3://")}/*"
      list_prefixes = length(regexall("^s3://[^/]+$", u)) > 0 ? [] : [regex("^s3://[^/]+/(.+)$", u)[0], "${regex("^s3://[^/]+/(.+)$", u)[0]}/*"]
    }
  ]

  # ECR repositories of the two images (none when both come from another
  # registry): the execution role may pull from exactly these.
  ecr_image_pattern = "^([0-9]{12})\\.dkr\\.ecr(-fips)?\\.([a-z0-9-]+)\\.amazonaws\\.com(\\.cn)?/([^:@]+)"
  ecr_repository_arns = distinct([
    for image in distinct([var.container_image, local.artifacts_image]) :
    format("arn:%s:ecr:%s:%s:repository/%s", local.partition,
      regex(local.ecr_image_pattern, image)[2],
      regex(local.ecr_image_pattern, image)[0],
    regex(local.ecr_image_pattern, image)[4])
    if can(regex(local.ecr_image_pattern, image))
  ])

  spot = var.capacity_type == "spot"

  # User data of every GPU instance: join the cluster, expose the GPUs to ECS,
  # drain spot instances on their interruption notice, and give containers
  # 2 minutes after SIGTERM (checkpoint, final upload) before SIGKILL.
  user_data = <<-EOT
    #!/bin/bash
    cat >> /etc/ecs/ecs.config <<'EOF'
    ECS_CLUSTER=${local.cluster_name}
    ECS_ENABLE_GPU_SUPPORT=true
    ECS_ENABLE_SPOT_INSTANCE_DRAINING=${local.spot}
    ECS_CONTAINER_STOP_TIMEOUT=120s
    EOF
  EOT
}
