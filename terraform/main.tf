provider "aws" {
  region  = var.region
  profile = var.profile != "" ? var.profile : null

  default_tags {
    tags = merge({
      Project   = "tfod-toolkit"
      Name      = var.name
      ManagedBy = "terraform"
    }, var.tags)
  }
}

data "aws_caller_identity" "current" {}

# The zones' names sort in the order AWS added them, so the first az_count of
# them stay the same when a zone is added. (No `state` filter: an impaired zone
# dropping out of the list would shift, and recreate, every subnet.)
data "aws_availability_zones" "available" {
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}
