"""distdqn: Deep Q-Networks from one process to a Ray cluster, with the same config."""

__version__ = "0.1.0"
