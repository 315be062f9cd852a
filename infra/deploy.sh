#!/usr/bin/env bash
# Build both images, push them to ECR, deploy the CloudFormation stack. One command:
#
#   infra/deploy.sh [--dry-run] [STACK_NAME] [extra template parameters as Name=Value...]
#
#   AWS_REGION=eu-west-1 ALWAYS_ON=cpu infra/deploy.sh gpu-worker AlarmEmail=ops@example.com
#   AWS_REGION=eu-west-1 infra/deploy.sh --dry-run gpu-worker     # what it would change
#
# --dry-run builds nothing and changes nothing: it validates the template, resolves every
# parameter (VPC, subnets, secret, image URIs) and prints the change set CloudFormation would
# execute, then deletes that change set again (and, for a stack that does not exist yet, the
# empty REVIEW_IN_PROGRESS stack CloudFormation makes to hold it).
#
# Needs: the AWS CLI with credentials, Docker with buildx (and QEMU binfmt for the arm64
# half of the CPU image when building on x86_64; not for --dry-run). Environment knobs:
#   AWS_REGION        region (default: the CLI's configured region)
#   VPC_ID            VPC (default: the account's default VPC)
#   SUBNET_IDS        comma-separated subnets (default: the default VPC's subnets)
#   ALWAYS_ON         gpu | cpu: which service keeps one task running (default gpu)
#   IMAGE_TAG         tag for both images (default: git commit, else a timestamp)
#   WEBHOOK_URL       the worker's webhook (default: none)
#   WEBHOOK_SECRET_ARN an existing secret; default: <stack>/webhook-secret, created if missing
#   SKIP_BUILD=1      deploy images already pushed under IMAGE_TAG
# The base and collector images come from infra/images.env.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
template="$here/template.yaml"
# CloudFormation takes a template body of at most 51,200 bytes inline.
template_limit=51200

dry_run=0
if [[ "${1:-}" == --dry-run ]]; then
    dry_run=1
    shift
fi
stack=${1:-gpu-worker}
shift || true

# shellcheck source=infra/images.env
. "$here/images.env"

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}
if [[ -z "$region" ]]; then
    echo "deploy: set AWS_REGION" >&2
    exit 2
fi
export AWS_REGION=$region AWS_DEFAULT_REGION=$region

log() { printf '\n==> %s\n' "$*" >&2; }

template_bytes=$(wc -c <"$template")
if ((template_bytes > template_limit)); then
    echo "deploy: $template is $template_bytes bytes, over CloudFormation's inline limit" \
        "of $template_limit; shorten it (comments count)" >&2
    exit 2
fi
log "validating $template ($template_bytes bytes)"
aws cloudformation validate-template --template-body "file://$template" >/dev/null

account=$(aws sts get-caller-identity --query Account --output text)
registry="$account.dkr.ecr.$region.amazonaws.com"
tag=${IMAGE_TAG:-$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || date +%Y%m%d%H%M%S)}
always_on=${ALWAYS_ON:-gpu}

ensure_repository() {
    local name=$1
    if ! aws ecr describe-repositories --repository-names "$name" >/dev/null 2>&1; then
        log "creating ECR repository $name"
        aws ecr create-repository --repository-name "$name" \
            --image-scanning-configuration scanOnPush=true \
            --image-tag-mutability MUTABLE >/dev/null
        # keep the last 20 images: old tags cost storage and are never rolled back to
        aws ecr put-lifecycle-policy --repository-name "$name" --lifecycle-policy-text \
            '{"rules":[{"rulePriority":1,"description":"keep 20","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":20},"action":{"type":"expire"}}]}' \
            >/dev/null
    fi
}

cpu_repo="$stack/cpu"
cuda_repo="$stack/cuda"
cpu_image="$registry/$cpu_repo:$tag"
cuda_image="$registry/$cuda_repo:$tag"

if ((dry_run)); then
    log "dry run: would build $cpu_image and $cuda_image from $PYTHON_IMAGE"
elif [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    ensure_repository "$cpu_repo"
    ensure_repository "$cuda_repo"
    log "logging in to $registry"
    aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"

    log "building and pushing $cpu_image (linux/amd64, linux/arm64)"
    docker buildx build --file "$root/Dockerfile.cpu" \
        --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
        --platform linux/amd64,linux/arm64 \
        --provenance=false \
        --tag "$cpu_image" --push "$root"

    log "building and pushing $cuda_image (linux/amd64)"
    docker buildx build --file "$root/Dockerfile.cuda" \
        --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
        --platform linux/amd64 \
        --provenance=false \
        --tag "$cuda_image" --push "$root"
fi

# Network: the default VPC and its subnets unless told otherwise.
vpc=${VPC_ID:-$(aws ec2 describe-vpcs --filters Name=isDefault,Values=true \
    --query 'Vpcs[0].VpcId' --output text)}
if [[ -z "$vpc" || "$vpc" == None ]]; then
    echo "deploy: no default VPC; set VPC_ID and SUBNET_IDS" >&2
    exit 2
fi
subnets=${SUBNET_IDS:-$(aws ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc" \
    --query 'Subnets[].SubnetId' --output text | tr '\t' ',')}
if [[ -z "$subnets" || "$subnets" == None ]]; then
    echo "deploy: no subnets in $vpc; set SUBNET_IDS" >&2
    exit 2
fi

# The webhook signing secret lives in Secrets Manager, never in the template or environment.
secret_arn=${WEBHOOK_SECRET_ARN:-}
if [[ -z "$secret_arn" ]]; then
    secret_name="$stack/webhook-secret"
    secret_arn=$(aws secretsmanager describe-secret --secret-id "$secret_name" \
        --query ARN --output text 2>/dev/null || true)
    if [[ -z "$secret_arn" && $dry_run == 1 ]]; then
        log "dry run: would create secret $secret_name"
        secret_arn="arn:aws:secretsmanager:$region:$account:secret:$secret_name-dryrun"
    elif [[ -z "$secret_arn" ]]; then
        log "creating secret $secret_name (whsec_ + 32 random bytes, base64)"
        secret_arn=$(aws secretsmanager create-secret --name "$secret_name" \
            --description "gpu-worker webhook signing secret" \
            --secret-string "whsec_$(openssl rand -base64 32)" \
            --query ARN --output text)
    fi
fi

# Every parameter the stack gets; later Name=Value arguments override earlier ones.
overrides=(
    "AlwaysOnService=$always_on"
    "GpuImageUri=$cuda_image"
    "CpuImageUri=$cpu_image"
    "AdotImage=$ADOT_IMAGE"
    "VpcId=$vpc"
    "SubnetIds=$subnets"
    "WebhookUrl=${WEBHOOK_URL:-}"
    "WebhookSecretArn=$secret_arn"
    "$@"
)

if ((!dry_run)); then
    log "deploying stack $stack in $region (always on: $always_on)"
    aws cloudformation deploy \
        --stack-name "$stack" \
        --template-file "$template" \
        --capabilities CAPABILITY_NAMED_IAM \
        --no-fail-on-empty-changeset \
        --parameter-overrides "${overrides[@]}"

    aws cloudformation describe-stacks --stack-name "$stack" \
        --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
    exit 0
fi

# ------------------------------------------------------------------ dry run: the change set
json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}
# (plain arrays, no associative ones: macOS still ships bash 3.2)
names=()
values=()
for pair in "${overrides[@]}"; do
    if [[ "$pair" != *=* ]]; then
        echo "deploy: parameter '$pair' is not Name=Value" >&2
        exit 2
    fi
    name=${pair%%=*}
    slot=${#names[@]}
    for ((i = 0; i < ${#names[@]}; i++)); do
        [[ "${names[$i]}" == "$name" ]] && slot=$i
    done
    names[slot]=$name
    values[slot]=${pair#*=}
done
log "dry run: parameters (the others keep the template's defaults)"
parameters_json="["
for ((i = 0; i < ${#names[@]}; i++)); do
    printf '  %s=%s\n' "${names[$i]}" "${values[$i]}" >&2
    parameters_json+="{\"ParameterKey\":$(json_string "${names[$i]}"),"
    parameters_json+="\"ParameterValue\":$(json_string "${values[$i]}")},"
done
parameters_json="${parameters_json%,}]"
parameters_file=$(mktemp)

status=$(aws cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].StackStatus' --output text 2>/dev/null || true)
if [[ -z "$status" || "$status" == REVIEW_IN_PROGRESS ]]; then
    change_type=CREATE
else
    change_type=UPDATE
fi
change_set="dry-run-$(date +%Y%m%d%H%M%S)"

cleanup() {
    rm -f "$parameters_file"
    if [[ $change_type == CREATE ]]; then
        # The empty stack CloudFormation made to hold the change set (no resources); deleting
        # it deletes the change set with it.
        aws cloudformation delete-stack --stack-name "$stack" >/dev/null 2>&1 || true
    else
        aws cloudformation delete-change-set --stack-name "$stack" \
            --change-set-name "$change_set" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

printf '%s\n' "$parameters_json" >"$parameters_file"
log "dry run: change set $change_set ($change_type of stack $stack in $region)"
aws cloudformation create-change-set \
    --stack-name "$stack" \
    --change-set-name "$change_set" \
    --change-set-type "$change_type" \
    --template-body "file://$template" \
    --capabilities CAPABILITY_NAMED_IAM \
    --parameters "file://$parameters_file" >/dev/null
# One call per poll: the first line is the status, the others the changes.
while :; do
    described=$(aws cloudformation describe-change-set \
        --stack-name "$stack" --change-set-name "$change_set" --output text \
        --query '[[Status, StatusReason], Changes[].ResourceChange.[Action, LogicalResourceId, ResourceType, Replacement]]')
    read -r cs_status cs_reason <<<"$(head -n 1 <<<"$described")"
    [[ "$cs_status" == CREATE_PENDING || "$cs_status" == CREATE_IN_PROGRESS ]] || break
    sleep 3
done
if [[ "$cs_status" != CREATE_COMPLETE ]]; then
    echo "deploy: change set $cs_status: $cs_reason" >&2
    [[ "$cs_reason" == *"didn't contain changes"* ]] && exit 0
    exit 1
fi
changes=$(tail -n +2 <<<"$described")
if [[ -z "$changes" ]]; then
    echo "(the change set lists no resource changes)"
else
    printf '\n%-8s %-32s %-48s %s\n' ACTION RESOURCE TYPE REPLACEMENT
    while IFS=$'\t' read -r action logical kind replacement; do
        printf '%-8s %-32s %-48s %s\n' "$action" "$logical" "$kind" "$replacement"
    done <<<"$changes"
fi
log "dry run: nothing was built, created or changed"
