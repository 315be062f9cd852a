"""The render core: a validated job and local files in, an H.264/AAC MP4 out.

It knows nothing of queues, buckets or exporters: ``gpu_worker.service`` wraps it, and
``gpu_worker.observability`` listens to its :class:`~gpu_worker.render.stages.StageClock`.
``make lint`` checks that it never imports either of them, nor boto3.
"""
