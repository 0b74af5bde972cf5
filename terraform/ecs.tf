################################################################################
# ECS cluster with one EC2 capacity provider (the GPU Auto Scaling group) as
# its default: a task run without a launch type makes ECS start an instance,
# and the group goes back to 0 instances once the task has stopped
################################################################################

resource "aws_ecs_cluster" "this" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_ecs_capacity_provider" "gpu" {
  name = "${var.name}-gpu"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.gpu.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = var.max_instances
      instance_warmup_period    = 300
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = [aws_ecs_capacity_provider.gpu.name]

  default_capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.gpu.name
    base              = 0
    weight            = 1
  }
}

################################################################################
# Task definition: the training container and the artifacts sidecar
################################################################################

locals {
  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.this.name
      awslogs-region        = var.region
      awslogs-stream-prefix = local.log_stream_prefix
    }
  }

  work_mount = {
    sourceVolume  = local.work_volume
    containerPath = local.work_path
    readOnly      = false
  }

  # train.sh: trains on var.gpus GPUs, serves TensorBoard on 6006 (reached
  # through an SSM port forward to the instance), writes to the work volume.
  training_container = {
    name      = local.container_names.training
    image     = var.container_image
    essential = true
    command   = local.training_command

    resourceRequirements = [{ type = "GPU", value = tostring(var.gpus) }]
    cpu                  = var.training_cpu
    memoryReservation    = var.training_memory
    linuxParameters      = { sharedMemorySize = var.shared_memory_size }

    portMappings = [{ containerPort = local.tensorboard_port, hostPort = local.tensorboard_port, protocol = "tcp" }]
    mountPoints  = [local.work_mount]
    # ARTIFACTS_TARGET (unless training_environment sets it): with the RUN_NAME
    # that runtask.sh gives every task of a run (container overrides), train.sh
    # restores a relaunched run from <target>/runs/<RUN_NAME>/training/ and
    # uploads its end-of-run artifacts there.
    environment = concat(
      [for e in [{ name = "ARTIFACTS_TARGET", value = local.artifacts_uri }] : e if !contains(keys(var.training_environment), "ARTIFACTS_TARGET")],
      local.training_environment,
    )

    # Started after the sidecar, so stopped before it: on a stop (ECS, spot
    # reclaim) the sidecar's final upload comes after train.sh's checkpoint.
    # 120 s is the most ECS allows; a spot notice gives both containers 2
    # minutes in all (terraform/README.md, "Spot: the two-minute notice").
    dependsOn   = [{ containerName = local.container_names.artifacts, condition = "START" }]
    stopTimeout = 120

    logConfiguration = local.log_configuration
  }

  # Copies the training and export directories to
  # s3://<bucket>/<prefix>/runs/<RUN_NAME>/ every artifacts_sync_seconds and
  # once more on SIGTERM, the newest checkpoint first. RUN_NAME comes from
  # runtask.sh's container overrides (the task id when a task is started
  # without it). Not essential: a failed upload never stops the training.
  artifacts_container_base = {
    name      = local.container_names.artifacts
    image     = local.artifacts_image
    essential = false
    cpu       = 256

    memoryReservation = 512
    mountPoints       = [local.work_mount]
    stopTimeout       = 120

    environment = [
      # The sidecar's settings (python -m tfodkit.artifacts; runtask.sh reads
      # ARTIFACTS_TARGET too): where to upload (the sidecar appends
      # runs/<RUN_NAME>), which directories (colon-separated) and how often.
      for k, v in merge({
        AWS_REGION         = var.region
        AWS_DEFAULT_REGION = var.region
        ARTIFACTS_TARGET   = local.artifacts_uri
        ARTIFACTS_DIRS     = "${local.training_dir}:${local.exported_model_dir}"
        ARTIFACTS_INTERVAL = tostring(var.artifacts_sync_seconds)
      }, var.artifacts_environment) : { name = k, value = v }
    ]

    logConfiguration = local.log_configuration
  }

  # An empty artifacts_entrypoint / artifacts_command keeps the image's own.
  artifacts_container = merge(
    local.artifacts_container_base,
    length(var.artifacts_entrypoint) > 0 ? { entryPoint = var.artifacts_entrypoint } : {},
    length(var.artifacts_command) > 0 ? { command = var.artifacts_command } : {},
  )
}

resource "aws_ecs_task_definition" "training" {
  family                   = var.name
  requires_compatibilities = ["EC2"]
  network_mode             = "bridge"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  container_definitions = jsonencode([local.training_container, local.artifacts_container])

  # The working volume both containers mount at /data; it lives on the
  # instance's encrypted root volume for the lifetime of the task.
  volume {
    name = local.work_volume

    docker_volume_configuration {
      scope  = "task"
      driver = "local"
    }
  }
}
