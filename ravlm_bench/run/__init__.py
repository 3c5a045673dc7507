"""Running a suite: the runner over every (task, system, seed) cell, and each cell's pipeline
from features to the task's evaluation (one module per head interface).

May import: every layer below it: foundation up to stages.
"""
