"""`translation_mhce`: fairseq's translation task whose generator decodes coarse to fine."""

from dataclasses import dataclass, field
from typing import List, Optional

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .errors import MHCEConfigError
from .generator import MHCESequenceGenerator
from .output import FactoredOutput


@dataclass
class TranslationMHCEConfig(TranslationConfig):
    mhe_topk_groups: str = field(
        default="auto",
        metadata={"help": "coarse-to-fine decoding: prefixes kept per coarse level for each "
                          "hypothesis (one value, or a comma list with one value per level 1..H-1); "
                          "'all' scores every token exactly; 'auto' = 8, capped at each level's "
                          "number of prefixes"},
    )


DEFAULT_TOPK_GROUPS = 8


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
    layers = [getattr(getattr(m, "decoder", None), "output_projection", None) for m in models]
    if not layers or not all(isinstance(l, FactoredOutput) and l.supports_coarse_to_fine for l in layers):
        return []
    if any(l.codec != layers[0].codec for l in layers):
        raise MHCEConfigError(
            f"ensemble members use different codecs ({', '.join(str(l.codec) for l in layers)}): "
            "coarse-to-fine decoding needs one target vocabulary and head sizes for all models.")
    return layers


@register_task("translation_mhce", dataclass=TranslationMHCEConfig)
class TranslationMHCETask(TranslationTask):
    """Translation with coarse-to-fine decoding for MHP/MHE models; stock decoding otherwise."""

    cfg: TranslationMHCEConfig

    def __init__(self, cfg: TranslationMHCEConfig, src_dict, tgt_dict):
        parse_topk_groups(cfg.mhe_topk_groups)  # malformed values fail before any model is loaded
        super().__init__(cfg, src_dict, tgt_dict)

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None,
                        prefix_allowed_tokens_fn=None):
        layers = coarse_to_fine_layers(models)
        if seq_gen_cls is None and layers and not getattr(args, "print_alignment", None):
            topk = parse_topk_groups(self.cfg.mhe_topk_groups, layers[0])
            seq_gen_cls = MHCESequenceGenerator
            extra_gen_cls_kwargs = dict(extra_gen_cls_kwargs or {}, topk_groups=topk)
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs,
                                       prefix_allowed_tokens_fn=prefix_allowed_tokens_fn)
