"""Deployment side: run exported detectors with Paddle Inference, time them, score them."""
