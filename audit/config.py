"""The audit stage's configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AuditConfig:
    """How sequences are sampled and scored.

    Attributes:
        n_sequences: sequences to sample (seeded).
        prompt_len, cont_len: P and C in tokens (Pythia: 32 + 32).
        offset: ``start`` (sequence = first P + C tokens of the document) or ``random``
            (a uniformly drawn offset inside the document).
        seed: sampling seed.
        generate: also run batched greedy generation (Pythia's fraction score).
        k: fraction of lowest-scoring tokens for Min-K% and Min-K%++.
        batch_size: sequences per forward pass.
        n_boot: bootstrap resamples for ROC-AUC intervals.
        text_column, id_column: corpus columns (as in dedup).
        count_tokens: tokenize the whole corpus to report tokens kept by dedup (costly).
    """

    n_sequences: int = 1000
    prompt_len: int = 32
    cont_len: int = 32
    offset: str = "start"
    seed: int = 0
    generate: bool = False
    k: float = 0.2
    batch_size: int = 32
    n_boot: int = 1000
    text_column: str = "text"
    id_column: str | None = "id"
    count_tokens: bool = False

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"invalid audit config: {msg}")

        if self.n_sequences < 1:
            bad(f"n_sequences must be >= 1, got {self.n_sequences}")
        if self.prompt_len < 1 or self.cont_len < 1:
            bad(f"prompt_len and cont_len must be >= 1, got {self.prompt_len}, {self.cont_len}")
        if self.offset not in ("start", "random"):
            bad(f"offset must be 'start' or 'random', got {self.offset!r}")
        if not 0.0 < self.k <= 1.0:
            bad(f"k must be in (0, 1], got {self.k}")
        if self.batch_size < 1 or self.n_boot < 0:
            bad("batch_size must be >= 1 and n_boot >= 0")

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.cont_len

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """The tiny, deterministic trainer (``memdedup train``).

    Attributes:
        vocab_size: byte-level BPE vocabulary (trained on the corpus).
        n_layer, n_embd, n_head: GPT-2 shape.
        seq_len: tokens per training instance; documents are cut into instances from
            their start, the last one padded (and masked) if shorter.
        epochs, batch_size, lr, warmup_steps, weight_decay: AdamW with linear warm-up,
            then a constant rate; gradient norm clipped at 1.0.
        seed: every random choice (held-out split, instance order, initialisation).
        holdout: fraction of documents never trained on (the control group of profiles).
        log_checkpoints: checkpoints at steps 1, 2, 4, ... up to this step.
        checkpoint_every: then every this many steps (and always at the final step).
        text_column, id_column: corpus columns.
    """

    vocab_size: int = 1024
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    seq_len: int = 64
    epochs: int = 3
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    seed: int = 0
    holdout: float = 0.1
    log_checkpoints: int = 64
    checkpoint_every: int = 100
    text_column: str = "text"
    id_column: str | None = "id"

    def __post_init__(self) -> None:
        if self.seq_len < 8 or self.n_layer < 1 or self.n_embd % self.n_head:
            raise ValueError("invalid train config: need seq_len >= 8, n_layer >= 1, n_embd divisible by n_head")
        if not 0.0 <= self.holdout < 1.0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("invalid train config: need 0 <= holdout < 1, epochs >= 1, batch_size >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def checkpoint_steps(self, total_steps: int) -> list[int]:
        """Log-spaced early (1, 2, 4, ... <= log_checkpoints), then every
        ``checkpoint_every`` steps, and the final step."""
        steps = set()
        s = 1
        while s <= min(self.log_checkpoints, total_steps):
            steps.add(s)
            s *= 2
        steps.update(range(self.checkpoint_every, total_steps + 1, self.checkpoint_every))
        steps.add(total_steps)
        return sorted(steps)
