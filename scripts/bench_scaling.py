"""Scaling of the output layers with the target vocabulary: the whole demo model, per V and method.

For each target vocabulary size V and each method, the CPU demo's model (3+3 layers, d=256, FFN
1,024, 4 heads: ``transformer_cpu`` / ``transformer_mhce_cpu``, mhce_nmt.defaults.CPU_MODEL_SIZES)
with that output layer:

- softmax: fairseq's softmax, the output projection tied to the decoder input embeddings
  (--share-decoder-input-output-embed), criterion label_smoothed_cross_entropy;
- adaptive: fairseq's adaptive softmax, cutoffs V/4 and V/2 (recipes.commands.adaptive_cutoffs, the
  recipes'), criterion adaptive_loss;
- mhe, mhp: --arch transformer_mhce_cpu --mhce-mode mhe|mhp, criterion mhce_cross_entropy, the plugin's
  default shortlist (mhce_nmt.defaults.recommended_shortlist); variant "factored" adds
  --mhce-embeddings factored (per-digit input embedding tables instead of V x d ones; the
  plugin factors the encoder's table too, which shows in params, not in vocab_params).

Every method trains with the plugin's task (translation_mhce; its training step is fairseq's, so
all of them get the same CPU runtime tuning) and the demo's optimizer and schedule
(recipes.pipeline.CPU_MODEL_ARGS: adam in torch's fused kernel, inverse_sqrt). No corpus: the
dictionaries are synthetic (V target symbols in frequency order, 8,000 source symbols), and so are
the batches: sentences of SENTENCE_LENGTH tokens (eos included), target ids drawn Zipf-like (ids
after fairseq's specials with probability ~ 1/rank, low ids frequent as in a fairseq dictionary),
source ids likewise over the source dictionary. Each record holds

- train_words_per_s: target tokens per second of fairseq's training step (Trainer.train_step:
  forward, loss, backward, gradient normalisation, optimizer step) over --steps batches of about
  --max-tokens target tokens, after WARMUP_STEPS untimed ones;
- decode_sentences_per_s, decode_tokens_per_s: beam-5 search through task.build_generator (the
  coarse-to-fine generator for mhe and mhp, fairseq's SequenceGenerator otherwise) over
  --decode-sentences synthetic source sentences in batches of DECODE_BATCH, after one untimed batch.
  The model is untrained, so its hypotheses would end at arbitrary lengths: every hypothesis is
  forced to DECODE_LENGTH tokens plus eos (min_len = max_len), so each method decodes the same
  number of steps; tokens are counted with their eos, as fairseq-generate counts them;
- peak_mb: the peak resident memory of the configuration's own process (each configuration runs
  in a subprocess of its own), training and decoding;
- params: every parameter of the model (a shared one counted once); vocab_params: the
  target-vocabulary parameters, i.e. the decoder's input embeddings and output layer (shared
  ones counted once): every decoder parameter outside its layers and final layer norm. For the
  tied softmax that is V x d. The encoder's embeddings (8,000 x d, the same for every V and method)
  are in params, not in vocab_params;
- the run's origin (recipes.provenance: commit, dirty, command, cpu, threads). A configuration
  that fails (out of memory, say) is recorded with its error instead of the measurements.

    python -m scripts.bench_scaling --out results/scaling
    python -m scripts.bench_scaling --vocabs 32000 --methods softmax mhe --variants full --steps 3 \\
        --decode-sentences 16 --out /tmp/scaling-smoke

Writes OUT/scaling.json (the records) and OUT/scaling.md (a table, each method's ratios to softmax at
the same V).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from recipes.provenance import REPO_ROOT, origin, threads

if TYPE_CHECKING:  # torch, fairseq and the plugin are imported by the measuring processes only
    import torch
    from fairseq.data import Dictionary

VOCABS = (32000, 65536, 131072, 262144)
METHODS = ("softmax", "adaptive", "mhe", "mhp")
FACTORED_METHODS = ("mhe", "mhp")  # the methods with a factored-embeddings variant
VARIANTS = ("full", "factored")  # --mhce-embeddings; "full" is recorded as variant ""
SOURCE_VOCAB = 8000
SENTENCE_LENGTH = 25  # tokens of every synthetic source and target sentence, eos included
WARMUP_STEPS = 3
BEAM = 5
DECODE_LENGTH = 20  # tokens of every hypothesis, eos not counted
DECODE_BATCH = 32  # source sentences per beam search
ZIPF_EXPONENT = 1.0
SEED = 1
MEASURES = ("train_words_per_s", "decode_sentences_per_s", "decode_tokens_per_s", "peak_mb", "params", "vocab_params")


@dataclass(frozen=True)
class Config:
    """One measured configuration: a method at a target vocabulary size, and how much to run."""

    vocab: int
    method: str
    variant: str  # "" or "factored"
    max_tokens: int = 1024
    steps: int = 20
    decode_sentences: int = 64
    threads: int = 1

    @property
    def name(self) -> str:
        """E.g. 'mhe-factored at V=32000'."""
        return f"{self.method}{'-' + self.variant if self.variant else ''} at V={self.vocab}"


def configs(vocabs: Sequence[int], methods: Sequence[str], variants: Sequence[str], **run) -> list[Config]:
    """Every (V, method, variant) to measure: the factored variant only for mhe and mhp."""
    names = ["" if v == "full" else v for v in variants]
    return [Config(vocab, method, variant, **run) for vocab in vocabs for method in methods
            for variant in names if not variant or method in FACTORED_METHODS]


def train_arguments(config: Config) -> list[str]:
    """fairseq-train's arguments for `config` (no data: the task is built on synthetic dictionaries)."""
    from recipes.commands import adaptive_cutoffs  # these import the plugin, and with it fairseq
    from recipes.config import CPU_MODEL_ARGS

    method, vocab = config.method, config.vocab
    common = ["synthetic", "--task", "translation_mhce", "--source-lang", "src", "--target-lang", "tgt",
              *CPU_MODEL_ARGS, "--max-tokens", str(config.max_tokens), "--cpu", "--seed", str(SEED)]
    if method == "softmax":
        return [*common, "--arch", "transformer_cpu", "--share-decoder-input-output-embed",
                "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
    if method == "adaptive":
        return [*common, "--arch", "transformer_cpu", "--adaptive-softmax-cutoff", adaptive_cutoffs(vocab),
                "--criterion", "adaptive_loss", "--ddp-backend", "legacy_ddp"]
    if method in FACTORED_METHODS:
        factored = ["--mhce-embeddings", "factored"] if config.variant == "factored" else []
        return [*common, "--arch", "transformer_mhce_cpu", "--mhce-mode", method,
                "--criterion", "mhce_cross_entropy", "--label-smoothing", "0.1", *factored]
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def synthetic_dictionary(size: int, prefix: str) -> Dictionary:
    """A fairseq Dictionary of `size` symbols (its 4 specials included), counts falling with the id
    as in a dictionary fairseq-preprocess sorted by frequency."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(size - len(dictionary)):
        dictionary.add_symbol(f"{prefix}{i}", n=size - i)
    return dictionary


def build(config: Config):
    """(task, model, fairseq Trainer, model config) for `config`, as fairseq-train would build them."""
    import mhce_nmt  # noqa: F401  (registers the plugin's architectures, criterion and task)
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    args = options.parse_args_and_arch(options.get_training_parser(), train_arguments(config))
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.TASK_REGISTRY[cfg.task._name](
        cfg.task, synthetic_dictionary(SOURCE_VOCAB, "s"), synthetic_dictionary(config.vocab, "t"))
    model = task.build_model(cfg.model)
    trainer = Trainer(cfg, task, model, task.build_criterion(cfg.criterion))
    return task, model, trainer, cfg


def zipf_ids(vocab: int, nspecial: int, shape: tuple[int, int], rng: torch.Generator) -> torch.Tensor:
    """Ids in [nspecial, vocab) of the given shape, id nspecial + r - 1 with probability ~ 1 / r^s."""
    import torch

    ranks = torch.arange(1, vocab - nspecial + 1, dtype=torch.float64)
    draws = torch.multinomial(ranks.pow(-ZIPF_EXPONENT), shape[0] * shape[1], replacement=True, generator=rng)
    return (draws + nspecial).view(shape)


def sentences(dictionary: Dictionary, count: int, rng: torch.Generator) -> torch.Tensor:
    """`count` sentences of SENTENCE_LENGTH tokens over `dictionary`, each ending with eos."""
    import torch

    words = zipf_ids(len(dictionary), dictionary.nspecial, (count, SENTENCE_LENGTH - 1), rng)
    return torch.cat([words, torch.full((count, 1), dictionary.eos())], dim=1)


def training_batch(task, max_tokens: int, rng: torch.Generator) -> dict:
    """A fairseq training sample of max_tokens // SENTENCE_LENGTH sentence pairs (at least one)."""
    import torch

    count = max(1, max_tokens // SENTENCE_LENGTH)
    source = sentences(task.source_dictionary, count, rng)
    target = sentences(task.target_dictionary, count, rng)
    previous = torch.cat([target[:, -1:], target[:, :-1]], dim=1)  # eos moved to the front, as fairseq does
    return {"id": torch.arange(count), "nsentences": count, "ntokens": target.numel(), "target": target,
            "net_input": {"src_tokens": source, "src_lengths": torch.full((count,), SENTENCE_LENGTH),
                          "prev_output_tokens": previous}}


def train_words_per_s(trainer, task, config: Config, rng: torch.Generator) -> float:
    """Target tokens per second of `config.steps` training steps after WARMUP_STEPS untimed ones."""
    batches = [training_batch(task, config.max_tokens, rng) for _ in range(WARMUP_STEPS + config.steps)]
    for sample in batches[:WARMUP_STEPS]:
        trainer.train_step([sample])
    start = time.perf_counter()
    for sample in batches[WARMUP_STEPS:]:
        trainer.train_step([sample])
    return sum(int(b["ntokens"]) for b in batches[WARMUP_STEPS:]) / (time.perf_counter() - start)


def source_batches(task, config: Config, rng: torch.Generator) -> Iterator[dict]:
    """--decode-sentences synthetic source sentences, DECODE_BATCH at a time, as generation samples."""
    import torch

    for first in range(0, config.decode_sentences, DECODE_BATCH):
        count = min(DECODE_BATCH, config.decode_sentences - first)
        yield {"id": torch.arange(first, first + count), "nsentences": count,
               "net_input": {"src_tokens": sentences(task.source_dictionary, count, rng),
                             "src_lengths": torch.full((count,), SENTENCE_LENGTH)}}


def forced_length_generator(task, model, cfg):
    """The task's beam-BEAM generator for `model`, every hypothesis DECODE_LENGTH tokens plus eos."""
    cfg.generation.beam = BEAM
    cfg.generation.min_len = DECODE_LENGTH
    cfg.generation.max_len_a, cfg.generation.max_len_b = 0, DECODE_LENGTH
    model.eval()
    return task.build_generator([model], cfg.generation)


def decode_speed(task, model, cfg, config: Config, rng: torch.Generator) -> tuple[float, float]:
    """(sentences/s, target tokens/s) of beam search with every hypothesis DECODE_LENGTH tokens long
    (plus eos), after one untimed batch."""
    import torch

    search = forced_length_generator(task, model, cfg)
    batches = list(source_batches(task, config, rng))
    with torch.no_grad():
        task.inference_step(search, [model], batches[0])
        start = time.perf_counter()
        hypotheses = [hypos for batch in batches for hypos in task.inference_step(search, [model], batch)]
        seconds = time.perf_counter() - start
    lengths = {len(hypos[0]["tokens"]) for hypos in hypotheses}
    if lengths != {DECODE_LENGTH + 1}:
        raise RuntimeError(f"hypotheses of {sorted(lengths)} tokens, not the forced {DECODE_LENGTH} + eos")
    return len(hypotheses) / seconds, len(hypotheses) * (DECODE_LENGTH + 1) / seconds


def unique_params(parameters: Iterable[torch.nn.Parameter]) -> int:
    """Elements of `parameters`, each tensor counted once."""
    return sum({id(p): p.numel() for p in parameters}.values())


def vocab_params(model: torch.nn.Module) -> int:
    """The target-vocabulary parameters: the decoder's minus those of its layers and final layer norm
    (what is left is its input embeddings and output layer)."""
    decoder = model.decoder
    body = [m for m in (decoder.layers, getattr(decoder, "layer_norm", None)) if m is not None]
    in_body = {id(p) for m in body for p in m.parameters()}
    return unique_params(p for p in decoder.parameters() if id(p) not in in_body)


def shortlist_of(cfg, method: str) -> int:
    """The shortlist N the model was built with (0 for softmax and adaptive)."""
    return int(getattr(cfg.model, "mhce_shortlist", 0) or 0) if method in FACTORED_METHODS else 0


def measure(config: Config) -> dict:
    """`config`'s measurements in this process (its peak memory is this process's)."""
    import torch

    torch.set_num_threads(config.threads)
    torch.manual_seed(SEED)
    rng = torch.Generator().manual_seed(SEED)
    task, model, trainer, cfg = build(config)
    sizes = {"params": unique_params(model.parameters()), "vocab_params": vocab_params(model),
             "shortlist": shortlist_of(cfg, config.method)}
    train = train_words_per_s(trainer, task, config, rng)
    sentences_per_s, tokens_per_s = decode_speed(task, model, cfg, config, rng)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {**sizes, "train_words_per_s": train, "decode_sentences_per_s": sentences_per_s,
            "decode_tokens_per_s": tokens_per_s, "peak_mb": peak_mb}


def measure_in_subprocess(config: Config) -> dict:
    """`config` measured in a process of its own (`--config`); {"error": ...} where it failed."""
    env = dict(os.environ, OMP_NUM_THREADS=str(config.threads), MKL_NUM_THREADS=str(config.threads),
               PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "scripts.bench_scaling", *config_arguments(config)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    return measured(done)


def config_arguments(config: Config) -> list[str]:
    """The command-line arguments that measure `config` alone (in this process)."""
    return ["--config", json.dumps(asdict(config))]


def measured(done: subprocess.CompletedProcess) -> dict:
    """The measurements a `--config` process printed, or {"error": ...} where it failed."""
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    if done.returncode < 0:
        return {"error": f"killed by signal {-done.returncode} (out of memory?)"}
    last = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return {"error": last[-1] if last else f"exit status {done.returncode}"}


def record(config: Config, result: dict, provenance: dict) -> dict:
    """One JSON record: the configuration, its measurements (None where it failed), its origin."""
    measures = {key: result.get(key) for key in (*MEASURES, "shortlist")}
    return {"vocab": config.vocab, "method": config.method, "variant": config.variant, **measures,
            "max_tokens": config.max_tokens, "steps": config.steps, "decode_sentences": config.decode_sentences,
            "beam": BEAM, "decode_length": DECODE_LENGTH, "error": result.get("error", ""),
            **provenance, "threads": config.threads}


def ratio(value: float | None, base: float | None) -> str:
    """value / base as '1.23x', '' where either is missing."""
    return f"{value / base:.2f}x" if value is not None and base else ""


def number(value: float | None, digits: int = 0) -> str:
    """A measurement with thousands separators, '' where missing."""
    return "" if value is None else f"{value:,.{digits}f}"


def markdown(records: Sequence[dict]) -> str:
    """The records as one table, a row each, with ratios to softmax at the same V."""
    head = ("| V | method | shortlist | train words/s | vs softmax | decode sent/s | vs softmax | decode tok/s "
            "| peak MB | vs softmax | params (M) | vocab params (M) | vs softmax | error |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in records:
        base = next((b for b in records if b["vocab"] == r["vocab"] and b["method"] == "softmax"
                     and not b["error"]), {})
        name = r["method"] + (f" {r['variant']}" if r["variant"] else "")
        millions = {key: None if r[key] is None else r[key] / 1e6 for key in ("params", "vocab_params")}
        lines.append(
            f"| {r['vocab']:,} | {name} | {number(r['shortlist'])} | {number(r['train_words_per_s'])} "
            f"| {ratio(r['train_words_per_s'], base.get('train_words_per_s'))} "
            f"| {number(r['decode_sentences_per_s'], 2)} "
            f"| {ratio(r['decode_sentences_per_s'], base.get('decode_sentences_per_s'))} "
            f"| {number(r['decode_tokens_per_s'])} | {number(r['peak_mb'])} "
            f"| {ratio(r['peak_mb'], base.get('peak_mb'))} | {number(millions['params'], 2)} "
            f"| {number(millions['vocab_params'], 2)} | {ratio(r['vocab_params'], base.get('vocab_params'))} "
            f"| {r['error']} |")
    return "\n".join(lines) + "\n"


def summary(records: Sequence[dict]) -> str:
    """What the table measured, under which origin, then the table."""
    if not records:
        return "No configurations.\n"
    first = records[0]
    dirty = " (changed tree)" if first["dirty"] else ""
    return (f"Output layers against the target vocabulary: the CPU demo's model (3+3 layers, d=256), "
            f"{first['cpu']}, {first['threads']} threads, commit {first['commit'][:10]}{dirty}. "
            f"Training: {first['steps']} steps of ~{first['max_tokens']:,} target tokens; decoding: "
            f"{first['decode_sentences']} sentences, beam {first['beam']}, every hypothesis "
            f"{first['decode_length']} tokens + eos. Ratios: to softmax at the same V.\n\n" + markdown(records))


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocabs", type=int, nargs="+", default=list(VOCABS), help="target vocabulary sizes V")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="mhe/mhp input embeddings: full (V x d tables) and/or factored")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (default %(default)s)")
    parser.add_argument("--decode-sentences", type=int, default=64, help="timed sentences (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="target tokens a batch (default %(default)s)")
    parser.add_argument("--threads", type=int, default=threads(), help="torch threads (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="writes OUT/scaling.json and OUT/scaling.md")
    parser.add_argument("--config", help=argparse.SUPPRESS)  # internal: measure one configuration, print JSON
    args = parser.parse_args(argv)
    if not args.config and (args.out is None or min(args.steps, args.decode_sentences, args.max_tokens, args.threads) < 1):
        parser.error("--out is required; --steps, --decode-sentences, --max-tokens and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Measure every configuration, each in its own process; write and return the records."""
    args = parse_arguments(argv)
    if args.config:
        print(json.dumps(measure(Config(**json.loads(args.config)))))
        return []
    provenance = origin()
    records = []
    for config in configs(args.vocabs, args.methods, args.variants, max_tokens=args.max_tokens, steps=args.steps,
                          decode_sentences=args.decode_sentences, threads=args.threads):
        print(f"measuring {config.name}", flush=True)
        records.append(record(config, measure_in_subprocess(config), provenance))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    table = summary(records)
    (args.out / "scaling.md").write_text(table, encoding="utf-8")
    print(table)
    return records


if __name__ == "__main__":
    main()
