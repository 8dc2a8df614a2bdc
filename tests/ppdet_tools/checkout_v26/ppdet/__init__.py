"""Stands for a PaddleDetection v2.6.0 tree's own ppdet package (only its presence matters)."""
