"""``python -m gpu_worker`` runs the command line."""

from gpu_worker.cli import run

run()
