"""Publishing a run: reading it back into leaderboard tables and their text rendering, the
quality-against-cost fronts, and the comparison of two runs.

May import: foundation, plugin_host, scoring, config, store; never stages, demo or run
(``.importlinter`` forbids them): a run directory is read without running anything.
"""
