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
