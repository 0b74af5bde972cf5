"""The AWS side of the runtask and sweep tests, made in moto: what terraform/ would create.

A cluster with one GPU container instance, the task definition (the training container and its artifacts
sidecar), the log group and the buckets; and the user's side: configs.json (terraform's outputs) and an aws
profile with dummy credentials.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ACCOUNT, REGION = "123456789012", "eu-west-1"
CLUSTER, FAMILY, GROUP, PREFIX = "tfod-cluster", "tfod-training", "/ecs/tfod", "tfod"
DIRS = ["/opt/tfod/models", "/opt/tfod/experiments/training", "/opt/tfod/experiments/exported_model"]
AMI = "ami-03cf127a"  # one of moto's built-in images
BUCKETS = ("tfod-records", "tfod-configs", "tfod-artifacts")


def aws_user(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """configs.json (as `terraform output -json` writes it) and an environment with the venv first on PATH, an
    aws profile "tfod" with dummy credentials, and no AWS_* variable of the caller's."""
    outputs = {"profile": "tfod", "region": REGION, "cluster_name": CLUSTER, "task_definition": FAMILY,
               "container_name": "training", "log_group": GROUP}
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps({k: {"sensitive": False, "type": "string", "value": v}
                                   for k, v in outputs.items()}))
    (tmp_path / "aws-config").write_text(f"[profile tfod]\nregion = {REGION}\n")
    (tmp_path / "aws-credentials").write_text("[tfod]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
               AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"), AWS_EC2_METADATA_DISABLED="true")
    return configs, env


def make_world(endpoint: str, model: str, training_extra: dict | None = None) -> dict:
    """The cluster, its one g4dn.xlarge container instance, the task definition (the training container runs
    train.sh's arguments for ``model``), the log group and the buckets: {"ec2", "ecs", "logs", "s3": clients,
    "instance": its id}."""
    import boto3

    kw = {"endpoint_url": endpoint, "region_name": REGION,
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    clients = {s: boto3.client(s, **kw) for s in ("ec2", "ecs", "logs", "s3")}
    ec2, ecs = clients["ec2"], clients["ecs"]
    instance = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge")["Instances"][0]
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_container_instance(cluster=CLUSTER,
                                    instanceIdentityDocument=json.dumps({"instanceId": instance["InstanceId"]}))
    awslogs = {"logDriver": "awslogs", "options": {"awslogs-group": GROUP, "awslogs-region": REGION,
                                                   "awslogs-stream-prefix": PREFIX}}
    ecs.register_task_definition(family=FAMILY, containerDefinitions=[
        {"name": "training", "image": "tfodkit:gpu", "memory": 2048, "essential": True,
         "command": [*DIRS, "records", model, "configs/training.config", "configs/hparams.json"],
         "logConfiguration": awslogs, **(training_extra or {})},
        {"name": "artifacts", "image": "tfodkit:gpu", "memory": 256, "essential": False,
         "command": ["python", "-m", "tfodkit.artifacts", "sync"],
         "environment": [{"name": "ARTIFACTS_TARGET", "value": "s3://tfod-artifacts"}], "logConfiguration": awslogs},
    ])
    clients["logs"].create_log_group(logGroupName=GROUP)
    for bucket in BUCKETS:
        clients["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return {**clients, "instance": instance["InstanceId"]}
