"""IWSLT'14 German-English recipe (data as fairseq's prepare-iwslt14.sh)."""
