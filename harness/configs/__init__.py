"""Shipped launcher configurations (accelerate + DeepSpeed ZeRO-3, like the organisers' environment)."""
