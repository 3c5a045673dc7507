"""Scoring a cell: the metrics, the run's shared bootstrap resamples, the reference
evaluations tasks inherit, and the exact top-k search they and the retrievers share.

May import: foundation, plugin_host.
"""
