"""What the harness keeps on disk: a run's directory and ledger, each cell's files read back
checked, the explorer's per-item arrays, and the feature cache runs share."""
