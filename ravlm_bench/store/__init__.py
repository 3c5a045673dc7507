"""What the harness keeps on disk: a run's directory and ledger (run.json, finished cells,
the lock), each cell's files read back checked (:mod:`.cell_files`, the one reader), the
explorer's per-item arrays, and the feature cache runs share.

May import: foundation, plugin_host, scoring, config.
"""
