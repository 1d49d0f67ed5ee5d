"""mhce_nmt: multi-head factored output layers (MHP, MHE, MHS) for fairseq NMT.

The package has four parts (docs/design.md draws which imports which):
- the plain-torch core, importing no fairseq: `codec` (ids as mixed-radix digits), `layout` (code
  layouts), `output` (the output layers and their losses, the child-score kernels with a CPU way
  and a device way), `embedding` (factored input embeddings), `defaults` (torch-free: the option
  choices and measured defaults that the library and the recipes share), `errors`, `vocab_params`;
- `adapters`: fairseq's model, criterion, task and sequence generator around the core;
- `training`: optimizer, learning-rate schedule, bf16 autocast and CPU runtime settings;
- `baselines`: the fused softmax cross-entropy baselines; and `compat`, the fixes fairseq needs.

`--user-dir mhce_nmt` (or importing the package beside fairseq) registers the adapters with
fairseq (`mhce_nmt.registration`); importing a core module alone imports no fairseq.
"""
from .registration import register_when_fairseq_loads

register_when_fairseq_loads()

__version__ = "0.1.0"
