"""Looking at a quantized model: where quantization error comes from and how it evolves."""
