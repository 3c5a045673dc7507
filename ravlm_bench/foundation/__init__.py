"""What every layer stands on: the harness's errors (one actionable line each), where
its files live (caches, data roots, atomically written directories), seeding, the
torch.distributed helpers that degrade to one process, and the version.

May import: nothing else of ravlm_bench.
"""
