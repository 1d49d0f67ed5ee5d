"""Softmax baselines: fused linear cross-entropy kernels (fused_softmax, plain torch) and their fairseq criterion."""
