"""boto3 clients configured from the settings (the service's only door to AWS APIs)."""

from __future__ import annotations

from typing import Any

from gpu_worker.settings import Settings


def aws_client(service: str, settings: Settings) -> Any:
    """A boto3 client for ``service`` (thread-safe), configured from the settings."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard"},
        # job threads and their heartbeats, plus the webhook thread's 10 attempts at once
        max_pool_connections=max(10, 4 * settings.concurrency + 2) + 10,
        connect_timeout=10,
        read_timeout=max(60, settings.poll_wait + 10),
    )
    make: Any = boto3.session.Session().client  # typed per service name; ours is a str
    return make(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )
