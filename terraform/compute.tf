################################################################################
# GPU container instances: the ECS GPU-optimized AMI in an Auto Scaling group
# that ECS scales between 0 and max_instances (see ecs.tf)
################################################################################

# AWS's public parameter: the current recommended ECS GPU-optimized AMI.
data "aws_ssm_parameter" "ecs_gpu_ami" {
  name = var.ami_ssm_parameter
}

resource "aws_launch_template" "gpu" {
  name_prefix            = "${var.name}-gpu-"
  description            = "TFOD GPU container instances of ECS cluster ${local.cluster_name}"
  image_id               = data.aws_ssm_parameter.ecs_gpu_ami.insecure_value
  update_default_version = true
  ebs_optimized          = true

  user_data = base64encode(local.user_data)

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance.arn
  }

  network_interfaces {
    associate_public_ip_address = !var.nat_gateway
    security_groups             = [aws_security_group.instances.id]
    delete_on_termination       = true
  }

  # IMDSv2 only, and a hop limit of 1: bridge-mode containers cannot reach the
  # instance metadata (nor the instance role's credentials); they get their
  # task role's credentials from the ECS agent instead.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-gpu" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.name}-gpu" })
  }
}

resource "aws_autoscaling_group" "gpu" {
  name_prefix         = "${var.name}-gpu-"
  vpc_zone_identifier = local.instance_subnet_ids

  # 0 instances while no task runs: ECS managed scaling sets the desired
  # capacity when a task is placed and back to 0 when it has stopped.
  min_size = 0
  max_size = var.max_instances

  # ECS's managed termination protection: never scale in an instance that
  # still runs a task.
  protect_from_scale_in = true
  capacity_rebalance    = local.spot

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = local.spot ? 0 : 100
      on_demand_allocation_strategy            = "prioritized"
      spot_allocation_strategy                 = "price-capacity-optimized"
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.gpu.id
        version            = aws_launch_template.gpu.latest_version
      }

      # Fall back along this list (and across the zones) when a type has no
      # capacity.
      dynamic "override" {
        for_each = var.instance_types

        content {
          instance_type = override.value
        }
      }
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  # On `make destroy`: delete the group (and any instance still protected by
  # ECS) before the cluster, which cannot go while instances are registered.
  force_delete = true
  depends_on   = [aws_ecs_cluster.this]

  lifecycle {
    # ECS managed scaling owns the desired capacity.
    ignore_changes = [desired_capacity]
  }
}
