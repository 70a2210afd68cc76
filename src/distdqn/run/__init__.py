"""A training run: the loop (`loop.py`) and, each in its own file, everything else a run does:
the rate limiter, evaluation and `best`, the snapshot for exact resume, the supervisor of role
restarts, telemetry, the run directory, and the entry points `train` and `resume`."""
