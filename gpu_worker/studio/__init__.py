"""The studio: a local page to edit a job, scrub its timeline with the exact renderer, drag its
texts and bars, and render it (``gpu-worker studio JOB.json``). It sits on the render core as
the command line does; only the command line imports it.
"""
