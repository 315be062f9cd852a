"""The deployment's invariants a reviewer asks about, checked without AWS or Docker.

The CloudFormation template is read with cfn-lint's YAML loader (it understands !Ref, !Sub,
!GetAtt, ...); Conditions and Fn::If are evaluated here for a given set of parameters, so
"minimum capacity 1 on the chosen service" is checked for both choices.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
DOCKERFILES = [ROOT / "Dockerfile.cpu", ROOT / "Dockerfile.cuda"]

# What the worker's task role may do, and nothing else (see WorkerTaskRole in the template).
TASK_ROLE_ACTIONS = {
    "s3:GetObject",
    "s3:ListBucket",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",  # a long job's temporary segments, in the output prefix
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "ecs:GetTaskProtection",
    "ecs:UpdateTaskProtection",
    "sts:AssumeRole",
}


# ------------------------------------------------------------------ helpers


def _tool(name: str) -> str:
    """A console script of the test environment: next to the interpreter, else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.loads(TEMPLATE_PATH.read_text(), str(TEMPLATE_PATH))


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def _params(template: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    values = {name: p.get("Default") for name, p in template["Parameters"].items()}
    values.update(overrides)
    return values


def _condition(template: Mapping[str, Any], expr: Any, params: Mapping[str, Any]) -> bool:
    if isinstance(expr, str):
        return _condition(template, template["Conditions"][expr], params)
    ((fn, args),) = expr.items()
    if fn == "Condition":
        return _condition(template, args, params)
    if fn == "Fn::Equals":
        a, b = (_resolve(template, arg, params) for arg in args)
        return str(a) == str(b)
    if fn == "Fn::Not":
        return not _condition(template, args[0], params)
    if fn == "Fn::And":
        return all(_condition(template, a, params) for a in args)
    if fn == "Fn::Or":
        return any(_condition(template, a, params) for a in args)
    raise AssertionError(f"unsupported condition function {fn}")


def _resolve(template: Mapping[str, Any], value: Any, params: Mapping[str, Any]) -> Any:
    """Evaluate Fn::If and Ref-to-parameter; leave other intrinsics as they are."""
    if isinstance(value, Mapping):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            chosen = when_true if _condition(template, name, params) else when_false
            return _resolve(template, chosen, params)
        if set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
            return params[value["Ref"]]
        return {k: _resolve(template, v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(template, v, params) for v in value]
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _containers(resources: Mapping[str, Any], task: str) -> dict[str, Any]:
    defs = resources[task]["Properties"]["ContainerDefinitions"]
    return {c["Name"]: c for c in defs}


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def _task_definitions(resources: Mapping[str, Any]) -> list[str]:
    return [n for n, r in resources.items() if r["Type"] == "AWS::ECS::TaskDefinition"]


def _sub_text(value: Any) -> str:
    """The text of a resource ARN written as a string, !Sub "..." or !Sub [..., {...}]."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return ""  # !Ref / !GetAtt of a resource: a concrete ARN, never a wildcard


def _statements(role: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        yield from _as_list(policy["PolicyDocument"]["Statement"])


def _metric_stats(metrics: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {m["Id"]: m["MetricStat"]["Metric"] for m in metrics if "MetricStat" in m}


def _dims(metric: Mapping[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}


def _queue_metric_ids(metrics: list[Mapping[str, Any]], name: str) -> set[str]:
    return {
        i
        for i, m in _metric_stats(metrics).items()
        if m["Namespace"] == "AWS/SQS"
        and m["MetricName"] == name
        and _dims(m) == {"QueueName": {"Fn::GetAtt": ["JobQueue", "QueueName"]}}
    }


def _service_metric_ids(metrics: list[Mapping[str, Any]], name: str, service: str) -> set[str]:
    return {
        i
        for i, m in _metric_stats(metrics).items()
        if m["Namespace"] == "ECS/ContainerInsights"
        and m["MetricName"] == name
        and _dims(m).get("ServiceName") == {"Fn::GetAtt": [service, "Name"]}
    }


# ------------------------------------------------------------------ linters


def test_cfn_lint_is_clean() -> None:
    proc = subprocess.run(
        [_tool("cfn-lint"), str(TEMPLATE_PATH)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_clean() -> None:
    proc = subprocess.run(
        [_tool("hadolint"), *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deploy_script_parses() -> None:
    script = ROOT / "infra" / "deploy.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "set -euo pipefail" in script.read_text()
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        for name in ("deploy.sh", "install-worker.sh", "pin-images.sh"):
            # -x from the root: follow the `. infra/images.env` the scripts source
            proc = subprocess.run(
                [shellcheck, "-x", f"infra/{name}"], capture_output=True, text=True, cwd=ROOT
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr


def test_template_fits_cloudformations_inline_limit() -> None:
    # infra/deploy.sh hands the template to CloudFormation inline (--template-body /
    # --template-file without --s3-bucket), which takes at most 51,200 bytes.
    size = TEMPLATE_PATH.stat().st_size
    assert size <= 51_200, f"template is {size} bytes: shorten it or deploy it through S3"


# ------------------------------------------------------------------ pinned images


def _pins() -> dict[str, str]:
    lines = (ROOT / "infra" / "images.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_images_are_pinned_in_one_place(template: dict[str, Any]) -> None:
    pins = _pins()
    assert set(pins) == {"PYTHON_IMAGE", "ADOT_IMAGE"}
    # a patch release and its digest; the collector by release (digest when known)
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", pins["PYTHON_IMAGE"]
    )
    assert re.fullmatch(
        r"public\.ecr\.aws/aws-observability/aws-otel-collector:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?",
        pins["ADOT_IMAGE"],
    )
    # the copies that need a literal default agree (infra/pin-images.sh writes them)
    for dockerfile in DOCKERFILES:
        args = [rest for kw, rest in _instructions(dockerfile) if kw == "ARG"]
        assert f"PYTHON_IMAGE={pins['PYTHON_IMAGE']}" in args, (
            f"run infra/pin-images.sh ({dockerfile.name})"
        )
    assert template["Parameters"]["AdotImage"]["Default"] == pins["ADOT_IMAGE"], (
        "run infra/pin-images.sh"
    )
    # and deploy.sh builds and deploys with those values, not with the defaults
    deploy = (ROOT / "infra" / "deploy.sh").read_text()
    assert '. "$here/images.env"' in deploy
    assert deploy.count('--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"') == 2
    assert '"AdotImage=$ADOT_IMAGE"' in deploy


def test_pin_script_writes_the_pins(tmp_path: Path) -> None:
    # On a copy whose defaults are stale, the script brings them back to images.env.
    (tmp_path / "infra").mkdir()
    for name in ("infra/pin-images.sh", "infra/images.env", "infra/template.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        (tmp_path / dockerfile.name).write_text(
            re.sub(r"(?m)^ARG PYTHON_IMAGE=.*$", "ARG PYTHON_IMAGE=python:3.11-slim", text)
        )
    template_text = TEMPLATE_PATH.read_text()
    stale = template_text.replace(_pins()["ADOT_IMAGE"], "example/collector:old")
    assert stale != template_text
    (tmp_path / "infra" / "template.yaml").write_text(stale)
    proc = subprocess.run(
        ["bash", str(tmp_path / "infra" / "pin-images.sh")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "infra" / "template.yaml").read_text() == template_text
    for dockerfile in DOCKERFILES:
        assert (tmp_path / dockerfile.name).read_text() == dockerfile.read_text()


# ------------------------------------------------------------------ GPU and Fargate tasks


def test_gpu_task_asks_for_one_gpu(resources: dict[str, Any]) -> None:
    props = resources["GpuTaskDefinition"]["Properties"]
    assert props["RequiresCompatibilities"] == ["EC2"]
    worker = _containers(resources, "GpuTaskDefinition")["worker"]
    assert {"Type": "GPU", "Value": "1"} in worker["ResourceRequirements"]
    assert "video" in _env(worker)["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert _env(worker)["GPU_WORKER_ENCODER"] == "nvenc"
    assert worker["Image"] == {"Ref": "GpuImageUri"}


def test_gpu_service_runs_on_gpu_instances(template: dict[str, Any], resources: dict) -> None:
    strategy = resources["GpuService"]["Properties"]["CapacityProviderStrategy"]
    assert [s["CapacityProvider"] for s in strategy] == [{"Ref": "GpuCapacityProvider"}]
    provider = resources["GpuCapacityProvider"]["Properties"]["AutoScalingGroupProvider"]
    assert provider["AutoScalingGroupArn"] == {"Ref": "GpuAutoScalingGroup"}
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    asg = resources["GpuAutoScalingGroup"]["Properties"]
    assert asg["NewInstancesProtectedFromScaleIn"] is True
    overrides = asg["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert overrides[0]["InstanceRequirements"]["AllowedInstanceTypes"] == {
        "Ref": "GpuInstanceTypes"
    }
    params = template["Parameters"]
    assert params["GpuInstanceTypes"]["Default"] == "g4dn.xlarge"
    # Amazon Linux 2 is past its end of support: the AL2023 GPU AMI by default
    assert params["GpuAmiId"]["Default"] == (
        "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    )
    launch = resources["GpuLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert launch["ImageId"] == {"Ref": "GpuAmiId"}


def test_fargate_task_asks_for_no_gpu(resources: dict[str, Any]) -> None:
    props = resources["CpuTaskDefinition"]["Properties"]
    assert props["RequiresCompatibilities"] == ["FARGATE"]
    for container in props["ContainerDefinitions"]:
        kinds = {r["Type"] for r in container.get("ResourceRequirements", [])}
        assert "GPU" not in kinds, container["Name"]
    worker = _containers(resources, "CpuTaskDefinition")["worker"]
    assert _env(worker)["GPU_WORKER_ENCODER"] == "x264"
    assert worker["Image"] == {"Ref": "CpuImageUri"}
    strategy = resources["CpuService"]["Properties"]["CapacityProviderStrategy"]
    assert {s["CapacityProvider"] for s in strategy} <= {"FARGATE", "FARGATE_SPOT"}


def test_both_services_read_the_same_queue(resources: dict[str, Any]) -> None:
    tasks = {
        resources[service]["Properties"]["TaskDefinition"]["Ref"]
        for service in ("GpuService", "CpuService")
    }
    assert tasks == {"GpuTaskDefinition", "CpuTaskDefinition"}
    queues = [_env(_containers(resources, t)["worker"])["SQS_QUEUE_URL"] for t in sorted(tasks)]
    assert queues == [{"Ref": "JobQueue"}] * 2
    services = [n for n, r in resources.items() if r["Type"] == "AWS::ECS::Service"]
    assert sorted(services) == ["CpuService", "GpuService"]
    queue_resources = [n for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    assert sorted(queue_resources) == [
        "DeadLetterQueue",
        "JobQueue",
        "WebhookDeadLetterQueue",
        "WebhookQueue",
    ]


@pytest.mark.parametrize("always_on", ["gpu", "cpu"])
def test_minimum_one_task_on_the_chosen_service(
    template: dict[str, Any], resources: dict[str, Any], always_on: str
) -> None:
    params = _params(template, AlwaysOnService=always_on)
    chosen, other = ("Gpu", "Cpu") if always_on == "gpu" else ("Cpu", "Gpu")

    def min_capacity(prefix: str) -> int:
        target = resources[f"{prefix}ScalableTarget"]["Properties"]
        return int(_resolve(template, target["MinCapacity"], params))

    def desired(prefix: str) -> int:
        service = resources[f"{prefix}Service"]["Properties"]
        return int(_resolve(template, service["DesiredCount"], params))

    assert (min_capacity(chosen), min_capacity(other)) == (1, 0)
    assert (desired(chosen), desired(other)) == (1, 0)
    assert template["Parameters"]["AlwaysOnService"]["AllowedValues"] == ["gpu", "cpu"]


def test_scalable_targets_point_at_their_services(resources: dict[str, Any]) -> None:
    for prefix in ("Gpu", "Cpu"):
        props = resources[f"{prefix}ScalableTarget"]["Properties"]
        assert props["ServiceNamespace"] == "ecs"
        assert props["ScalableDimension"] == "ecs:service:DesiredCount"
        assert props["ResourceId"] == {"Fn::Sub": f"service/${{Cluster}}/${{{prefix}Service.Name}}"}
        assert props["MaxCapacity"] == {"Ref": f"{prefix}MaxTasks"}


# ------------------------------------------------------------------ queue


def test_dead_letter_redrive_after_five_receives(resources: dict[str, Any]) -> None:
    queue = resources["JobQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert "RedrivePolicy" not in resources["DeadLetterQueue"]["Properties"]


def test_webhooks_have_a_retry_queue_and_a_dead_letter_queue_every_worker_uses(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = resources["WebhookQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}
    # a safety net only: far above the ~30 receives of a day of attempts
    assert redrive["maxReceiveCount"] >= 400
    # a webhook waits in the queue for its whole schedule: retention outlasts the longest one
    for name in ("WebhookQueue", "WebhookDeadLetterQueue"):
        assert resources[name]["Properties"]["MessageRetentionPeriod"] >= 336 * 3600
    tls = resources["QueuesTlsOnlyPolicy"]["Properties"]["Queues"]
    assert {"Ref": "WebhookQueue"} in tls and {"Ref": "WebhookDeadLetterQueue"} in tls
    for task in _task_definitions(resources):
        env = _env(_containers(resources, task)["worker"])
        assert env["GPU_WORKER_WEBHOOK_QUEUE_URL"] == {"Ref": "WebhookQueue"}
        assert env["GPU_WORKER_WEBHOOK_DEAD_LETTER_URL"] == {"Ref": "WebhookDeadLetterQueue"}
    outputs = template["Outputs"]
    assert outputs["WebhookDeadLetterQueueUrl"]["Value"] == {"Ref": "WebhookDeadLetterQueue"}


def test_visibility_timeout_fits_the_heartbeat(resources: dict[str, Any]) -> None:
    # The worker heartbeats every ~30 s and extends visibility to ~120 s: the queue's own
    # timeout must outlast several missed heartbeats, yet return a dead worker's job soon.
    timeout = resources["JobQueue"]["Properties"]["VisibilityTimeout"]
    assert 90 <= timeout <= 300
    assert resources["JobQueue"]["Properties"]["ReceiveMessageWaitTimeSeconds"] == 20


# ------------------------------------------------------------------ scaling


def _policies(resources: Mapping[str, Any], target: str, kind: str) -> list[Mapping[str, Any]]:
    return [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
        and r["Properties"]["ScalingTargetId"] == {"Ref": target}
        and r["Properties"]["PolicyType"] == kind
    ]


def _returned_expression(metrics: list[Mapping[str, Any]]) -> str:
    returned = [m for m in metrics if m.get("ReturnData", True)]
    assert len(returned) == 1, "a metric math policy returns exactly one time series"
    expression = returned[0]["Expression"]
    return _sub_text(expression) or expression


@pytest.mark.parametrize("prefix", ["Gpu", "Cpu"])
def test_services_scale_on_backlog_per_task(resources: dict[str, Any], prefix: str) -> None:
    (policy,) = _policies(resources, f"{prefix}ScalableTarget", "TargetTrackingScaling")
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == {"Ref": f"{prefix}BacklogPerTask"}
    metrics = config["CustomizedMetricSpecification"]["Metrics"]
    (visible,) = _queue_metric_ids(metrics, "ApproximateNumberOfMessagesVisible")
    (running,) = _service_metric_ids(metrics, "RunningTaskCount", f"{prefix}Service")
    expression = _returned_expression(metrics)
    # backlog / running tasks, with zero running tasks counted as one (no division by 0)
    numerator, _, denominator = expression.partition("/")
    assert running in denominator
    assert visible in numerator or any(
        visible in _sub_text(m.get("Expression", "")) for m in metrics if m["Id"] in numerator
    )
    assert "FILL(" in expression


def test_fargate_falls_back_when_gpu_service_lags(resources: dict[str, Any]) -> None:
    # The Fargate target counts the backlog the running GPU tasks do not absorb ...
    (policy,) = _policies(resources, "CpuScalableTarget", "TargetTrackingScaling")
    metrics = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"][
        "Metrics"
    ]
    (gpu_running,) = _service_metric_ids(metrics, "RunningTaskCount", "GpuService")
    expressions = " ".join(_sub_text(m.get("Expression", "")) for m in metrics)
    assert f"FILL({gpu_running}, 0) * ${{GpuBacklogPerTask}}" in expressions
    # ... and an alarm starts its first task when GPU tasks cannot be placed or jobs age.
    (step,) = _policies(resources, "CpuScalableTarget", "StepScaling")
    alarms = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and any(
            a == {"Ref": name}
            for a in r["Properties"].get("AlarmActions", [])
            for name, res in resources.items()
            if res.get("Properties") is step
        )
    ]
    (alarm,) = alarms
    metrics = alarm["Metrics"]
    assert _service_metric_ids(metrics, "PendingTaskCount", "GpuService")
    assert _queue_metric_ids(metrics, "ApproximateAgeOfOldestMessage")
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"][0]["ScalingAdjustment"] > 0


@pytest.mark.parametrize("prefix", ["Gpu", "Cpu"])
def test_each_service_can_leave_zero_tasks(resources: dict[str, Any], prefix: str) -> None:
    # Target tracking multiplies current capacity; at 0 tasks a step policy starts one.
    (step,) = _policies(resources, f"{prefix}ScalableTarget", "StepScaling")
    assert step["StepScalingPolicyConfiguration"]["AdjustmentType"] == "ChangeInCapacity"


# ------------------------------------------------------------------ stop, health


def test_stop_timeout_lets_a_job_finish(resources: dict[str, Any]) -> None:
    for task in ("GpuTaskDefinition", "CpuTaskDefinition"):
        worker = _containers(resources, task)["worker"]
        assert worker["StopTimeout"] == 120
        assert int(_env(worker)["GPU_WORKER_STOP_DEADLINE"]) < worker["StopTimeout"]
        assert worker["HealthCheck"]["Command"][:3] == ["CMD", "gpu-worker", "doctor"]
        assert worker["Command"] == ["serve"]
    user_data = resources["GpuLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    assert "ECS_CONTAINER_STOP_TIMEOUT=120s" in user_data["Fn::Base64"]["Fn::Sub"]


# ------------------------------------------------------------------ IAM and secrets


def _task_role_names(resources: Mapping[str, Any]) -> set[str]:
    names = set()
    for task in _task_definitions(resources):
        arn = resources[task]["Properties"]["TaskRoleArn"]
        names.add(arn["Fn::GetAtt"][0])
    return names


def test_task_role_is_least_privilege(resources: dict[str, Any]) -> None:
    (role_name,) = _task_role_names(resources)
    role = resources[role_name]
    assert "ManagedPolicyArns" not in role["Properties"]
    # nothing else attaches policies to it
    for name, res in resources.items():
        if res["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            assert {"Ref": role_name} not in res["Properties"].get("Roles", []), name
    actions: set[str] = set()
    for statement in _statements(role):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, action
            actions.add(action)
        for resource in _as_list(statement["Resource"]):
            text = _sub_text(resource)
            assert text != "*", statement
            # no service-wide wildcards such as arn:aws:s3:::* or ...:queue/*
            assert not re.fullmatch(r"arn:[^:]+:[^:]+:[^:]*:[^:]*:\*", text), text
    assert actions == TASK_ROLE_ACTIONS


def test_task_role_scopes(resources: dict[str, Any]) -> None:
    (role_name,) = _task_role_names(resources)
    by_sid = {s["Sid"]: s for s in _statements(resources[role_name])}
    assert "${InputPrefix}*" in _sub_text(by_sid["ReadInputs"]["Resource"])
    assert "${OutputPrefix}*" in _sub_text(by_sid["WriteOutputs"]["Resource"])
    assert by_sid["ListInputs"]["Condition"]["StringLike"]["s3:prefix"] == {
        "Fn::Sub": "${InputPrefix}*"
    }
    assert by_sid["ConsumeJobQueue"]["Resource"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    assert by_sid["DeliverWebhooks"]["Resource"] == {"Fn::GetAtt": ["WebhookQueue", "Arn"]}
    assert by_sid["DeadLetterWebhooks"] == {
        "Sid": "DeadLetterWebhooks",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]},
    }
    # the output check is a HEAD (GetObject) within the output prefix, nowhere else
    assert "s3:GetObject" in by_sid["WriteOutputs"]["Action"]
    sending = [s for s in by_sid.values() if "sqs:SendMessage" in _as_list(s["Action"])]
    assert {str(s["Resource"]) for s in sending} == {
        str({"Fn::GetAtt": ["WebhookQueue", "Arn"]}),
        str({"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}),
        str({"Fn::GetAtt": ["JobQueue", "Arn"]}),  # a long job's segments
    }
    assert "task/${Cluster}/*" in _sub_text(by_sid["TaskScaleInProtection"]["Resource"])
    telemetry = resources["TelemetryRole"]["Properties"]
    assert _sub_text(by_sid["ExportTelemetry"]["Resource"]).endswith(
        telemetry["RoleName"]["Fn::Sub"]
    )


def test_telemetry_role_only_exports_telemetry(resources: dict[str, Any]) -> None:
    role = resources["TelemetryRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["WorkerTaskRole", "Arn"]}}
    for statement in _statements(resources["TelemetryRole"]):
        for action in _as_list(statement["Action"]):
            assert action.split(":")[0] in {"xray", "logs"}, action
            assert "*" not in action
        if "*" in _as_list(statement["Resource"]):
            # X-Ray's write actions support no resource-level permissions
            assert all(a.startswith("xray:") for a in _as_list(statement["Action"]))


def test_webhook_secret_never_in_plain_environment(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert "Default" not in template["Parameters"]["WebhookSecretArn"]
    for task in _task_definitions(resources):
        for name, container in _containers(resources, task).items():
            for variable in _env(container):
                assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY", variable), (task, name)
        worker = _containers(resources, task)["worker"]
        secrets = {s["Name"]: s["ValueFrom"] for s in worker["Secrets"]}
        assert secrets["WEBHOOK_SECRET"] == {"Ref": "WebhookSecretArn"}
        execution_role = resources[task]["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
        readable = [
            s["Resource"]
            for s in _statements(resources[execution_role])
            if "secretsmanager:GetSecretValue" in _as_list(s["Action"])
        ]
        assert readable == [{"Ref": "WebhookSecretArn"}]


# ------------------------------------------------------------------ observability


def test_log_groups_have_retention(resources: dict[str, Any]) -> None:
    groups = {n for n, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    for name in groups:
        assert resources[name]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for task in _task_definitions(resources):
        for container in _containers(resources, task).values():
            log = container["LogConfiguration"]
            assert log["LogDriver"] == "awslogs"
            assert log["Options"]["awslogs-group"]["Ref"] in groups


def test_collector_sidecar_receives_otlp(resources: dict[str, Any]) -> None:
    config = resources["CollectorConfig"]["Properties"]["Value"]["Fn::Sub"]
    for needle in ("otlp:", "0.0.0.0:4318", "awsxray:", "awsemf:", "role_arn"):
        assert needle in config
    for task in _task_definitions(resources):
        containers = _containers(resources, task)
        collector = containers["otel-collector"]
        assert collector["Image"] == {"Ref": "AdotImage"}
        assert collector["Essential"] is False
        assert {"Name": "AOT_CONFIG_CONTENT", "ValueFrom": {"Ref": "CollectorConfig"}} in (
            collector["Secrets"]
        )
        endpoint = _env(containers["worker"])["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint.endswith(":4318")


def test_alarms_on_dead_letters_and_oldest_message(resources: dict[str, Any]) -> None:
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    plain = [a for a in alarms if "MetricName" in a]
    dlq = [
        a
        for a in plain
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    ]
    assert len(dlq) == 1
    assert dlq[0]["Threshold"] == 0 and dlq[0]["ComparisonOperator"] == "GreaterThanThreshold"
    webhook_dlq = [
        a
        for a in plain
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["WebhookDeadLetterQueue", "QueueName"]}
    ]
    assert len(webhook_dlq) == 1 and webhook_dlq[0]["Threshold"] == 0
    assert "gpu-worker webhooks replay" in webhook_dlq[0]["AlarmDescription"]
    dlq += webhook_dlq
    age = [
        a
        for a in plain
        if a["MetricName"] == "ApproximateAgeOfOldestMessage"
        and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["JobQueue", "QueueName"]}
    ]
    assert len(age) == 1
    for alarm in dlq + age:
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_dashboard_shows_queue_tasks_and_render_time(resources: dict[str, Any]) -> None:
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    for needle in (
        "ApproximateNumberOfMessagesVisible",
        "RunningTaskCount",
        "${GpuServiceName}",
        "${CpuServiceName}",
        "${RenderTimeMetricName}",
        "${WebhookQueueName}",
        "${WebhookDlqName}",
    ):
        assert needle in body


def test_container_insights_on(resources: dict[str, Any]) -> None:
    settings = resources["Cluster"]["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


# ------------------------------------------------------------------ images


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    steps = _instructions(dockerfile)
    froms = [rest for kw, rest in steps if kw == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS builder"), "multi-stage"
    final = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM") :]
    users = [rest for kw, rest in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("ENTRYPOINT", '["gpu-worker"]') in final
    assert ("CMD", '["serve"]') in final
    (health,) = [rest for kw, rest in final if kw == "HEALTHCHECK"]
    assert '"gpu-worker", "doctor", "--serving"' in health  # the serving process itself
    builder_runs = [rest for kw, rest in steps[: steps.index(("FROM", froms[1]))] if kw == "RUN"]
    assert builder_runs == ["sh /usr/local/bin/install-worker.sh /src /opt/venv"]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    assert any("slim" in line for kw, line in steps if kw == "ARG")


def test_cuda_image_gets_the_driver_video_libraries() -> None:
    text = (ROOT / "Dockerfile.cuda").read_text()
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*\bvideo\b", text)
    assert "NVIDIA_VISIBLE_DEVICES=all" in text
    assert "nvidia/cuda" not in "".join(
        rest for kw, rest in _instructions(ROOT / "Dockerfile.cuda") if kw in {"FROM", "ARG"}
    ), "no CUDA toolkit base: NVENC needs only the driver's libraries"


def test_dockerignore_allows_only_what_the_images_install() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "gpu_worker", "fonts"} <= allowed
    assert not allowed & {".git", ".venv", "tests", "examples"}
