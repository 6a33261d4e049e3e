"""Mutual aid over a horizon: members lend to each other period by period (issue 9)."""
