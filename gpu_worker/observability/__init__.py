"""Traces, metrics and logs, plugged in from outside the render core and the service."""
