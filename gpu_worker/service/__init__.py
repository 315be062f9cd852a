"""The queue worker around the render core: settings, SQS, S3, webhooks, ECS protection."""
