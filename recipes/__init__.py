"""Data recipes for mhce_nmt: corpus preparation plus the shared fairseq pipeline stages."""
