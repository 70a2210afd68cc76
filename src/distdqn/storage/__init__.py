"""Storage: checkpoints (atomic, verified, safetensors), run directories on object storage, the
array files a replay snapshot is written in, the run lock, and link-safe writes of run files."""
