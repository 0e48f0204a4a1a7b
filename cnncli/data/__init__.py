"""Image folders -> decoded uint8 cache -> float32 batches."""
