"""gpu-worker: render video jobs (clips, text overlays, music) into H.264/AAC MP4."""

__version__ = "0.1.0"
