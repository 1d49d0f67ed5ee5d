"""`translation_mhce`: fairseq's translation task whose generator decodes coarse to fine.

Under --print-alignment it keeps fairseq's exhaustive generator (the coarse-to-fine one computes
no alignments) and says so in one logged warning; a data split with no sentences is a one-line
MHCEConfigError naming the file, not an error deep inside fairseq's indexed dataset.
--autocast-bf16 runs each training step under torch.autocast in bfloat16 (see autocast.py).
Training on a CPU first tunes the process's oneDNN cache and malloc (cpu_runtime.py), unless
--no-cpu-runtime-tuning.
fairseq-interactive skips an input line longer than the model's positions with one logged line
(its number and the limit) and goes on with the next ones, where fairseq stops with a traceback.
"""

import itertools
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

from fairseq import utils
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..errors import MHCEConfigError
from ..output import FactoredOutput
from ..training.autocast import AutocastCriterion, training_autocast
from ..training.cpu_runtime import tune_cpu_runtime
from . import generator as mhce_generator
from . import model as mhce_model  # modules, not their names: registration may import this mid-way through them


@dataclass
class TranslationMHCEConfig(TranslationConfig):
    mhe_topk_groups: str = field(
        default="auto",
        metadata={"help": "coarse-to-fine decoding: prefixes kept per coarse level for each "
                          "hypothesis (one value, or a comma list with one value per level 1..H-1); "
                          "'all' scores every token exactly; 'auto' = 8, capped at each level's "
                          "number of prefixes"},
    )
    autocast_bf16: bool = field(
        default=False,
        metadata={"help": "run each training step (forward and backward) under torch.autocast in "
                          "bfloat16 on the training device, CPU or CUDA: matrix products in bf16; "
                          "weights, optimizer state, validation and decoding stay fp32, and every "
                          "head's log-softmax runs in fp32. On a CPU it pays only with AVX512-BF16 "
                          "or AMX (warned otherwise). Not with --fp16/--bf16/--amp."},
    )
    autocast_bf16_attention: bool = field(
        default=False,
        metadata={"help": "with --autocast-bf16 on a CPU: attention in bf16 too. By default it runs in "
                          "fp32 there, where torch's bf16 attention kernels are slower than its fp32 ones "
                          "(2.4x forward + backward on an AVX512-BF16 EPYC); on a GPU attention follows "
                          "autocast either way"},
    )
    no_cpu_runtime_tuning: bool = field(
        default=False,
        metadata={"help": "leave this process's oneDNN primitive cache and glibc malloc thresholds "
                          "as they are; by default CPU training widens the cache to hold every batch "
                          "shape's kernels and keeps freed tensor memory for reuse (values the user "
                          "set in the environment are always kept)"},
    )


DEFAULT_TOPK_GROUPS = 8

logger = logging.getLogger(__name__)


def parse_topk_groups(spec: str, layer: Optional[FactoredOutput] = None) -> Optional[List[int]]:
    """'8' -> [8]; '8,4' -> [8, 4]; 'all' -> None (exhaustive); 'auto' -> 8 per level, capped
    at the number of prefixes of that level of `layer`."""
    text = str(spec).strip().lower()
    if text == "all":
        return None
    if text == "auto":
        if layer is None:
            return [DEFAULT_TOPK_GROUPS]
        return [min(DEFAULT_TOPK_GROUPS, p) for p in layer.codec.num_prefixes[:-1]]
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise MHCEConfigError(
            f"--mhe-topk-groups {spec!r} is malformed: give a positive integer, a comma list such as "
            "'8,4', or 'all'.") from None
    if any(v < 1 for v in values):
        raise MHCEConfigError(f"--mhe-topk-groups {spec!r} is out of range: every value must be >= 1.")
    return values


def coarse_to_fine_layers(models) -> List[FactoredOutput]:
    """The factored layers of `models` if every one supports coarse-to-fine decoding, else []."""
    layers = [mhce_model.factored_output(m) for m in models]
    if not layers or not all(l is not None and l.supports_coarse_to_fine for l in layers):
        return []
    if any(l.codec != layers[0].codec for l in layers):
        raise MHCEConfigError(
            f"ensemble members use different codecs ({', '.join(str(l.codec) for l in layers)}): "
            "coarse-to-fine decoding needs one target vocabulary and head sizes for all models.")
    return layers


def empty_split_file(data_path: str, split: str, src: str, tgt: str, raw: bool = False) -> Optional[str]:
    """The first data file of `split` (shards split, split1, split2, ...) that holds no sentence.

    Paths as fairseq's load_langpair_dataset finds them: {split_k}.{src}-{tgt}.{lang} or
    {split_k}.{tgt}-{src}.{lang} under data_path, plus .bin for binarised data. Every binarised
    sentence holds at least </s>, so a zero-byte data file is an empty split (fairseq then fails
    deep inside its indexed dataset, trying to mmap it).
    """
    for k in itertools.count():
        split_k = split + (str(k) if k > 0 else "")
        found = False
        for pair in (f"{src}-{tgt}", f"{tgt}-{src}"):
            for lang in (src, tgt):
                path = os.path.join(data_path, f"{split_k}.{pair}.{lang}") + ("" if raw else ".bin")
                if os.path.exists(path):
                    found = True
                    if os.path.getsize(path) == 0:
                        return path
        if not found:
            return None


@register_task("translation_mhce", dataclass=TranslationMHCEConfig)
class TranslationMHCETask(TranslationTask):
    """Translation with coarse-to-fine decoding for MHP/MHE models; stock decoding otherwise."""

    cfg: TranslationMHCEConfig

    def __init__(self, cfg: TranslationMHCEConfig, src_dict, tgt_dict):
        parse_topk_groups(cfg.mhe_topk_groups)  # malformed values fail before any model is loaded
        super().__init__(cfg, src_dict, tgt_dict)

    _cpu_runtime_tuned = False  # once per process: the settings are process-wide

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """fairseq's step; under --autocast-bf16 its forward (the criterion's call) runs inside
        torch.autocast(bfloat16), the backward follows the dtypes the forward chose. The first
        step on a CPU tunes the process first (cpu_runtime.py)."""
        if not TranslationMHCETask._cpu_runtime_tuned and not self.cfg.no_cpu_runtime_tuning:
            TranslationMHCETask._cpu_runtime_tuned = True
            if next(model.parameters()).device.type == "cpu":
                logger.info("CPU training: %s (--no-cpu-runtime-tuning leaves both alone)",
                            "; ".join(tune_cpu_runtime()))
        if self.cfg.autocast_bf16:
            criterion = AutocastCriterion(criterion, training_autocast(
                model, optimizer, True, bf16_attention=self.cfg.autocast_bf16_attention))
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    _interactive_lines = 0  # fairseq-interactive: input lines read so far (line numbers of skipped ones)

    def get_interactive_tokens_and_lengths(self, lines, encode_fn):
        """fairseq's (fairseq-interactive only: the hub binarizes itself); counts the lines read, so
        build_dataset_for_inference can number them for filter_indices_by_size."""
        self._interactive_chunk = (self._interactive_lines, len(lines))
        self._interactive_lines += len(lines)
        return super().get_interactive_tokens_and_lengths(lines, encode_fn)

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        """fairseq's; for fairseq-interactive's lines the dataset knows the number of its first line."""
        dataset = super().build_dataset_for_inference(src_tokens, src_lengths, constraints=constraints)
        chunk = getattr(self, "_interactive_chunk", None)
        if chunk is not None and chunk[1] == len(src_tokens):
            dataset.mhce_first_line = chunk[0] + 1
            self._interactive_chunk = None
        return dataset

    def filter_indices_by_size(self, indices, dataset, max_positions=None, ignore_invalid_inputs=False):
        """fairseq's; an over-long fairseq-interactive line is skipped with one logged line naming its
        number and the limit (the other lines are translated), instead of an exception that ends the run."""
        first_line = getattr(dataset, "mhce_first_line", None)
        if first_line is None or ignore_invalid_inputs:
            return super().filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)
        indices, ignored = dataset.filter_indices_by_size(indices, max_positions)
        limit = max_positions[0] if isinstance(max_positions, (tuple, list)) else max_positions
        for index in ignored:
            size = dataset.size(index)
            size = size[0] if isinstance(size, (tuple, list)) else size
            logger.warning(f"input line {first_line + int(index)} skipped: {int(size)} tokens (with </s>), "
                           f"more than the model's {limit} source positions")
        return indices

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """fairseq's load_dataset, after a one-line error for a split with no sentences."""
        paths = utils.split_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)] if split == self.cfg.train_subset else paths[0]
        empty = empty_split_file(data_path, split, self.cfg.source_lang, self.cfg.target_lang,
                                 raw=self.cfg.dataset_impl == "raw")
        if empty:
            raise MHCEConfigError(
                f"the {split} split is empty: {empty} holds no sentences. Re-run fairseq-preprocess "
                f"on a non-empty {split} text (or point the command at another data directory).")
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        """Coarse to fine for MHP/MHE models; fairseq's own generator (and a one-line warning)
        with --print-alignment, which the coarse-to-fine generator does not compute."""
        layers = coarse_to_fine_layers(models)
        alignment = getattr(args, "print_alignment", None)
        if seq_gen_cls is None and layers and alignment and not getattr(args, "score_reference", False):
            logger.warning(
                "--print-alignment: coarse-to-fine decoding computes no alignments, so this run "
                "decodes with fairseq's exhaustive generator (full log-probabilities, slower; "
                "--mhe-topk-groups is ignored). Drop --print-alignment to decode coarse to fine.")
        if seq_gen_cls is None and layers and not alignment:
            topk = parse_topk_groups(self.cfg.mhe_topk_groups, layers[0])
            seq_gen_cls = mhce_generator.MHCESequenceGenerator
            extra_gen_cls_kwargs = dict(extra_gen_cls_kwargs or {}, topk_groups=topk)
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs,
                                       prefix_allowed_tokens_fn=prefix_allowed_tokens_fn)
