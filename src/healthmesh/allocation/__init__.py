"""Allocation of the shared reserve: an explainable, equitable optimisation (HiGHS) and baselines."""
