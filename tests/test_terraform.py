"""terraform/ (the ECS GPU training cluster), checked offline.

No provider can be downloaded here, so `terraform validate/plan` of the whole
configuration cannot run. Instead:
- every .tf file is parsed with python-hcl2 and its structure checked (IAM,
  security groups, launch template, Auto Scaling group, task definition);
- variables.tf and locals.tf, which reference no resource or data source, are
  applied with the terraform binary in a temporary directory (no provider
  needed): that runs every variable validation and evaluates the values the
  task definition and the IAM policies are built from.
Every structural check is also run against a small bad configuration, to show
that it can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.conftest import ROOT

TF = ROOT / "terraform"
OPTS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

# What runtask.sh reads from configs.json (`terraform output -json`), issues 7 and 8.
RUNTASK_OUTPUTS = {"profile", "region", "cluster_name", "task_definition", "container_name", "log_group",
                   "subnets", "security_group", "artifacts_bucket"}
# train.sh's positional CLI: 5 required arguments and 2 optional ones.
TRAIN_SH_ARGS = ["models_dir", "training_dir", "exported_model_dir", "records", "model name",
                 "training.config", "hparams.json"]
# IAM actions that have no resource-level permissions: "*" is their only resource.
NO_RESOURCE_LEVEL_ACTIONS = {"ecr:GetAuthorizationToken"}
MANAGED_INSTANCE_POLICIES = {"AmazonEC2ContainerServiceforEC2Role", "AmazonSSMManagedInstanceCore"}

EXAMPLE_VALUES = {"<account id>": "123456789012", "<your data bucket>": "my-data"}


# --------------------------------------------------------------------------- parsing


def parse(text: str) -> dict[str, list]:
    return hcl2.loads(text, serialization_options=OPTS)


def merge(parsed: list[dict[str, list]]) -> dict[str, list]:
    merged: dict[str, list] = {}
    for doc in parsed:
        for key, blocks in doc.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


@pytest.fixture(scope="module")
def tf() -> dict[str, list]:
    files = sorted(TF.glob("*.tf"))
    names = {f.name for f in files}
    assert {"versions.tf", "variables.tf", "network.tf", "ecs.tf", "compute.tf", "iam.tf", "storage.tf",
            "logs.tf", "outputs.tf"} <= names
    return merge([parse(f.read_text()) for f in files])


def blocks(tf: dict, kind: str, type_: str) -> dict[str, dict]:
    """{name: body} of every `kind "type_" "name"` block (kind: resource or data)."""
    return {name: body for entry in tf.get(kind, []) for name, body in entry.get(type_, {}).items()}


def named(tf: dict, kind: str) -> dict[str, dict]:
    """{name: body} of every `variable "name"` or `output "name"` block."""
    return {name: body for entry in tf.get(kind, []) for name, body in entry.items()}


def local_values(tf: dict) -> dict:
    return {k: v for entry in tf.get("locals", []) for k, v in entry.items()}


def policy_statements(doc: dict) -> list[dict]:
    """Statements of an aws_iam_policy_document, static and dynamic."""
    statements = list(doc.get("statement", []))
    for dyn in doc.get("dynamic", []):
        if "statement" in dyn:
            statements.extend(dyn["statement"]["content"])
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def iam_problems(tf: dict) -> list[str]:
    problems = []
    documents = blocks(tf, "data", "aws_iam_policy_document")
    if not documents:
        problems.append("no aws_iam_policy_document found")
    for name, doc in documents.items():
        statements = policy_statements(doc)
        if not statements:
            problems.append(f"{name}: no statement found")
        for st in statements:
            actions = as_list(st.get("actions", []))
            if "not_actions" in st or "not_resources" in st:
                problems.append(f"{name}/{st.get('sid')}: NotAction/NotResource")
            if not actions:
                problems.append(f"{name}/{st.get('sid')}: no actions")
            for action in actions:
                if "*" in action:
                    problems.append(f"{name}/{st.get('sid')}: action {action!r}")
            resources = as_list(st.get("resources", []))
            if "*" in resources and not set(actions) <= NO_RESOURCE_LEVEL_ACTIONS:
                problems.append(f"{name}/{st.get('sid')}: resource '*' for {actions}")
    # Every policy is one of those documents: no inline JSON escapes the checks.
    for type_, attr in [("aws_iam_role", "assume_role_policy"), ("aws_iam_role_policy", "policy"),
                        ("aws_iam_policy", "policy"), ("aws_s3_bucket_policy", "policy")]:
        for name, body in blocks(tf, "resource", type_).items():
            if attr in body and not re.fullmatch(r"\$\{data\.aws_iam_policy_document\.\w+\.json\}", body[attr]):
                problems.append(f"{type_}.{name}: {attr} is not an aws_iam_policy_document")
    return problems


def ingress_problems(tf: dict) -> list[str]:
    problems = []
    open_cidrs = {"0.0.0.0/0", "::/0"}
    groups = blocks(tf, "resource", "aws_security_group")
    if not groups:
        problems.append("no aws_security_group found")
    rules = []
    for name, sg in groups.items():
        rules += [(f"aws_security_group.{name}", r) for r in sg.get("ingress", [])]
    rules += [(f"aws_vpc_security_group_ingress_rule.{n}", r)
              for n, r in blocks(tf, "resource", "aws_vpc_security_group_ingress_rule").items()]
    rules += [(f"aws_security_group_rule.{n}", r) for n, r in blocks(tf, "resource", "aws_security_group_rule").items()
              if r.get("type") == "ingress"]
    for where, rule in rules:
        cidrs = {c for key in ("cidr_blocks", "ipv6_cidr_blocks", "cidr_ipv4", "cidr_ipv6")
                 for c in as_list(rule.get(key, []))}
        if cidrs & open_cidrs or any("0.0.0.0/0" in str(c) or "::/0" in str(c) for c in cidrs):
            problems.append(f"{where}: inbound from {sorted(cidrs)}")
    return problems


def launch_template_problems(tf: dict) -> list[str]:
    problems = []
    templates = blocks(tf, "resource", "aws_launch_template")
    if not templates:
        problems.append("no aws_launch_template found")
    for name, lt in templates.items():
        meta = lt.get("metadata_options", [{}])[0]
        if meta.get("http_tokens") != "required":
            problems.append(f"{name}: IMDSv2 not required (http_tokens={meta.get('http_tokens')!r})")
        if meta.get("http_put_response_hop_limit") != 1:
            problems.append(f"{name}: IMDS hop limit {meta.get('http_put_response_hop_limit')!r}, containers reach it")
        mappings = lt.get("block_device_mappings", [])
        if not mappings:
            problems.append(f"{name}: no block_device_mappings (root volume not encrypted)")
        for mapping in mappings:
            for ebs in mapping.get("ebs", [{}]):
                if ebs.get("encrypted") is not True:
                    problems.append(f"{name}: {mapping.get('device_name')} not encrypted")
    return problems


def task_problems(tf: dict) -> list[str]:
    problems = []
    tasks = blocks(tf, "resource", "aws_ecs_task_definition")
    if len(tasks) != 1:
        return [f"expected one aws_ecs_task_definition, found {len(tasks)}"]
    (task,) = tasks.values()
    lv = local_values(tf)
    if task.get("container_definitions") != "${jsonencode([local.training_container, local.artifacts_container])}":
        problems.append(f"container_definitions: {task.get('container_definitions')!r}")
    training = lv.get("training_container", {})
    artifacts = lv.get("artifacts_container_base", {})
    expected = {
        "training name": (training.get("name"), "${local.container_names.training}"),
        "training command": (training.get("command"), "${local.training_command}"),
        "training essential": (training.get("essential"), True),
        "training GPUs": (training.get("resourceRequirements"), [{"type": "GPU", "value": "${tostring(var.gpus)}"}]),
        "TensorBoard port": ((training.get("portMappings") or [{}])[0].get("containerPort"),
                             "${local.tensorboard_port}"),
        "training volume": (training.get("mountPoints"), ["${local.work_mount}"]),
        "training logs": (training.get("logConfiguration"), "${local.log_configuration}"),
        "artifacts name": (artifacts.get("name"), "${local.container_names.artifacts}"),
        "artifacts essential": (artifacts.get("essential"), False),
        "artifacts volume": (artifacts.get("mountPoints"), ["${local.work_mount}"]),
        "artifacts logs": (artifacts.get("logConfiguration"), "${local.log_configuration}"),
        "artifacts target": ("ARTIFACTS_TARGET = local.artifacts_uri" in str(artifacts.get("environment")), True),
        "log driver": (lv.get("log_configuration", {}).get("logDriver"), "awslogs"),
        "log stream prefix": (lv.get("log_configuration", {}).get("options", {}).get("awslogs-stream-prefix"),
                              "${local.log_stream_prefix}"),
    }
    for what, (have, want) in expected.items():
        if have != want:
            problems.append(f"{what}: {have!r}, expected {want!r}")
    volumes = [v.get("name") for v in task.get("volume", [])]
    if volumes != ["${local.work_volume}"]:
        problems.append(f"task volumes {volumes}")
    return problems


# --------------------------------------------------------------------------- structure


def test_every_variable_is_typed_and_described_and_risky_ones_are_validated(tf):
    variables = named(tf, "variable")
    assert len(variables) >= 20
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(body.get("description", "")) > 20, f"variable {name} has no real description"
    for name in ("region", "instance_types", "gpus", "artifacts_bucket", "records_uri", "training_config_uri",
                 "hparams_uri", "capacity_type", "max_instances", "container_image", "profile", "name"):
        assert variables[name].get("validation"), f"variable {name} has no validation"
    assert variables["nat_gateway"]["default"] is True
    assert "$" in variables["nat_gateway"]["description"], "the NAT gateway's cost must be stated"


def test_outputs_runtask_reads_exist_and_are_described(tf):
    outputs = named(tf, "output")
    assert RUNTASK_OUTPUTS <= set(outputs), f"missing: {RUNTASK_OUTPUTS - set(outputs)}"
    for name, body in outputs.items():
        assert len(body.get("description", "")) > 10, f"output {name} has no description"
        assert "value" in body
    assert outputs["container_name"]["value"] == "${local.container_names.training}"


def test_outputs_cover_what_runtask_and_the_sidecar_read(tf):
    runtask = pytest.importorskip("tfodkit.runtask", reason="runtask.sh's module is not in this checkout yet")
    assert set(runtask.OUTPUTS) <= set(named(tf, "output"))
    artifacts_env = str(local_values(tf)["artifacts_container_base"]["environment"])
    assert f"{runtask.ARTIFACTS_ENV} = " in artifacts_env


def test_versions_are_pinned_with_pessimistic_constraints(tf):
    (terraform,) = tf["terraform"]
    assert terraform["required_version"].startswith("~>")
    aws = terraform["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws" and aws["version"].startswith("~>")
    assert not tf.get("module"), "registry modules cannot be fetched: plain resources only"


def test_iam_has_no_wildcard_action_and_no_wildcard_resource_where_an_arn_is_known(tf):
    documents = blocks(tf, "data", "aws_iam_policy_document")
    assert {"ec2_assume", "ecs_tasks_assume", "execution", "task"} <= set(documents)
    assert sum(len(policy_statements(d)) for d in documents.values()) >= 8
    assert iam_problems(tf) == []


def test_iam_check_catches_a_wildcard():
    bad = parse('data "aws_iam_policy_document" "x" {\n  statement {\n    actions = ["s3:*"]\n'
                '    resources = ["*"]\n  }\n}\nresource "aws_iam_role_policy" "y" {\n'
                '  policy = jsonencode({ Statement = [] })\n}\n')
    problems = iam_problems(bad)
    assert any("action 's3:*'" in p for p in problems)
    assert any("resource '*'" in p for p in problems)
    assert any("not an aws_iam_policy_document" in p for p in problems)


def test_task_role_reads_inputs_and_reads_and_writes_only_the_artifacts_prefix(tf):
    task = {st.get("sid"): st for st in policy_statements(blocks(tf, "data", "aws_iam_policy_document")["task"])}
    actions = sorted({a for st in task.values() for a in st["actions"]})
    assert actions == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    assert task["WriteArtifacts"]["resources"] == ["${local.artifacts_bucket_arn}/${var.artifacts_prefix}/*"]
    # a relaunched run's train.sh restores its checkpoints: read and list the artifacts prefix only
    assert task["ReadArtifacts"]["resources"] == ["${local.artifacts_bucket_arn}/${var.artifacts_prefix}/*"]
    assert task["ListArtifacts"]["condition"][0]["values"] == ["${var.artifacts_prefix}/*"]
    assert task["ListInputs${statement.key}"]["resources"] == ["${statement.value.bucket_arn}"]
    assert task["ReadInputs"]["resources"] == "${[for l in local.read_locations : l.objects_arn]}"


def test_instance_role_has_only_the_ecs_agent_and_ssm_core_policies(tf):
    attachments = blocks(tf, "resource", "aws_iam_role_policy_attachment")
    arns = [arn for body in attachments.values() for arn in body["for_each"].values()]
    assert {arn.rsplit("/", 1)[-1] for arn in arns} == MANAGED_INSTANCE_POLICIES
    assert all(body["role"] == "${aws_iam_role.instance.name}" for body in attachments.values())


def test_no_security_group_allows_inbound_from_anywhere(tf):
    egress = blocks(tf, "resource", "aws_vpc_security_group_egress_rule")
    assert egress, "the egress rules were not found: the rule parsing is broken"
    assert all(r["security_group_id"] == "${aws_security_group.instances.id}" for r in egress.values())
    assert ingress_problems(tf) == []


def test_ingress_check_catches_an_open_rule():
    bad = parse('resource "aws_security_group" "a" {\n  ingress {\n    from_port = 22\n    to_port = 22\n'
                '    protocol = "tcp"\n    cidr_blocks = ["0.0.0.0/0"]\n  }\n}\n'
                'resource "aws_vpc_security_group_ingress_rule" "b" {\n  cidr_ipv6 = "::/0"\n}\n')
    assert len(ingress_problems(bad)) == 2


def test_launch_template_requires_imdsv2_and_encrypts_volumes(tf):
    assert launch_template_problems(tf) == []
    lt = blocks(tf, "resource", "aws_launch_template")["gpu"]
    assert lt["image_id"] == "${data.aws_ssm_parameter.ecs_gpu_ami.insecure_value}"
    default = named(tf, "variable")["ami_ssm_parameter"]["default"]
    assert default.startswith("/aws/service/ecs/optimized-ami/") and "/gpu/" in default


def test_launch_template_check_catches_imdsv1_and_plain_volumes():
    bad = parse('resource "aws_launch_template" "x" {\n  metadata_options {\n    http_tokens = "optional"\n  }\n'
                '  block_device_mappings {\n    device_name = "/dev/xvda"\n    ebs {\n      volume_size = 50\n'
                '    }\n  }\n}\n')
    problems = launch_template_problems(bad)
    assert len(problems) == 3, problems


def test_autoscaling_group_scales_from_zero_over_a_list_of_gpu_types(tf):
    asg = blocks(tf, "resource", "aws_autoscaling_group")["gpu"]
    assert asg["min_size"] == 0
    assert asg["max_size"] == "${var.max_instances}"
    assert asg["vpc_zone_identifier"] == "${local.instance_subnet_ids}"
    assert asg["protect_from_scale_in"] is True
    assert "desired_capacity" not in asg
    policy = asg["mixed_instances_policy"][0]
    override = policy["launch_template"][0]["dynamic"][0]["override"]
    assert override["for_each"] == "${var.instance_types}"
    distribution = policy["instances_distribution"][0]
    assert distribution["on_demand_percentage_above_base_capacity"] == "${local.spot ? 0 : 100}"
    network = local_values(tf)["instance_subnet_ids"]
    assert network == "${var.nat_gateway ? aws_subnet.private[*].id : aws_subnet.public[*].id}"


def test_ecs_managed_scaling_is_the_clusters_default_capacity(tf):
    provider = blocks(tf, "resource", "aws_ecs_capacity_provider")["gpu"]["auto_scaling_group_provider"][0]
    assert provider["auto_scaling_group_arn"] == "${aws_autoscaling_group.gpu.arn}"
    assert provider["managed_termination_protection"] == "ENABLED"
    scaling = provider["managed_scaling"][0]
    assert scaling["status"] == "ENABLED" and scaling["target_capacity"] == 100
    cluster = blocks(tf, "resource", "aws_ecs_cluster_capacity_providers")["this"]
    strategy = cluster["default_capacity_provider_strategy"][0]
    assert strategy["capacity_provider"] == "${aws_ecs_capacity_provider.gpu.name}"


def test_network_spans_two_zones_with_an_s3_endpoint(tf):
    variables = named(tf, "variable")
    assert variables["az_count"]["default"] >= 2
    for kind in ("private", "public"):
        assert blocks(tf, "resource", "aws_subnet")[kind]["count"] == "${length(local.azs)}"
    endpoint = blocks(tf, "resource", "aws_vpc_endpoint")["s3"]
    assert endpoint["vpc_endpoint_type"] == "Gateway" and endpoint["service_name"].endswith(".s3")
    assert blocks(tf, "resource", "aws_nat_gateway")["this"]["count"] == "${var.nat_gateway ? 1 : 0}"


def test_artifacts_bucket_is_private_encrypted_and_versioned(tf):
    pab = blocks(tf, "resource", "aws_s3_bucket_public_access_block")["artifacts"]
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                        "restrict_public_buckets"))
    sse = blocks(tf, "resource", "aws_s3_bucket_server_side_encryption_configuration")["artifacts"]
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] in {"AES256", "aws:kms"}
    versioning = blocks(tf, "resource", "aws_s3_bucket_versioning")["artifacts"]
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    logs = blocks(tf, "resource", "aws_cloudwatch_log_group")["this"]
    assert logs["retention_in_days"] == "${var.log_retention_days}"


def test_task_definition_containers_match_train_sh_and_runtask_sh(tf):
    assert task_problems(tf) == []


def test_task_definition_check_catches_a_renamed_container():
    text = (TF / "ecs.tf").read_text().replace("name      = local.container_names.training",
                                               'name      = "tfod"')
    assert "tfod" in text
    problems = task_problems(parse(text))
    assert len(problems) == 1 and problems[0].startswith("training name")


# --------------------------------------------------------------------------- evaluation


def example_vars() -> str:
    text = (TF / "config.tfvars.example").read_text()
    for placeholder, value in EXAMPLE_VALUES.items():
        text = text.replace(placeholder, value)
    return text


class Probe:
    """variables.tf + locals.tf applied by the terraform binary in a temporary dir."""

    def __init__(self, path: Path):
        self.path = path
        self.env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
        for name in ("variables.tf", "locals.tf"):
            shutil.copy(TF / name, path / name)
        names = [k for entry in parse((TF / "locals.tf").read_text())["locals"] for k in entry]
        (path / "probe.tf").write_text("output \"locals\" {\n  value = {\n"
                                       + "".join(f"    {n} = local.{n}\n" for n in names) + "  }\n}\n")
        self.run("init", "-input=false", check=True)

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        out = subprocess.run(["terraform", *args, "-no-color"], cwd=self.path, env=self.env,
                             capture_output=True, text=True, timeout=120)
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def tfvars(self, text: str, **overrides) -> list[str]:
        """Variables files: the tfvars text, then the overrides (the later file wins)."""
        (self.path / "test.tfvars").write_text(text)
        (self.path / "overrides.tfvars.json").write_text(json.dumps(overrides))
        return ["-var-file=test.tfvars", "-var-file=overrides.tfvars.json"]

    def evaluate(self, text: str, **overrides) -> dict:
        self.run("apply", "-auto-approve", "-input=false", *self.tfvars(text, **overrides), check=True)
        out = self.run("output", "-json", check=True)
        return json.loads(out.stdout)["locals"]["value"]

    def error(self, text: str, **overrides) -> str:
        out = self.run("plan", "-input=false", *self.tfvars(text, **overrides))
        assert out.returncode != 0, f"{overrides} was accepted"
        return " ".join((out.stdout + out.stderr).split())


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Probe:
    if not shutil.which("terraform"):
        pytest.fail("terraform not found on PATH (needed offline for its validations; scripts/lint.sh needs it too)")
    return Probe(tmp_path_factory.mktemp("tfprobe"))


def test_example_tfvars_is_valid_and_gives_train_sh_its_seven_arguments(probe):
    values = probe.evaluate(example_vars())
    assert values["container_names"] == {"training": "training", "artifacts": "artifacts"}
    command = values["training_command"]
    assert len(command) == len(TRAIN_SH_ARGS) == 7
    assert command[:3] == ["/opt/tfod/models", "/data/training", "/data/exported_model"]
    assert command[3:] == ["s3://my-data/raccoon/records", "SSD MobileNet V2 FPNLite 320x320",
                           "s3://my-data/raccoon/configs/training.config",
                           "s3://my-data/raccoon/configs/traininghparams.json"]
    assert values["work_path"] == "/data" and all(c.startswith(values["work_path"] + "/") for c in command[1:3])
    assert values["tensorboard_port"] == 6006
    assert values["ecr_repository_arns"] == ["arn:aws:ecr:us-east-1:123456789012:repository/tfodkit"]
    assert "ECS_CLUSTER=tfod\n" in values["user_data"] and "ECS_ENABLE_GPU_SUPPORT=true" in values["user_data"]
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=false" in values["user_data"]


def test_placeholders_in_the_example_must_be_filled_in(probe):
    text = (TF / "config.tfvars.example").read_text()
    assert all(p in text for p in EXAMPLE_VALUES)
    assert "container_image must be an image reference" in probe.error(text)


def test_task_role_reads_exactly_the_input_locations(probe):
    values = probe.evaluate(example_vars(), read_uris=["s3://other-bucket"], artifacts_image="m1l0/artifactsv2:latest",
                            capacity_type="spot")
    assert values["read_locations"] == [
        {"bucket_arn": "arn:aws:s3:::my-data", "objects_arn": "arn:aws:s3:::my-data/raccoon/records/*",
         "list_prefixes": ["raccoon/records", "raccoon/records/*"]},
        {"bucket_arn": "arn:aws:s3:::my-data", "objects_arn": "arn:aws:s3:::my-data/raccoon/configs/*",
         "list_prefixes": ["raccoon/configs", "raccoon/configs/*"]},
        {"bucket_arn": "arn:aws:s3:::other-bucket", "objects_arn": "arn:aws:s3:::other-bucket/*",
         "list_prefixes": []},
    ]
    assert values["artifacts_image"] == "m1l0/artifactsv2:latest"
    assert values["ecr_repository_arns"] == ["arn:aws:ecr:us-east-1:123456789012:repository/tfodkit"]
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in values["user_data"]


def test_images_outside_ecr_need_no_ecr_permissions(probe):
    values = probe.evaluate(example_vars(), container_image="myorg/tfod:1.0", region="cn-north-1")
    assert values["ecr_repository_arns"] == []
    assert values["partition"] == "aws-cn" and values["dns_suffix"] == "amazonaws.com.cn"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"instance_types": ["t3.large"]}, "instance_types must be x86 NVIDIA GPU instance types"),
    ({"instance_types": ["g4ad.xlarge"]}, "instance_types must be x86 NVIDIA GPU instance types"),
    ({"instance_types": ["g5g.xlarge"]}, "instance_types must be x86 NVIDIA GPU instance types"),
    ({"instance_types": []}, "instance_types must list 1 to 20 distinct"),
    ({"gpus": 0}, "gpus must be a whole number from 1 to 8"),
    ({"gpus": 1.5}, "gpus must be a whole number from 1 to 8"),
    ({"region": "useast1"}, "region must look like us-east-1"),
    ({"artifacts_bucket": "My_Bucket"}, "artifacts_bucket must be a valid S3 bucket name"),
    ({"artifacts_bucket": "a..b"}, "artifacts_bucket must be a valid S3 bucket name"),
    ({"create_artifacts_bucket": False}, "artifacts_bucket must name your existing bucket"),
    ({"records_uri": "/data/records"}, "records_uri must be s3://"),
    ({"hparams_uri": "s3://my-data/"}, "hparams_uri must be the s3:// URI of a file"),
    ({"capacity_type": "reserved"}, "capacity_type must be"),
    ({"max_instances": 0}, "max_instances must be a whole number from 1 to 20"),
    ({"artifacts_prefix": "/runs/"}, "artifacts_prefix must be a non-empty S3 key prefix"),
    ({"name": "ecs-training"}, "name must be 2-23 characters"),
    ({"log_retention_days": 10}, "log_retention_days must be one of"),
])
def test_validations_reject_wrong_inputs(probe, overrides, message):
    assert message in probe.error(example_vars(), **overrides)


def test_validations_accept_other_gpu_families_and_an_existing_bucket(probe):
    values = probe.evaluate(example_vars(), instance_types=["p4d.24xlarge", "g6e.2xlarge", "p5.48xlarge"], gpus=8,
                            region="us-gov-west-1", create_artifacts_bucket=False, artifacts_bucket="team.models-1")
    assert values["partition"] == "aws-us-gov"


# --------------------------------------------------------------------------- Makefile and script


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/terraform.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def fake_terraform(tmp_path: Path, stdout: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "terraform"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\ncat <<'EOF'\n{stdout}\nEOF\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_make_targets_pass_the_tfvars_file_to_the_script():
    # Under `make test` the outer make's MAKELEVEL/MAKEFLAGS would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "-n", "--no-print-directory", "plan", "apply", "destroy", "setup",
                          "runtask-config", "TFVARS=my.tfvars"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert [line.strip() for line in out.stdout.splitlines()] == [
        "TFVARS=my.tfvars scripts/terraform.sh plan",
        "TFVARS=my.tfvars scripts/terraform.sh apply",
        "TFVARS=my.tfvars scripts/terraform.sh destroy",
        "scripts/terraform.sh setup",
        "scripts/terraform.sh runtask-config",
    ]


def test_script_rejects_an_unknown_command_and_a_missing_tfvars(tmp_path):
    out = run_script("deploy")
    assert out.returncode == 2 and out.stderr == "error: unknown command deploy (see scripts/terraform.sh --help)\n"
    missing = tmp_path / "nope.tfvars"
    out = run_script("plan", env={"TFVARS": str(missing), **fake_terraform(tmp_path, "")})
    assert out.returncode == 2  # nothing was done (README: CLI conventions)
    assert out.stderr.strip() == (f"error: {missing} not found (cp terraform/config.tfvars.example "
                                  "terraform/config.tfvars and fill it in, or set TFVARS=path)")
    assert not (tmp_path / "calls").exists()


def test_runtask_config_writes_terraform_outputs_to_configs_json(tmp_path):
    outputs = {name: {"sensitive": False, "type": "string", "value": f"v-{name}"} for name in RUNTASK_OUTPUTS}
    target = tmp_path / "configs.json"
    out = run_script("runtask-config", env={"CONFIGS": str(target), **fake_terraform(tmp_path, json.dumps(outputs))})
    assert out.returncode == 0, out.stderr
    assert json.loads(target.read_text()) == outputs
    assert (tmp_path / "calls").read_text().split() == [f"-chdir={ROOT}/terraform", "output", "-json"]


def test_runtask_config_refuses_empty_outputs_and_leaves_no_file(tmp_path):
    target = tmp_path / "configs.json"
    out = run_script("runtask-config", env={"CONFIGS": str(target), **fake_terraform(tmp_path, "{}")})
    assert out.returncode == 1
    assert out.stderr.strip() == "error: terraform has no outputs yet (run make apply first)"
    assert list(tmp_path.glob("configs.json*")) == []


def test_readme_documents_every_input_and_output(tf):
    readme = (TF / "README.md").read_text()
    for kind in ("variable", "output"):
        missing = [name for name in named(tf, kind) if f"| `{name}` |" not in readme]
        assert not missing, f"terraform/README.md does not list the {kind}s {missing}"
    for step in ("make setup", "make plan", "make apply", "make runtask-config", "make destroy"):
        assert step in readme
    assert readme.index("make setup") < readme.index("make apply") < readme.index("make runtask-config") \
        < readme.index("make destroy")
