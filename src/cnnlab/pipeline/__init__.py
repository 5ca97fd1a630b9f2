"""The pipeline's own bookkeeping stages: which code each stage runs (code_digest)."""
