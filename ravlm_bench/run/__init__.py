"""Running a suite: the runner over every (task, system, seed) cell, and each cell's pipeline
from features to the task's evaluation."""
