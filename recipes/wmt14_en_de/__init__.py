"""WMT'14 English-German recipe (data as fairseq's prepare-wmt14en2de.sh)."""
