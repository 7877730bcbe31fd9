"""The audit stages' configurations: frozen dataclasses, validated on construction, each field declared once with
:func:`dedup.config.option`: ``memdedup``'s parser and README's configuration reference are generated from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dedup.config import StageConfig, option

# Fewest bootstrap resamples for a 95% percentile interval: each 2.5% tail holds one, 1 / 0.025 = 40
# (with fewer an end is the extreme resample). 0 means no interval.
MIN_BOOT = 40
_FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max: torch's optimizer steps are float32


def _check_n_boot(config: StageConfig) -> None:
    """``config._bad`` unless its ``n_boot`` can give a 95% percentile interval."""
    if config.n_boot < 0 or 0 < config.n_boot < MIN_BOOT:
        config._bad(f"n_boot must be 0 (no interval) or >= {MIN_BOOT} (1 / 0.025 resamples per 2.5% tail), "
                    f"got {config.n_boot}")


def _at_least(config: StageConfig, **least: int) -> None:
    """``config._bad`` for the first of the named fields (in argument order) below its least value (None passes)."""
    for name, low in least.items():
        if (value := getattr(config, name)) is not None and value < low:
            config._bad(f"{name} must be >= {low}, got {value}")


def _doublings(limit: int) -> list[int]:
    """1, 2, 4, ... up to ``limit`` (none below 1)."""
    return [1 << i for i in range(max(int(limit), 0).bit_length())]


@dataclass(frozen=True)
class AuditConfig(StageConfig):
    """How sequences are sampled and scored (``memdedup audit``); fields: the declarations below."""

    n_sequences: int = option(1000, "sequences to sample (seeded)", unit="sequences", short="-n")
    prompt_len: int = option(32, "prompt length P; Pythia uses 32 + 32", unit="tokens")
    cont_len: int = option(32, "continuation length C", unit="tokens")
    offset: str = option("start", "where a sequence starts: its document's first token, or a uniformly "
                                  "drawn offset inside the document", choices=("start", "random"))
    seed: int = option(0, "sampling seed")
    generate: bool = option(False, "also run batched greedy generation, for Pythia's fraction score")
    k: float = option(0.2, "fraction of lowest-scoring tokens for Min-K% and Min-K%++, in (0, 1]")
    batch_size: int | str = option(32, "sequences per forward pass, or auto: the largest power of two whose "
                                       "logits and activations fit in half the free memory, at most 64 on a CPU "
                                       "and 1024 on a GPU (audit.batching; recorded in the manifest)",
                                   unit="sequences")
    n_boot: int = option(1000, "bootstrap resamples for ROC-AUC intervals: 0 (none) or at least 40", unit="resamples")
    text_column: str = option("text", "corpus text column, as in dedup")
    id_column: str | None = option("id", "corpus id column, as in dedup: a column named by --id-column must exist; "
                                         "'' for no ids", none="no ids", flag_sets={"id_column_required": True})
    id_column_required: bool = option(False, "a file without id_column is an error; set by --id-column", cli=False)
    count_tokens: bool = option(False, "tokenize the whole corpus to report tokens kept by dedup; costly")
    per_bucket: int | None = option(None, "Carlini et al. 2022's sampling: keep at most this many distinct sequences "
                                          "per occurrence bucket, from the -n sampled candidates", unit="sequences",
                                    none="every sampled sequence")
    bos: str = option("auto", "BOS before each sequence: auto = what the tokenizer adds by default (Llama-family "
                              "BOS; none for GPT-2), as MIMIR; never = none; recorded in the manifest",
                      choices=("auto", "never"))

    def __post_init__(self) -> None:
        self._check_fields()
        _at_least(self, n_sequences=1, seed=0)
        if self.prompt_len < 1 or self.cont_len < 1:
            self._bad(f"prompt_len and cont_len must be >= 1, got {self.prompt_len}, {self.cont_len}")
        if not 0.0 < self.k <= 1.0:
            self._bad(f"k must be in (0, 1], got {self.k}")
        _at_least(self, per_bucket=1)
        if isinstance(self.batch_size, str) and self.batch_size != "auto":
            self._bad(f"batch_size must be an integer >= 1 or auto, got {self.batch_size!r}")
        if self.batch_size != "auto" and self.batch_size < 1:
            self._bad(f"batch_size must be >= 1 (or auto), got {self.batch_size}")
        _check_n_boot(self)

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.cont_len


@dataclass(frozen=True)
class TrainConfig(StageConfig):
    """The tiny, deterministic trainer (``memdedup train``): AdamW, linear warm-up then constant, gradient
    norm clipped at 1.0."""

    vocab_size: int = option(1024, "byte-level BPE vocabulary, trained on the corpus, at least 257", unit="tokens")
    n_layer: int = option(2, "GPT-2 layers")
    n_embd: int = option(128, "GPT-2 width, divisible by n_head")
    n_head: int = option(4, "attention heads")
    # Documents are cut into instances from their start, the last one padded (and masked) if shorter.
    seq_len: int = option(64, "tokens per training instance, at least 8", unit="tokens")
    epochs: int = option(3, "passes over the training instances", unit="epochs")
    batch_size: int = option(16, "instances per step", unit="instances")
    lr: float = option(3e-3, "AdamW learning rate after warm-up")
    warmup_steps: int = option(50, "linear warm-up of the learning rate", unit="steps")
    weight_decay: float = option(0.01, "AdamW weight decay")
    seed: int = option(0, "seed of every random choice: held-out split, instance order, initialisation")
    holdout: float = option(0.1, "fraction of documents never trained on: the profiles' control group")
    log_checkpoints: int = option(64, "checkpoints at steps 1, 2, 4, ... up to this step", unit="steps")
    checkpoint_every: int = option(100, "then a checkpoint every this many steps, at the last step of every epoch "
                                        "and at the final step", unit="steps")
    text_column: str = option("text", "corpus text column")
    id_column: str | None = option("id", "corpus id column; a column named by --id-column must exist; '' for no ids "
                                         "(documents named shard:row)", none="no ids",
                                   flag_sets={"id_column_required": True})
    # changes no output, only whether a missing column is refused: not recorded, so not compared on resume
    id_column_required: bool = option(False, "a file without id_column is an error; set by --id-column", cli=False)
    # torch's CPU LayerNorm backward sums per thread: the weights depend on the count, so it is config, not environment
    threads: int = option(1, "torch threads training runs on, whatever OMP_NUM_THREADS says: the weights depend on "
                             "their number (README: Threads and determinism)")
    retention_items: int | None = option(None, "retention run (Orhan 2024): this many full-length instances of unique "
                                               "text are trained once, in one window right after warm-up, never "
                                               "again; checkpoints at the step before it (items unseen) and 0, 1, "
                                               "2, 4, ... steps after", unit="instances",
                                         none="no retention design")

    def __post_init__(self) -> None:
        self._check_fields()
        _at_least(self, retention_items=1)
        if self.vocab_size < 257:  # byte-level BPE: 256 bytes and <|endoftext|> before any merge
            self._bad(f"vocab_size must be >= 257 (256 bytes + <|endoftext|>), got {self.vocab_size}")
        if self.n_head < 1 or self.n_embd < 1 or self.n_embd % self.n_head:
            self._bad(f"need n_head >= 1 and n_embd >= 1 divisible by n_head, got n_embd={self.n_embd}, "
                      f"n_head={self.n_head}")
        if self.seq_len < 8 or self.n_layer < 1:
            self._bad(f"need seq_len >= 8, n_layer >= 1, got seq_len={self.seq_len}, n_layer={self.n_layer}")
        if not (self.lr > 0.0 and math.isfinite(self.lr)) or not 0.0 <= self.weight_decay < math.inf:
            self._bad(f"need lr > 0 and weight_decay >= 0, finite, got {self.lr}, {self.weight_decay}")
        if max(self.lr, self.lr * self.weight_decay) > _FLOAT32_MAX:  # torch's float32 step: a traceback beyond
            self._bad(f"lr and lr * weight_decay must be at most {_FLOAT32_MAX:.4g} (float32), got {self.lr}, "
                      f"{self.lr * self.weight_decay}")
        _at_least(self, warmup_steps=0, log_checkpoints=0, seed=0, threads=1, checkpoint_every=1)
        if self.seed >= 2**64:  # torch.manual_seed's range: it fails only after the run state is written
            self._bad(f"seed must be < 2^64, got {self.seed}")
        if not 0.0 <= self.holdout < 1.0 or self.epochs < 1 or self.batch_size < 1:
            self._bad(f"need 0 <= holdout < 1, epochs >= 1, batch_size >= 1, got holdout={self.holdout}, "
                      f"epochs={self.epochs}, batch_size={self.batch_size}")

    def checkpoint_steps(self, total_steps: int, *, epoch_ends: list[int] | None = None,
                         retention: list[int] | None = None) -> list[int]:
        """Steps 1, 2, 4, ... <= log_checkpoints, every ``checkpoint_every``, each epoch's last
        (profiles end with epoch 1, Lesci et al. 2024), a retention run's probes and the final step."""
        steps = {int(s) for s in [*(retention or []), *(epoch_ends or [])] if 1 <= s <= total_steps}
        steps.update(_doublings(min(self.log_checkpoints, total_steps)))
        steps.update(range(self.checkpoint_every, total_steps + 1, self.checkpoint_every))
        steps.add(total_steps)
        return sorted(steps)


def retention_checkpoints(window_start: int, exposure_step: int, total_steps: int) -> list[int]:
    """A retention run's probe steps (Orhan 2024): ``window_start - 1`` (items unseen, if >= 1), the
    exposure step ``e`` (the window's last), then ``e + 1, e + 2, e + 4, ...`` up to ``total_steps``.

    >>> retention_checkpoints(6, 6, 40)
    [5, 6, 7, 8, 10, 14, 22, 38]
    """
    steps = {exposure_step} | ({window_start - 1} if window_start > 1 else set())
    steps.update(exposure_step + k for k in _doublings(total_steps - exposure_step))
    return sorted(steps)


@dataclass(frozen=True)
class ProfileConfig(StageConfig):
    """Memorisation profiles over a run's checkpoints (``memdedup profile``,
    :func:`audit.checkpoints.run_profile`)."""

    n_treated: int = option(400, "trained instances audited in all: a seeded sample of full-length ones, stratified "
                                 "by cohort (each cohort's share rounded up: up to one more per cohort)",
                            unit="instances")
    n_per_cohort: int | None = option(None, "trained instances sampled per cohort (Lesci et al. sample 100 per "
                                            "cohort)", unit="instances",
                                      none="n_treated divided evenly among the cohorts, rounded up")
    min_cohort_size: int = option(10, "adjacent early cohorts are merged until each has this many instances",
                                  unit="instances")
    n_control: int = option(200, "held-out instances, half control group and half placebo cohort; at least 4",
                            unit="instances")
    outcome: str = option("surprisal", "per-instance outcome: mean token surprisal (nats) or teacher-forced "
                                       "accuracy", choices=("surprisal", "accuracy"))
    n_boot: int = option(200, "bootstrap resamples for the profile intervals: 0 (none) or at least 40",
                         unit="resamples")
    seed: int = option(0, "sampling seed")
    batch_size: int = option(64, "sequences per forward pass", unit="sequences")
    early_checkpoint: int | None = option(None, "step of the early audit for forecasting, before the final checkpoint",
                                          unit="steps",
                                          none="the profiled checkpoint closest to half the last one's step")
    checkpoints: str | None = option(None, "comma-separated checkpoint steps to profile (a list in a config file), "
                                           "a subset of the run's (e.g. 1,1000,2000); the panel still ends at the end "
                                           "of epoch 1; a retention run's probes keep their own checkpoints",
                                     none="every checkpoint of the run")

    def __post_init__(self) -> None:
        steps = self.checkpoints
        if isinstance(steps, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in steps):
            object.__setattr__(self, "checkpoints", ",".join(map(str, steps)))  # a YAML list, as its string
        self._check_fields()
        if self.n_treated < 1 or self.n_control < 4:
            self._bad(f"need n_treated >= 1 and n_control >= 4, got n_treated={self.n_treated}, "
                      f"n_control={self.n_control}")
        _at_least(self, seed=0)
        if (self.n_per_cohort is not None and self.n_per_cohort < 1) or self.min_cohort_size < 1:
            self._bad(f"need n_per_cohort >= 1 and min_cohort_size >= 1, got n_per_cohort={self.n_per_cohort}, "
                      f"min_cohort_size={self.min_cohort_size}")
        _at_least(self, batch_size=1)
        _check_n_boot(self)
        if self.checkpoints is not None:
            try:
                grid = self.checkpoint_grid()
            except ValueError:
                self._bad(f"checkpoints must be comma-separated integer steps, got {self.checkpoints!r}")
            if grid and grid[0] < 0:
                self._bad(f"checkpoint steps must be >= 0, got {grid[0]}")
            if len(grid) < 2:
                self._bad(f"checkpoints must name at least 2 steps, got {self.checkpoints!r}")

    def checkpoint_grid(self) -> list[int] | None:
        """The user's checkpoint steps, sorted and unique (None: every checkpoint)."""
        if self.checkpoints is None:
            return None
        return sorted({int(x) for x in str(self.checkpoints).replace(" ", "").split(",") if x})
