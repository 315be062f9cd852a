#!/usr/bin/env bash
# Build both images, push them to ECR, deploy the CloudFormation stack. One command:
#
#   infra/deploy.sh [STACK_NAME] [extra `aws cloudformation deploy` parameter overrides...]
#
#   AWS_REGION=eu-west-1 ALWAYS_ON=cpu infra/deploy.sh gpu-worker AlarmEmail=ops@example.com
#
# Needs: the AWS CLI v2 with credentials, Docker with buildx (and QEMU binfmt for the arm64
# half of the CPU image when building on x86_64). Environment knobs:
#   AWS_REGION        region (default: the CLI's configured region)
#   VPC_ID            VPC (default: the account's default VPC)
#   SUBNET_IDS        comma-separated subnets (default: the default VPC's subnets)
#   ALWAYS_ON         gpu | cpu: which service keeps one task running (default gpu)
#   IMAGE_TAG         tag for both images (default: git commit, else a timestamp)
#   WEBHOOK_URL       the worker's webhook (default: none)
#   WEBHOOK_SECRET_ARN an existing secret; default: <stack>/webhook-secret, created if missing
#   SKIP_BUILD=1      deploy images already pushed under IMAGE_TAG
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

stack=${1:-gpu-worker}
shift || true

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}
if [[ -z "$region" ]]; then
    echo "deploy: set AWS_REGION" >&2
    exit 2
fi
export AWS_REGION=$region AWS_DEFAULT_REGION=$region

account=$(aws sts get-caller-identity --query Account --output text)
registry="$account.dkr.ecr.$region.amazonaws.com"
tag=${IMAGE_TAG:-$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || date +%Y%m%d%H%M%S)}
always_on=${ALWAYS_ON:-gpu}

log() { printf '\n==> %s\n' "$*" >&2; }

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

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    ensure_repository "$cpu_repo"
    ensure_repository "$cuda_repo"
    log "logging in to $registry"
    aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"

    log "building and pushing $cpu_image (linux/amd64, linux/arm64)"
    docker buildx build --file "$root/Dockerfile.cpu" \
        --platform linux/amd64,linux/arm64 \
        --provenance=false \
        --tag "$cpu_image" --push "$root"

    log "building and pushing $cuda_image (linux/amd64)"
    docker buildx build --file "$root/Dockerfile.cuda" \
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

# The webhook signing secret lives in Secrets Manager, never in the template or environment.
secret_arn=${WEBHOOK_SECRET_ARN:-}
if [[ -z "$secret_arn" ]]; then
    secret_name="$stack/webhook-secret"
    secret_arn=$(aws secretsmanager describe-secret --secret-id "$secret_name" \
        --query ARN --output text 2>/dev/null || true)
    if [[ -z "$secret_arn" ]]; then
        log "creating secret $secret_name (whsec_ + 32 random bytes, base64)"
        secret_arn=$(aws secretsmanager create-secret --name "$secret_name" \
            --description "gpu-worker webhook signing secret" \
            --secret-string "whsec_$(openssl rand -base64 32)" \
            --query ARN --output text)
    fi
fi

log "deploying stack $stack in $region (always on: $always_on)"
aws cloudformation deploy \
    --stack-name "$stack" \
    --template-file "$here/template.yaml" \
    --capabilities CAPABILITY_NAMED_IAM \
    --no-fail-on-empty-changeset \
    --parameter-overrides \
        "AlwaysOnService=$always_on" \
        "GpuImageUri=$cuda_image" \
        "CpuImageUri=$cpu_image" \
        "VpcId=$vpc" \
        "SubnetIds=$subnets" \
        "WebhookUrl=${WEBHOOK_URL:-}" \
        "WebhookSecretArn=$secret_arn" \
        "$@"

aws cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
