################################################################################
# General
################################################################################

variable "region" {
  description = "AWS region to create everything in, e.g. us-east-1. Pick one that offers the GPU types in instance_types."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like us-east-1, eu-west-2 or us-gov-west-1."
  }
}

variable "profile" {
  description = "Named AWS CLI profile for terraform and runtask.sh (from ~/.aws/config). Empty: the default credential chain (AWS_PROFILE, environment variables, SSO, instance role)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_.+=@-]*$", var.profile))
    error_message = "profile must be a profile name from ~/.aws/config (letters, digits and _.+=@-), or empty."
  }
}

variable "name" {
  description = "Name prefix of every resource (cluster, roles, log group, ...). Lowercase letters, digits and hyphens; must not start with aws, ecs or fargate (reserved for ECS capacity providers)."
  type        = string
  default     = "tfod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}$", var.name)) && !can(regex("^(aws|ecs|fargate)", var.name))
    error_message = "name must be 2-23 characters of lowercase letters, digits and hyphens, start with a letter and not start with aws, ecs or fargate."
  }
}

variable "tags" {
  description = "Extra tags for every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

################################################################################
# Network
################################################################################

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC, a /16 to /18; the subnets take 4 more prefix bits (/20s from a /16, /22s from a /18)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 18, false)
    error_message = "vpc_cidr must be an IPv4 CIDR block from /16 to /18, e.g. 10.42.0.0/16."
  }
}

variable "az_count" {
  description = "How many availability zones get a public and a private subnet. More zones give the Auto Scaling group more places to find GPU capacity."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6 && floor(var.az_count) == var.az_count
    error_message = "az_count must be a whole number from 2 to 6."
  }
}

variable "nat_gateway" {
  description = "Create one NAT gateway so the GPU instances run in private subnets with no public address. Costs about $0.045/hour plus $0.045/GB processed (us-east-1), plus $0.005/hour for its public IPv4 address: about $37/month even when no instance runs. false: no NAT gateway; the instances run in the public subnets with a public IPv4 address ($0.005/hour each, only while running) and still accept no inbound traffic."
  type        = bool
  default     = true
}

################################################################################
# GPU instances
################################################################################

variable "instance_types" {
  description = "NVIDIA GPU instance types, in order of preference. The Auto Scaling group falls back to the next type (and zone) when one has no capacity. Every type must have at least `gpus` GPUs and room for training_cpu/training_memory. Families: g4dn, g5, g6, g6e, gr6, p3, p3dn, p4d, p4de, p5, p5e, p5en."
  type        = list(string)
  default     = ["g4dn.xlarge", "g5.xlarge", "g6.xlarge"]

  validation {
    condition     = length(var.instance_types) >= 1 && length(var.instance_types) <= 20 && length(distinct(var.instance_types)) == length(var.instance_types)
    error_message = "instance_types must list 1 to 20 distinct instance types."
  }

  validation {
    condition     = alltrue([for t in var.instance_types : can(regex("^(g4dn|g5|g6|g6e|gr6|p3|p3dn|p4d|p4de|p5|p5e|p5en)\\.([0-9]*xlarge|metal)$", t))])
    error_message = "instance_types must be x86 NVIDIA GPU instance types, e.g. g4dn.xlarge, g5.2xlarge, g6.xlarge, p3.2xlarge (not g4ad: AMD GPUs; not g5g: Arm)."
  }
}

variable "capacity_type" {
  description = "\"on-demand\" or \"spot\". Spot usually costs 50-70% less but AWS can reclaim the instance with 2 minutes' notice: the task then gets SIGTERM, train.sh saves a checkpoint, the artifacts sidecar uploads it, and runtask.sh starts a new task for the run, which resumes from it (--max-restarts, --max-wait)."
  type        = string
  default     = "on-demand"

  validation {
    condition     = contains(["on-demand", "spot"], var.capacity_type)
    error_message = "capacity_type must be \"on-demand\" or \"spot\"."
  }
}

variable "max_instances" {
  description = "Most GPU instances the Auto Scaling group may run at once (one training task per instance). The minimum is always 0: with no task running, no instance runs."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 20 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 20."
  }
}

variable "root_volume_size" {
  description = "Size in GiB of each instance's encrypted gp3 root volume, which holds the Docker images and the task's working volume (checkpoints, exported model). gp3 costs about $0.08/GiB-month, billed only while the instance exists."
  type        = number
  default     = 100

  validation {
    condition     = var.root_volume_size >= 30 && var.root_volume_size <= 16384 && floor(var.root_volume_size) == var.root_volume_size
    error_message = "root_volume_size must be a whole number of GiB from 30 (the AMI's own size) to 16384."
  }
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter that holds the ECS GPU-optimized AMI id. The default is AWS's recommended Amazon Linux 2023 GPU AMI (NVIDIA driver, ECS agent and the NVIDIA container runtime)."
  type        = string
  default     = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"

  validation {
    condition     = can(regex("^/aws/service/ecs/optimized-ami/.*gpu.*/image_id$", var.ami_ssm_parameter))
    error_message = "ami_ssm_parameter must be an ECS GPU-optimized AMI parameter, e.g. /aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id."
  }
}

################################################################################
# Training task
################################################################################

variable "container_image" {
  description = "The toolkit's GPU image (built from the repository's Dockerfile), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/tfodkit:1a2b3c4 (make build IMAGE=... tags it with the git commit). Its WORKDIR is /opt/tfod and its ENTRYPOINT train.sh. In ECR, the execution role may pull exactly that repository; any other registry must be public."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:@-]*[a-z0-9]$", var.container_image)) && !can(regex("\\s", var.container_image))
    error_message = "container_image must be an image reference such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/tfod:latest or myorg/tfod:1.0."
  }
}

variable "gpus" {
  description = "GPUs the training container reserves (ECS resourceRequirements). Every type in instance_types must have at least this many; with more than one, the batch size must be divisible by it."
  type        = number
  default     = 1

  validation {
    condition     = var.gpus >= 1 && var.gpus <= 8 && floor(var.gpus) == var.gpus
    error_message = "gpus must be a whole number from 1 to 8."
  }
}

variable "training_cpu" {
  description = "CPU units reserved for the training container (1024 = one vCPU). The default leaves room for the ECS agent and the sidecar on a 4-vCPU instance."
  type        = number
  default     = 3072

  validation {
    condition     = var.training_cpu >= 256 && floor(var.training_cpu) == var.training_cpu
    error_message = "training_cpu must be a whole number of CPU units, at least 256."
  }
}

variable "training_memory" {
  description = "Memory in MiB reserved for the training container (a soft limit: it may use more when the instance has it free). The default fits a 16 GiB instance such as g4dn.xlarge."
  type        = number
  default     = 12288

  validation {
    condition     = var.training_memory >= 1024 && floor(var.training_memory) == var.training_memory
    error_message = "training_memory must be a whole number of MiB, at least 1024."
  }
}

variable "shared_memory_size" {
  description = "Size in MiB of the training container's /dev/shm. Docker's default of 64 MiB is too small for NCCL with several GPUs and for TensorFlow's input pipeline."
  type        = number
  default     = 2048

  validation {
    condition     = var.shared_memory_size >= 64 && floor(var.shared_memory_size) == var.shared_memory_size
    error_message = "shared_memory_size must be a whole number of MiB, at least 64."
  }
}

variable "model_name" {
  description = "Display name of the TF2 model zoo model train.sh fine-tunes by default (runtask.sh passes its own)."
  type        = string
  default     = "SSD MobileNet V2 FPNLite 320x320"

  validation {
    condition     = length(trimspace(var.model_name)) > 0
    error_message = "model_name must be a model zoo display name, e.g. \"SSD MobileNet V2 FPNLite 320x320\"."
  }
}

variable "records_uri" {
  description = "s3://bucket/prefix of the TFRecords (training.record, testing.record, classes.pbtxt). The task role may read everything under this prefix and nothing else of that bucket."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/]+)*/?$", var.records_uri))
    error_message = "records_uri must be s3://<bucket>[/<prefix>], e.g. s3://my-data/raccoon/records."
  }
}

variable "training_config_uri" {
  description = "s3:// URI of the training.config override train.sh merges into the model's pipeline.config. The task role may read the folder that holds it."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^/]+/)*[^/]+$", var.training_config_uri))
    error_message = "training_config_uri must be the s3:// URI of a file, e.g. s3://my-data/raccoon/configs/training.config."
  }
}

variable "hparams_uri" {
  description = "s3:// URI of the hyper-parameters JSON train.sh applies on top. The task role may read the folder that holds it."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^/]+/)*[^/]+$", var.hparams_uri))
    error_message = "hparams_uri must be the s3:// URI of a file, e.g. s3://my-data/raccoon/configs/hparams.json."
  }
}

variable "read_uris" {
  description = "More s3://bucket/prefix locations the training task may read (other datasets or config folders runtask.sh will pass)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for u in var.read_uris : can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/]+)*/?$", u))])
    error_message = "read_uris must be s3://<bucket>[/<prefix>] locations."
  }
}

variable "training_environment" {
  description = "Extra environment variables of the training container, e.g. { TFOD_NUM_GPUS = \"2\" } (see train.sh's usage text)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.training_environment) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "training_environment keys must be environment variable names."
  }
}

################################################################################
# Artifacts sidecar
################################################################################

variable "artifacts_image" {
  description = "Image of the artifacts sidecar. Empty: container_image, whose `python -m tfodkit.artifacts sync` copies the training and export directories to s3://<artifacts_bucket>/<artifacts_prefix>/runs/<run name>/. The seed's third-party sidecar stays selectable: \"m1l0/artifactsv2:latest\" with artifacts_entrypoint = [], artifacts_command = [] and its M1L0_* variables in artifacts_environment."
  type        = string
  default     = ""

  validation {
    condition     = var.artifacts_image == "" || (can(regex("^[a-z0-9][a-z0-9._/:@-]*[a-z0-9]$", var.artifacts_image)) && !can(regex("\\s", var.artifacts_image)))
    error_message = "artifacts_image must be an image reference, or empty for container_image."
  }
}

variable "artifacts_entrypoint" {
  description = "ENTRYPOINT override of the sidecar (needed because the toolkit image's own ENTRYPOINT is train.sh). []: the image's ENTRYPOINT."
  type        = list(string)
  default     = ["python", "-m", "tfodkit.artifacts"]
}

variable "artifacts_command" {
  description = "Command (arguments) of the sidecar. []: the image's CMD."
  type        = list(string)
  default     = ["sync"]
}

variable "artifacts_environment" {
  description = "Extra environment variables of the sidecar, e.g. the M1L0_* variables of m1l0/artifactsv2. They override the ARTIFACTS_* variables the sidecar gets by default."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.artifacts_environment) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "artifacts_environment keys must be environment variable names."
  }
}

variable "artifacts_sync_seconds" {
  description = "Seconds between two uploads of the sidecar (it also uploads once more on SIGTERM, before the task stops)."
  type        = number
  default     = 300

  validation {
    condition     = var.artifacts_sync_seconds >= 10 && floor(var.artifacts_sync_seconds) == var.artifacts_sync_seconds
    error_message = "artifacts_sync_seconds must be a whole number of seconds, at least 10."
  }
}

################################################################################
# Storage and logs
################################################################################

variable "create_artifacts_bucket" {
  description = "true: create the artifacts bucket (public access blocked, encrypted, versioned). false: use the existing bucket named in artifacts_bucket, whose settings terraform leaves alone."
  type        = bool
  default     = true
}

variable "artifacts_bucket" {
  description = "Name of the artifacts bucket. With create_artifacts_bucket = true, empty means a generated name starting with \"<name>-artifacts-\"; with false, the name of your existing bucket (required)."
  type        = string
  default     = ""

  validation {
    condition     = var.artifacts_bucket == "" || (can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifacts_bucket)) && !can(regex("\\.\\.|^\\d+\\.\\d+\\.\\d+\\.\\d+$|^xn--|-s3alias$", var.artifacts_bucket)))
    error_message = "artifacts_bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
  }

  validation {
    condition     = var.create_artifacts_bucket || var.artifacts_bucket != ""
    error_message = "artifacts_bucket must name your existing bucket when create_artifacts_bucket = false."
  }
}

variable "artifacts_prefix" {
  description = "Key prefix under which runs are stored (the containers' ARTIFACTS_TARGET is s3://<bucket>/<prefix>): s3://<bucket>/<prefix>/runs/<run name>/. The task role may read and write under it and nowhere else."
  type        = string
  default     = "tfodkit"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.artifacts_prefix))
    error_message = "artifacts_prefix must be a non-empty S3 key prefix without leading or trailing slashes, e.g. tfodkit or team/tfod."
  }
}

variable "artifacts_noncurrent_days" {
  description = "Days after which overwritten or deleted versions of artifacts (old checkpoints) are removed from the versioned bucket. Only for a bucket this configuration creates."
  type        = number
  default     = 30

  validation {
    condition     = var.artifacts_noncurrent_days >= 1 && floor(var.artifacts_noncurrent_days) == var.artifacts_noncurrent_days
    error_message = "artifacts_noncurrent_days must be a whole number of days, at least 1."
  }
}

variable "artifacts_force_destroy" {
  description = "Let `make destroy` delete the created artifacts bucket with everything in it (trained models included). Leave false until you have copied what you need."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the training logs. Logs cost about $0.50/GB ingested and $0.03/GB-month stored; a training run writes a few MB."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "container_insights" {
  description = "CloudWatch Container Insights for the cluster (CPU, memory, network and task metrics per cluster, task family and instance), billed as CloudWatch custom metrics: small next to the GPU instance."
  type        = bool
  default     = true
}
