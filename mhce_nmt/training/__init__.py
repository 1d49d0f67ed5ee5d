"""Training extras: the adam_fused optimizer, the linear_budget schedule, bf16 autocast, CPU runtime settings."""
