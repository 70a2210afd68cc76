"""The tools around runs: plots and comparisons, play, hyperparameter tuning and its search
spaces, Kubernetes manifests. Each builds on the run and storage layers; nothing below imports
them."""
