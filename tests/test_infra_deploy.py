"""infra/template.yaml deployed: moto's CloudFormation creates the stack, over HTTP, and the
resources it made are read back through the services' own APIs.

What moto's CloudFormation cannot do is listed here with the reason, never skipped quietly:

* ``NO_MODEL``: resource types moto has no CloudFormation model for. moto reports the stack
  CREATE_COMPLETE without them. The test creates each one through its service's API from the
  template's properties, resolved against the stack moto made (``complete_stack``), so its
  references (queue ARNs, policy ARNs, the topic, service names) and its shape (botocore
  checks parameter names and types against the real API models) are checked all the same;
  what CloudFormation itself would add on AWS is not.
* ``IGNORED``: properties moto's models accept and drop. The test asserts they are still
  dropped, so a moto that starts applying one fails here and the property moves into the
  checks.

GPU scheduling, NVENC inside the container and capacity-provider scaling need a real account:
infra/README.md, "What the tests verify", says how to check them there.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fixtures import REGION, SECRET
from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml

from gpu_worker.settings import Settings

pytest_plugins = ["aws_fixtures"]
# moto warns once per resource of a type in NO_MODEL; those are listed and handled below
pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to parse .* not supported by moto's CloudFormation:UserWarning"
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
ACCOUNT = "123456789012"  # moto's account
AL2023_GPU_AMI = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
AL2_GPU_AMI = "/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/recommended/image_id"

# Resource types moto's CloudFormation (moto 5.2) has no model for, and the API call the test
# makes in their place.
NO_MODEL = {
    "AWS::SQS::QueuePolicy": "sqs SetQueueAttributes(Policy)",
    "AWS::S3::BucketPolicy": "s3 PutBucketPolicy",
    "AWS::ECS::CapacityProvider": "ecs CreateCapacityProvider",
    "AWS::ECS::ClusterCapacityProviderAssociations": "ecs PutClusterCapacityProviders",
    "AWS::ApplicationAutoScaling::ScalableTarget": "application-autoscaling RegisterScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "application-autoscaling PutScalingPolicy",
    "AWS::CloudWatch::Alarm": "cloudwatch PutMetricAlarm",
    "AWS::SNS::Subscription": "sns Subscribe",
}

# Properties moto's models accept and drop: (type, property) -> what the test does instead.
REGISTERED_AGAIN = "checked on the task definition the test registers through the ECS API"
ON_AWS_ONLY = "checked on AWS only"
IGNORED = {
    ("AWS::S3::Bucket", "PublicAccessBlockConfiguration"): ON_AWS_ONLY,
    ("AWS::S3::Bucket", "OwnershipControls"): ON_AWS_ONLY,
    ("AWS::S3::Bucket", "LifecycleConfiguration"): ON_AWS_ONLY,
    ("AWS::ECS::Cluster", "ClusterSettings"): ON_AWS_ONLY,
    ("AWS::ECS::Service", "CapacityProviderStrategy"): ON_AWS_ONLY,
    ("AWS::ECS::Service", "NetworkConfiguration"): ON_AWS_ONLY,
    ("AWS::ECS::Service", "DeploymentConfiguration"): ON_AWS_ONLY,
    ("AWS::ECS::Service", "PropagateTags"): ON_AWS_ONLY,
    ("AWS::ECS::TaskDefinition", "RequiresCompatibilities"): REGISTERED_AGAIN,
    ("AWS::ECS::TaskDefinition", "NetworkMode"): REGISTERED_AGAIN,
    ("AWS::ECS::TaskDefinition", "Cpu"): REGISTERED_AGAIN,
    ("AWS::ECS::TaskDefinition", "TaskRoleArn"): REGISTERED_AGAIN,
    ("AWS::ECS::TaskDefinition", "ExecutionRoleArn"): REGISTERED_AGAIN,
    ("AWS::ECS::TaskDefinition", "RuntimePlatform"): REGISTERED_AGAIN,
    ("AWS::ECS::TaskDefinition", "EphemeralStorage"): REGISTERED_AGAIN,
    # moto loads no AWS managed policies unless told to, and attaches nothing
    ("AWS::IAM::Role", "ManagedPolicyArns"): ON_AWS_ONLY,
}


@functools.cache
def _session() -> Any:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@functools.cache
def client(service: str, endpoint: str) -> Any:
    """One client per service from one session: a new session per client reloads botocore's
    data files, a few tenths of a second each time."""
    return _session().client(service, endpoint_url=endpoint)


def policy(document: Any) -> Any:
    """An IAM policy document as moto returns it: a dict, JSON, or (for some inline role
    policies created through CloudFormation) the Python repr of the dict."""
    if isinstance(document, str):
        try:
            return json.loads(document)
        except json.JSONDecodeError:
            return ast.literal_eval(document)
    return document


# ------------------------------------------------------------------ intrinsic functions


@dataclass
class Resolver:
    """Evaluates the template's intrinsic functions against a stack moto created.

    ``physical`` maps logical ids to what ``Ref`` returns; ``getatt`` answers ``Fn::GetAtt``
    from the live resources. Unknown functions or attributes fail the test: they would be
    resolved wrongly, not skipped."""

    template: Mapping[str, Any]
    params: dict[str, Any]
    physical: dict[str, str]
    getatt: Any
    pseudo: dict[str, str] = field(default_factory=dict)

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.physical[name]

    def condition(self, expr: Any) -> bool:
        if isinstance(expr, str):
            return self.condition(self.template["Conditions"][expr])
        ((fn, args),) = expr.items()
        if fn == "Condition":
            return self.condition(args)
        if fn == "Fn::Equals":
            left, right = (self.value(a) for a in args)
            return str(left) == str(right)
        if fn == "Fn::Not":
            return not self.condition(args[0])
        if fn == "Fn::And":
            return all(self.condition(a) for a in args)
        if fn == "Fn::Or":
            return any(self.condition(a) for a in args)
        raise AssertionError(f"condition function {fn} is not handled here")

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                resource, attribute = name.split(".", 1)
                return str(self.getatt(resource, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def value(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return self.getatt(*arg)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.value(when_true if self.condition(name) else when_false)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                return self.sub(arg[0], {k: self.value(v) for k, v in arg[1].items()})
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
            if key == "Fn::Base64":
                return self.value(arg)
            if key.startswith("Fn::"):
                raise AssertionError(f"{key} is not handled here")
        return {k: self.value(v) for k, v in value.items()}


# ------------------------------------------------------------------ the deployment


@dataclass
class Stack:
    """A stack moto created from infra/template.yaml, plus what the test completed."""

    name: str
    endpoint: str
    template: dict[str, Any]
    params: dict[str, Any]
    resolver: Resolver
    created_by_moto: set[str]
    completed: dict[str, str]  # logical id -> what the test made in moto's place
    registered: dict[str, str]  # task definition -> the ARN the test registered in full
    secret_arn: str
    outputs: dict[str, str]

    def client(self, service: str) -> Any:
        return client(service, self.endpoint)

    @property
    def physical(self) -> dict[str, str]:
        return self.resolver.physical

    def props(self, logical: str) -> Any:
        return self.resolver.value(self.template["Resources"][logical].get("Properties", {}))


def _template() -> dict[str, Any]:
    return cfn_yaml.loads(TEMPLATE_PATH.read_text(), str(TEMPLATE_PATH))


def _parameter_values(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    """What each parameter's Ref gives: the value passed, else the default; lists split."""
    values: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        raw = given.get(name, spec.get("Default"))
        if spec["Type"].startswith("AWS::SSM::Parameter::Value"):
            continue  # resolved by CloudFormation: read back from the launch template
        # CloudFormation hands every parameter over as a string (or a list of strings)
        if spec["Type"].startswith("List<") or spec["Type"] == "CommaDelimitedList":
            values[name] = [item for item in str(raw).split(",") if item]
        else:
            values[name] = str(raw)
    return values


def _getatt(endpoint: str, physical: Mapping[str, str], types: Mapping[str, str]) -> Any:
    def getatt(logical: str, attribute: str) -> str:
        kind, ident = types[logical], physical[logical]
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            attrs = client("sqs", endpoint).get_queue_attributes(
                QueueUrl=ident, AttributeNames=["QueueArn"]
            )
            return str(attrs["Attributes"]["QueueArn"])
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return ident.rsplit("/", 1)[-1]
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{ident}"
        if kind == "AWS::ECS::Service" and attribute == "Name":
            return ident.rsplit("/", 1)[-1]
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return str(client("iam", endpoint).get_role(RoleName=ident)["Role"]["Arn"])
        raise AssertionError(f"Fn::GetAtt {logical}.{attribute} is not handled here")

    return getatt


def _lower_first(value: Any) -> Any:
    """CloudFormation's ECS properties (PascalCase) as the ECS API's (camelCase)."""
    if isinstance(value, list):
        return [_lower_first(v) for v in value]
    if isinstance(value, Mapping):
        return {k[0].lower() + k[1:]: _lower_first(v) for k, v in value.items()}
    return value


def complete_stack(stack: Stack) -> None:
    """Create, through the service APIs, the resources moto's CloudFormation skipped."""
    resources = stack.template["Resources"]
    targets: dict[str, dict[str, Any]] = {}
    for logical, resource in resources.items():
        kind = resource["Type"]
        if kind == "AWS::ECS::TaskDefinition":
            # moto keeps the containers but drops the task-level properties (IGNORED)
            definition = _lower_first(stack.props(logical))
            if "ephemeralStorage" in definition:
                size = definition["ephemeralStorage"]["sizeInGiB"]
                definition["ephemeralStorage"] = {"sizeInGiB": int(size)}
            registered = stack.client("ecs").register_task_definition(**definition)
            stack.registered[logical] = registered["taskDefinition"]["taskDefinitionArn"]
            continue
        if logical in stack.created_by_moto or kind not in NO_MODEL:
            continue
        if "Condition" in resource and not stack.resolver.condition(resource["Condition"]):
            continue
        props = stack.props(logical)
        if kind == "AWS::SQS::QueuePolicy":
            for url in props["Queues"]:
                stack.client("sqs").set_queue_attributes(
                    QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
                )
            made = ",".join(props["Queues"])
        elif kind == "AWS::S3::BucketPolicy":
            stack.client("s3").put_bucket_policy(
                Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"])
            )
            made = props["Bucket"]
        elif kind == "AWS::ECS::CapacityProvider":
            made = f"{stack.name}-{logical}"
            stack.client("ecs").create_capacity_provider(
                name=made, autoScalingGroupProvider=_lower_first(props["AutoScalingGroupProvider"])
            )
        elif kind == "AWS::ECS::ClusterCapacityProviderAssociations":
            stack.client("ecs").put_cluster_capacity_providers(
                cluster=props["Cluster"],
                capacityProviders=props["CapacityProviders"],
                defaultCapacityProviderStrategy=_lower_first(
                    props["DefaultCapacityProviderStrategy"]
                ),
            )
            made = props["Cluster"]
        elif kind == "AWS::ApplicationAutoScaling::ScalableTarget":
            target = {
                "ServiceNamespace": props["ServiceNamespace"],
                "ResourceId": props["ResourceId"],
                "ScalableDimension": props["ScalableDimension"],
            }
            stack.client("application-autoscaling").register_scalable_target(
                **target,
                MinCapacity=int(props["MinCapacity"]),
                MaxCapacity=int(props["MaxCapacity"]),
            )
            # Ref of a scalable target: resource id|dimension|namespace
            made = "|".join(
                target[k] for k in ("ResourceId", "ScalableDimension", "ServiceNamespace")
            )
            targets[made] = target
        elif kind == "AWS::ApplicationAutoScaling::ScalingPolicy":
            config_keys = (
                "TargetTrackingScalingPolicyConfiguration",
                "StepScalingPolicyConfiguration",
            )
            config = {k: _numbers(props[k]) for k in config_keys if k in props}
            made = stack.client("application-autoscaling").put_scaling_policy(
                PolicyName=props["PolicyName"],
                PolicyType=props["PolicyType"],
                **targets[props["ScalingTargetId"]],
                **config,
            )["PolicyARN"]
        elif kind == "AWS::CloudWatch::Alarm":
            made = f"{stack.name}-{logical}"
            stack.client("cloudwatch").put_metric_alarm(
                AlarmName=made, **{**props, "Threshold": float(props["Threshold"])}
            )
        elif kind == "AWS::SNS::Subscription":
            made = stack.client("sns").subscribe(
                TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"]
            )["SubscriptionArn"]
        else:  # pragma: no cover - NO_MODEL and this function are kept in step
            raise AssertionError(kind)
        stack.physical[logical] = made
        stack.completed[logical] = made


def _numbers(value: Any) -> Any:
    """Parameter values arrive as strings; the API wants numbers where the template has them."""
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, Mapping):
        return {k: float(v) if k == "TargetValue" else _numbers(v) for k, v in value.items()}
    return value


def deploy(endpoint: str, **given: str) -> Stack:
    """Create the secret as infra/deploy.sh does, then the stack, through moto's server."""
    name = f"gw-{uuid.uuid4().hex[:8]}"
    ec2 = client("ec2", endpoint)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    secret_arn = client("secretsmanager", endpoint).create_secret(
        Name=f"{name}/webhook-secret", SecretString=SECRET
    )["ARN"]
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    parameters = {
        "GpuImageUri": f"{registry}/{name}/cuda:0123456789ab",
        "CpuImageUri": f"{registry}/{name}/cpu:0123456789ab",
        "AdotImage": _pins()["ADOT_IMAGE"],
        "VpcId": vpc["VpcId"],
        "SubnetIds": ",".join(s["SubnetId"] for s in subnets["Subnets"][:3]),
        "WebhookUrl": "https://api.example.com/render-hooks",
        "WebhookSecretArn": secret_arn,
        "GpuInstanceTypes": "g4dn.xlarge,g5.xlarge,g6.xlarge",
        "AlarmEmail": "ops@example.com",
        **given,
    }
    cloudformation = client("cloudformation", endpoint)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE_PATH.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    physical = {
        s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries if s["LogicalResourceId"]
    }
    template = _template()
    types = {logical: r["Type"] for logical, r in template["Resources"].items()}
    resolver = Resolver(
        template,
        _parameter_values(template, parameters),
        dict(physical),
        _getatt(endpoint, physical, types),
        pseudo={
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": name,
            "AWS::Partition": "aws",
            "AWS::NoValue": "",
        },
    )
    stack = Stack(
        name=name,
        endpoint=endpoint,
        template=template,
        params=resolver.params,
        resolver=resolver,
        created_by_moto=set(physical),
        completed={},
        registered={},
        secret_arn=secret_arn,
        outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
    )
    complete_stack(stack)
    return stack


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "infra" / "images.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> Iterator[Stack]:
    """The default shape: AL2023 GPU AMI, one GPU task always on, a bucket created."""
    yield deploy(moto_endpoint)


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def _containers(stack: Stack, logical: str) -> dict[str, dict[str, Any]]:
    task = stack.client("ecs").describe_task_definition(taskDefinition=stack.physical[logical])
    return {c["name"]: c for c in task["taskDefinition"]["containerDefinitions"]}


def _queue_arn(stack: Stack, logical: str) -> str:
    return str(stack.resolver.getatt(logical, "Arn"))


# ------------------------------------------------------------------ what moto did and did not do


def test_moto_creates_every_resource_but_the_listed_types(stack: Stack) -> None:
    wanted = {
        logical
        for logical, r in stack.template["Resources"].items()
        if "Condition" not in r or stack.resolver.condition(r["Condition"])
    }
    not_created = wanted - stack.created_by_moto
    types = {stack.template["Resources"][logical]["Type"] for logical in not_created}
    assert types == set(NO_MODEL), "update NO_MODEL (and infra/README.md) to what moto lacks"
    # ... and the test made every one of them through the service's API instead
    assert set(stack.completed) == not_created


def dropped_by_moto(stack: Stack) -> set[tuple[str, str]]:
    """The template's properties that the resources moto created do not show."""
    s3, ecs, iam = stack.client("s3"), stack.client("ecs"), stack.client("iam")
    dropped: set[tuple[str, str]] = set()

    def drop(kind: str, prop: str, missing: bool) -> None:
        if missing:
            dropped.add((kind, prop))

    bucket = stack.physical["OutputBucket"]
    for prop, read in (
        ("PublicAccessBlockConfiguration", s3.get_public_access_block),
        ("OwnershipControls", s3.get_bucket_ownership_controls),
        ("LifecycleConfiguration", s3.get_bucket_lifecycle_configuration),
    ):
        try:
            read(Bucket=bucket)
        except ClientError:
            dropped.add(("AWS::S3::Bucket", prop))
    cluster = stack.physical["Cluster"]
    (described,) = ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"]
    insights = {"name": "containerInsights", "value": "enabled"}
    drop("AWS::ECS::Cluster", "ClusterSettings", insights not in described.get("settings", []))
    gpu, cpu = ecs.describe_services(
        cluster=cluster, services=[stack.physical["GpuService"], stack.physical["CpuService"]]
    )["services"]
    service = "AWS::ECS::Service"
    drop(service, "CapacityProviderStrategy", not gpu.get("capacityProviderStrategy"))
    drop(service, "NetworkConfiguration", "awsvpcConfiguration" not in cpu["networkConfiguration"])
    breaker = gpu.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker")
    drop(service, "DeploymentConfiguration", breaker is None)
    drop(service, "PropagateTags", gpu.get("propagateTags") != "SERVICE")
    task = ecs.describe_task_definition(taskDefinition=stack.physical["CpuTaskDefinition"])[
        "taskDefinition"
    ]
    definition = "AWS::ECS::TaskDefinition"
    drop(definition, "RequiresCompatibilities", task.get("requiresCompatibilities") != ["FARGATE"])
    drop(definition, "NetworkMode", task["networkMode"] != "awsvpc")
    for prop in ("Cpu", "TaskRoleArn", "ExecutionRoleArn", "RuntimePlatform", "EphemeralStorage"):
        drop(definition, prop, prop[0].lower() + prop[1:] not in task)
    attached = iam.list_attached_role_policies(RoleName=stack.physical["TaskExecutionRole"])
    drop("AWS::IAM::Role", "ManagedPolicyArns", not attached["AttachedPolicies"])
    return dropped


def test_moto_drops_exactly_the_listed_properties(stack: Stack) -> None:
    assert dropped_by_moto(stack) == set(IGNORED), (
        "update IGNORED (and infra/README.md) to what moto drops"
    )


# ------------------------------------------------------------------ queues, bucket, secret


def test_job_queue_redrives_to_the_dead_letter_queue(stack: Stack) -> None:
    sqs = stack.client("sqs")
    job = sqs.get_queue_attributes(QueueUrl=stack.physical["JobQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    dlq = sqs.get_queue_attributes(
        QueueUrl=stack.physical["DeadLetterQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert json.loads(job["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq["QueueArn"],
        "maxReceiveCount": 5,
    }
    assert (job["VisibilityTimeout"], job["ReceiveMessageWaitTimeSeconds"]) == ("120", "20")
    assert dlq["MessageRetentionPeriod"] == "1209600"
    assert "RedrivePolicy" not in dlq
    hooks, dead_hooks = (
        sqs.get_queue_attributes(QueueUrl=stack.physical[name], AttributeNames=["All"])[
            "Attributes"
        ]
        for name in ("WebhookQueue", "WebhookDeadLetterQueue")
    )
    assert json.loads(hooks["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_hooks["QueueArn"],
        "maxReceiveCount": 500,
    }
    queues = (job, dlq, hooks, dead_hooks)
    for attrs in queues:
        assert attrs["SqsManagedSseEnabled"] == "true"
        (deny,) = json.loads(attrs["Policy"])["Statement"]
        assert (deny["Effect"], deny["Action"]) == ("Deny", "sqs:*")
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert sorted(deny["Resource"]) == sorted(q["QueueArn"] for q in queues)
    assert stack.outputs["QueueUrl"] == stack.physical["JobQueue"]
    assert stack.outputs["DeadLetterQueueUrl"] == stack.physical["DeadLetterQueue"]
    assert stack.outputs["WebhookDeadLetterQueueUrl"] == stack.physical["WebhookDeadLetterQueue"]


def test_bucket_is_encrypted_and_tls_only(stack: Stack) -> None:
    s3 = stack.client("s3")
    bucket = stack.physical["OutputBucket"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (deny,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert (deny["Effect"], deny["Action"]) == ("Deny", "s3:*")
    assert deny["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert stack.outputs["OutputBucket"] == stack.outputs["InputBucket"] == bucket


def test_secret_reaches_the_worker_only_by_reference(stack: Stack) -> None:
    secrets = stack.client("secretsmanager")
    assert secrets.describe_secret(SecretId=stack.secret_arn)["ARN"] == stack.secret_arn
    secret_value = secrets.get_secret_value(SecretId=stack.secret_arn)["SecretString"]
    for task in ("GpuTaskDefinition", "CpuTaskDefinition"):
        containers = _containers(stack, task)
        assert containers["worker"]["secrets"] == [
            {"name": "WEBHOOK_SECRET", "valueFrom": stack.secret_arn}
        ]
        for container in containers.values():
            assert secret_value not in json.dumps(container["environment"])
    # only the execution role (which ECS uses to inject it) may read it
    iam = stack.client("iam")
    execution = iam.get_role_policy(
        RoleName=stack.physical["TaskExecutionRole"], PolicyName="secrets"
    )
    by_sid = {s["Sid"]: s for s in policy(execution["PolicyDocument"])["Statement"]}
    assert by_sid["WebhookSecret"]["Resource"] == stack.secret_arn
    parameter = stack.client("ssm").get_parameter(Name=stack.physical["CollectorConfig"])
    assert by_sid["CollectorConfig"]["Resource"] == parameter["Parameter"]["ARN"]


# ------------------------------------------------------------------ IAM


def test_task_role_grants_exactly_its_queue_prefixes_cluster_and_telemetry(stack: Stack) -> None:
    iam = stack.client("iam")
    bucket = stack.physical["OutputBucket"]
    document = iam.get_role_policy(RoleName=stack.physical["WorkerTaskRole"], PolicyName="worker")
    resources = {s["Sid"]: s["Resource"] for s in policy(document["PolicyDocument"])["Statement"]}
    telemetry = iam.get_role(RoleName=stack.physical["TelemetryRole"])["Role"]
    assert resources == {
        "ReadInputs": f"arn:aws:s3:::{bucket}/inputs/*",
        "ListInputs": f"arn:aws:s3:::{bucket}",
        "WriteOutputs": f"arn:aws:s3:::{bucket}/renders/*",
        "ConsumeJobQueue": _queue_arn(stack, "JobQueue"),
        "DeliverWebhooks": _queue_arn(stack, "WebhookQueue"),
        "DeadLetterWebhooks": _queue_arn(stack, "WebhookDeadLetterQueue"),
        "TaskScaleInProtection": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{stack.name}/*",
        "ExportTelemetry": telemetry["Arn"],
    }
    worker_arn = iam.get_role(RoleName=stack.physical["WorkerTaskRole"])["Role"]["Arn"]
    (trust,) = policy(telemetry["AssumeRolePolicyDocument"])["Statement"]
    assert trust["Principal"] == {"AWS": worker_arn}
    exported = iam.get_role_policy(RoleName=telemetry["RoleName"], PolicyName="telemetry")
    emf = {s["Sid"]: s for s in policy(exported["PolicyDocument"])["Statement"]}["EmfMetrics"]
    assert f"log-group:/ecs/{stack.name}/metrics" in emf["Resource"][0]
    profile = iam.get_instance_profile(InstanceProfileName=stack.physical["GpuInstanceProfile"])
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [
        stack.physical["GpuInstanceRole"]
    ]
    producer = iam.get_policy(PolicyArn=stack.physical["JobProducerPolicy"])["Policy"]
    assert stack.outputs["JobProducerPolicyArn"] == producer["Arn"]


# ------------------------------------------------------------------ ECS


def test_gpu_instances_boot_the_al2023_gpu_ami_into_the_cluster(stack: Stack) -> None:
    ec2 = stack.client("ec2")
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=stack.physical["GpuLaunchTemplate"]
    )
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    al2023 = stack.client("ssm").get_parameter(Name=AL2023_GPU_AMI)["Parameter"]["Value"]
    assert data["ImageId"] == al2023
    user_data = base64.b64decode(data["UserData"]).decode()
    for line in (
        f"ECS_CLUSTER={stack.name}",
        "ECS_ENABLE_GPU_SUPPORT=true",
        "ECS_CONTAINER_STOP_TIMEOUT=120s",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
    ):
        assert line in user_data.splitlines()
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (group,) = stack.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[stack.physical["GpuAutoScalingGroup"]]
    )["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"]) == (0, 4)
    assert group["NewInstancesProtectedFromScaleIn"] is True
    (override,) = group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert override["InstanceRequirements"]["AllowedInstanceTypes"] == [
        "g4dn.xlarge",
        "g5.xlarge",
        "g6.xlarge",
    ]
    # the capacity provider (made by the test, see NO_MODEL) scales that group
    ecs = stack.client("ecs")
    provider = stack.physical["GpuCapacityProvider"]
    (described,) = ecs.describe_capacity_providers(capacityProviders=[provider])[
        "capacityProviders"
    ]
    asg = described["autoScalingGroupProvider"]
    assert asg["autoScalingGroupArn"] in (
        group["AutoScalingGroupName"],
        group["AutoScalingGroupARN"],
    )
    assert asg["managedTerminationProtection"] == "ENABLED"
    (cluster,) = ecs.describe_clusters(clusters=[stack.physical["Cluster"]])["clusters"]
    assert cluster["clusterName"] == stack.name == stack.outputs["ClusterName"]
    assert set(cluster["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT", provider}


def test_gpu_task_definition(stack: Stack) -> None:
    containers = _containers(stack, "GpuTaskDefinition")
    task = stack.client("ecs").describe_task_definition(
        taskDefinition=stack.registered["GpuTaskDefinition"]
    )["taskDefinition"]
    iam = stack.client("iam")
    roles = {
        logical: iam.get_role(RoleName=stack.physical[logical])["Role"]["Arn"]
        for logical in ("WorkerTaskRole", "TaskExecutionRole")
    }
    assert (task["taskRoleArn"], task["executionRoleArn"]) == (
        roles["WorkerTaskRole"],
        roles["TaskExecutionRole"],
    )
    assert task["networkMode"] == "bridge"
    assert task["requiresCompatibilities"] == ["EC2"]
    assert (task["cpu"], task["memory"]) == ("3584", "12288")
    # the containers moto's CloudFormation registered and those registered in full agree
    assert {c["name"]: c for c in task["containerDefinitions"]} == containers
    worker = containers["worker"]
    assert worker["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert worker["stopTimeout"] == 120
    assert worker["image"] == stack.params["GpuImageUri"]
    assert worker["links"] == ["otel-collector"]
    assert _env(worker) == {
        "SQS_QUEUE_URL": stack.physical["JobQueue"],
        "AWS_DEFAULT_REGION": REGION,
        "WEBHOOK_URL": "https://api.example.com/render-hooks",
        "GPU_WORKER_WEBHOOK_QUEUE_URL": stack.physical["WebhookQueue"],
        "GPU_WORKER_WEBHOOK_DEAD_LETTER_URL": stack.physical["WebhookDeadLetterQueue"],
        "GPU_WORKER_ALLOWED_BUCKETS": stack.physical["OutputBucket"],
        "GPU_WORKER_CONCURRENCY": "2",
        "GPU_WORKER_STOP_DEADLINE": "100",
        "GPU_WORKER_SCRATCH_DIR": "/scratch",
        "GPU_WORKER_ENCODER": "nvenc",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility,video",
        "OTEL_SERVICE_NAME": "gpu-worker",
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={stack.name},gpu_worker.pool=gpu",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
    }
    assert worker["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{stack.name}/gpu"
    _check_collector(stack, containers["otel-collector"], "gpu")


def test_fargate_task_definition(stack: Stack) -> None:
    containers = _containers(stack, "CpuTaskDefinition")
    task = stack.client("ecs").describe_task_definition(
        taskDefinition=stack.registered["CpuTaskDefinition"]
    )["taskDefinition"]
    assert task["networkMode"] == "awsvpc"
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert (task["cpu"], task["memory"]) == ("4096", "8192")
    assert task["ephemeralStorage"] == {"sizeInGiB": 50}
    assert task["runtimePlatform"] == {
        "cpuArchitecture": "X86_64",
        "operatingSystemFamily": "LINUX",
    }
    worker = containers["worker"]
    assert "resourceRequirements" not in worker
    assert worker["stopTimeout"] == 120
    assert worker["image"] == stack.params["CpuImageUri"]
    env = _env(worker)
    assert env["SQS_QUEUE_URL"] == stack.physical["JobQueue"]
    assert env["GPU_WORKER_ENCODER"] == "x264"
    assert env["GPU_WORKER_CONCURRENCY"] == "1"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert env["OTEL_RESOURCE_ATTRIBUTES"].endswith("gpu_worker.pool=cpu")
    assert "NVIDIA_DRIVER_CAPABILITIES" not in env
    _check_collector(stack, containers["otel-collector"], "cpu")


@pytest.mark.parametrize("task", ["GpuTaskDefinition", "CpuTaskDefinition"])
def test_worker_accepts_the_environment_ecs_gives_it(stack: Stack, task: str) -> None:
    # What the worker container starts with: its environment plus the secret ECS injects.
    worker = _containers(stack, task)["worker"]
    secret = stack.client("secretsmanager").get_secret_value(SecretId=stack.secret_arn)
    env = {**_env(worker), "WEBHOOK_SECRET": secret["SecretString"]}
    # every variable is one the worker reads, or the OpenTelemetry SDK's / NVIDIA runtime's
    unknown = {
        name
        for name in env
        if name not in Settings.variables() and not name.startswith(("OTEL_", "NVIDIA_"))
    }
    assert unknown == set()
    settings = Settings.from_env(env).require_serving()
    assert settings.queue_url == stack.physical["JobQueue"]
    assert settings.allowed_buckets is not None
    assert stack.physical["OutputBucket"] in settings.allowed_buckets
    assert settings.encoder == ("nvenc" if task == "GpuTaskDefinition" else "x264")
    assert settings.stop_deadline < worker["stopTimeout"]


def _check_collector(stack: Stack, collector: Mapping[str, Any], prefix: str) -> None:
    assert collector["image"] == _pins()["ADOT_IMAGE"]
    assert collector["essential"] is False
    assert collector["environment"] == []
    assert collector["secrets"] == [
        {"name": "AOT_CONFIG_CONTENT", "valueFrom": stack.physical["CollectorConfig"]}
    ]
    options = collector["logConfiguration"]["options"]
    assert (options["awslogs-group"], options["awslogs-stream-prefix"]) == (
        f"/ecs/{stack.name}/otel-collector",
        prefix,
    )
    config = stack.client("ssm").get_parameter(Name=stack.physical["CollectorConfig"])
    telemetry = stack.client("iam").get_role(RoleName=stack.physical["TelemetryRole"])["Role"]
    text = config["Parameter"]["Value"]
    assert f"role_arn: {telemetry['Arn']}" in text
    assert f"log_group_name: /ecs/{stack.name}/metrics" in text


def test_services_and_their_scaling(stack: Stack) -> None:
    ecs = stack.client("ecs")
    services = {
        s["serviceName"]: s
        for s in ecs.describe_services(
            cluster=stack.physical["Cluster"],
            services=[stack.physical["GpuService"], stack.physical["CpuService"]],
        )["services"]
    }
    gpu, cpu = services[f"{stack.name}-gpu"], services[f"{stack.name}-cpu"]
    assert (gpu["desiredCount"], cpu["desiredCount"]) == (1, 0)  # AlwaysOnService=gpu
    assert gpu["taskDefinition"] == stack.physical["GpuTaskDefinition"]
    assert cpu["taskDefinition"] == stack.physical["CpuTaskDefinition"]
    autoscaling = stack.client("application-autoscaling")
    targets = {
        t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"])
        for t in autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    }
    assert targets[f"service/{stack.name}/{stack.name}-gpu"] == (1, 4)
    assert targets[f"service/{stack.name}/{stack.name}-cpu"] == (0, 10)
    policies = {
        p["PolicyName"]: p
        for p in autoscaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
        if p["PolicyName"].startswith(f"{stack.name}-")
    }
    assert sorted(policies) == sorted(
        f"{stack.name}-{n}"
        for n in ("gpu-backlog-per-task", "cpu-excess-backlog-per-task", "gpu-wake", "cpu-fallback")
    )
    tracking = policies[f"{stack.name}-gpu-backlog-per-task"][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    assert tracking["TargetValue"] == 4.0
    dims = [
        d
        for m in tracking["CustomizedMetricSpecification"]["Metrics"]
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
    ]
    queue_name = stack.physical["JobQueue"].rsplit("/", 1)[-1]
    assert {"Name": "QueueName", "Value": queue_name} in dims
    assert {"Name": "ServiceName", "Value": f"{stack.name}-gpu"} in dims


def test_alarms_point_at_the_real_queues_topic_and_policies(stack: Stack) -> None:
    alarms = {
        a["AlarmName"].removeprefix(f"{stack.name}-"): a
        for a in stack.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{stack.name}-")[
            "MetricAlarms"
        ]
    }
    assert sorted(alarms) == [
        "CpuFallbackAlarm",
        "DeadLetterQueueNotEmptyAlarm",
        "GpuWakeAlarm",
        "OldestMessageAgeAlarm",
        "WebhookDeadLetterAlarm",
    ]
    topic = stack.physical["AlarmTopic"]
    webhook_dlq = stack.physical["WebhookDeadLetterQueue"].rsplit("/", 1)[-1]
    dead_webhooks = alarms["WebhookDeadLetterAlarm"]
    assert dead_webhooks["Dimensions"] == [{"Name": "QueueName", "Value": webhook_dlq}]
    assert dead_webhooks["AlarmActions"] == dead_webhooks["OKActions"] == [topic]
    dlq_name = stack.physical["DeadLetterQueue"].rsplit("/", 1)[-1]
    dead_letters = alarms["DeadLetterQueueNotEmptyAlarm"]
    assert dead_letters["Dimensions"] == [{"Name": "QueueName", "Value": dlq_name}]
    assert dead_letters["AlarmActions"] == dead_letters["OKActions"] == [topic]
    oldest = alarms["OldestMessageAgeAlarm"]
    assert oldest["Threshold"] == 900.0 and oldest["AlarmActions"] == [topic]
    assert alarms["GpuWakeAlarm"]["AlarmActions"] == [stack.physical["GpuWakeScaling"]]
    assert alarms["CpuFallbackAlarm"]["AlarmActions"] == [stack.physical["CpuFallbackScaling"]]
    (expression,) = [m for m in alarms["CpuFallbackAlarm"]["Metrics"] if m.get("ReturnData")]
    assert "> 180" in expression["Expression"]  # FallbackAfterSeconds, substituted
    subscriptions = stack.client("sns").list_subscriptions_by_topic(TopicArn=topic)
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions["Subscriptions"]] == [
        ("email", "ops@example.com")
    ]
    assert stack.outputs["AlarmTopicArn"] == topic


def test_log_groups_exist_with_retention(stack: Stack) -> None:
    groups = stack.client("logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{stack.name}/")
    assert {(g["logGroupName"], g.get("retentionInDays")) for g in groups["logGroups"]} == {
        (f"/ecs/{stack.name}/{suffix}", 30)
        for suffix in ("gpu", "cpu", "otel-collector", "metrics")
    }
    dashboard = stack.client("cloudwatch").get_dashboard(DashboardName=f"{stack.name}-gpu-worker")
    body = json.loads(dashboard["DashboardBody"])
    assert stack.physical["JobQueue"].rsplit("/", 1)[-1] in json.dumps(body)


# ------------------------------------------------------------------ the other shape


def test_cpu_always_on_with_existing_buckets_and_the_al2_ami(moto_endpoint: str) -> None:
    """AlwaysOnService=cpu, buckets given (none created), the AL2 GPU AMI selected."""
    s3 = client("s3", moto_endpoint)
    out_bucket, in_bucket = (f"gw-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("out", "in"))
    for bucket in (out_bucket, in_bucket):
        s3.create_bucket(Bucket=bucket)
    stack = deploy(
        moto_endpoint,
        AlwaysOnService="cpu",
        OutputBucketName=out_bucket,
        InputBucketName=in_bucket,
        GpuAmiId=AL2_GPU_AMI,
        AlarmEmail="",
    )
    assert "OutputBucket" not in stack.created_by_moto
    assert "OutputBucketTlsOnlyPolicy" not in stack.completed
    assert "AlarmEmailSubscription" not in stack.completed
    with pytest.raises(Exception, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=out_bucket)
    services = stack.client("ecs").describe_services(
        cluster=stack.physical["Cluster"],
        services=[stack.physical["GpuService"], stack.physical["CpuService"]],
    )["services"]
    assert [s["desiredCount"] for s in services] == [0, 1]
    env = _env(_containers(stack, "CpuTaskDefinition")["worker"])
    assert env["GPU_WORKER_ALLOWED_BUCKETS"] == f"{out_bucket},{in_bucket}"
    document = stack.client("iam").get_role_policy(
        RoleName=stack.physical["WorkerTaskRole"], PolicyName="worker"
    )
    resources = {s["Sid"]: s["Resource"] for s in policy(document["PolicyDocument"])["Statement"]}
    assert resources["ReadInputs"] == f"arn:aws:s3:::{in_bucket}/inputs/*"
    assert resources["WriteOutputs"] == f"arn:aws:s3:::{out_bucket}/renders/*"
    versions = stack.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=stack.physical["GpuLaunchTemplate"]
    )
    image = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"]
    assert image == stack.client("ssm").get_parameter(Name=AL2_GPU_AMI)["Parameter"]["Value"]


# ------------------------------------------------------------------ deploy.sh --dry-run


def test_deploy_dry_run_prints_the_change_set_and_changes_nothing(
    moto_endpoint: str, tmp_path: Path
) -> None:
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed: infra/deploy.sh needs it")
    name = f"gw-dry-{uuid.uuid4().hex[:8]}"
    cloudformation = client("cloudformation", moto_endpoint)
    secrets = client("secretsmanager", moto_endpoint)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "IMAGE_TAG": "0123456789ab",
    }
    proc = subprocess.run(
        [str(ROOT / "infra" / "deploy.sh"), "--dry-run", name, "GpuMaxTasks=8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # the change set: every resource of a new stack, as an Add
    rows = re.findall(r"^(\w+) +(\w+) +(AWS::[\w:]+) ", proc.stdout, flags=re.MULTILINE)
    listed = {logical: (action, kind) for action, logical, kind in rows}
    resources = _template()["Resources"]
    assert listed == {logical: ("Add", r["Type"]) for logical, r in resources.items()}
    # the resolved parameters, the pinned collector, the override given on the command line
    for line in (
        f"GpuImageUri={ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}/cuda:0123456789ab",
        f"AdotImage={_pins()['ADOT_IMAGE']}",
        "GpuMaxTasks=8",
        f"would create secret {name}/webhook-secret",
        "nothing was built, created or changed",
    ):
        assert line in proc.stderr
    # nothing left behind: no stack (the REVIEW_IN_PROGRESS holder is deleted), no secret
    statuses = [
        s["StackStatus"]
        for s in cloudformation.list_stacks()["StackSummaries"]
        if s["StackName"] == name
    ]
    assert statuses == ["DELETE_COMPLETE"]
    listed_secrets = secrets.list_secrets(Filters=[{"Key": "name", "Values": [name]}])
    assert listed_secrets["SecretList"] == []
