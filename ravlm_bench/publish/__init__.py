"""Publishing a run: its leaderboard tables and their text rendering, the quality-against-cost
fronts, and the comparison of two runs."""
