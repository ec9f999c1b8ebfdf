"""Extraction of aligned faces and the input pipelines that feed training."""
