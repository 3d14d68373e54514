"""Every random stream of a run, as a named child of one ``numpy.random.SeedSequence`` of the run seed.

A run has one seed (an integer ≥ 0). Each random stream it needs is a child of
``SeedSequence(entropy=seed)`` under a spawn key of its own: the stream's index in
:data:`STREAMS`, followed by the stream's indices (the epoch of a validation, the
round of a lottery chain)::

    stream seed = SeedSequence(entropy=seed, spawn_key=(STREAMS.index(name), *index))
                      .generate_state(2, uint32)  →  (w0 | w1 << 32) mod 2⁶³

NumPy hashes the entropy and the spawn key together (``SeedSequence``, O'Neill's
``seed_seq`` design), so the streams of one seed and of different seeds are
statistically independent; none is another one shifted by one (which ``seed + 1``
would be: the mask-sampling stream of seed 0 was the batch order of seed 2). Every
stream has a fixed number of indices, so no two (stream, indices) give the same spawn
key; a seed below 2¹²⁸ fills NumPy's entropy pool of four words exactly. A value
is below 2⁶³, a valid seed for ``torch.Generator.manual_seed`` and for
``numpy.random.default_rng``.

No Kedro here: the library and the pipeline nodes read the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The streams of a run, in spawn-key order (never reorder: a seed's values would change).
#: ``validation`` takes the epoch (≥ 1 in the engine) and ``lottery_round`` the round
#: (≥ 0) as their one index; every other stream takes none. A new stream goes last.
STREAMS: tuple[str, ...] = (
    "weights",  # initial weights of the network
    "mask_scores",  # initial mask scores
    "batch_order",  # the permutation of the training split each epoch
    "augmentation",  # random crops and flips of training batches
    "mask_sampling",  # stochastic masks drawn during training (Bernoulli, ASLP)
    "sampled_evaluation",  # the masks of the test evaluation over sampled masks
    "validation",  # the one sampled mask of the validation after epoch e
    "lottery_round",  # random choices of pruning round r (random criterion, re-drawn weights)
    "mask_criteria",  # the random criterion of the masks scored at initialisation (mask_criteria pipeline)
)

#: Number of indices each stream takes after its name.
_INDICES = {"validation": 1, "lottery_round": 1}

_MASK_63 = (1 << 63) - 1


def _check_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be an integer ≥ 0, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class RunSeeds:
    """The seeds of every random stream of one run (see the module docstring for the scheme).

    Attributes:
        seed: the run seed, an integer ≥ 0 (not a bool).

    Raises:
        ValueError: ``seed`` is not an integer ≥ 0.
    """

    seed: int

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"The run seed must be an integer ≥ 0, got {self.seed!r}.")
        object.__setattr__(self, "seed", int(self.seed))

    def stream(self, name: str, *index: int) -> int:
        """The seed of stream ``name`` (with its indices, e.g. the epoch of ``validation``).

        Args:
            name: one of :data:`STREAMS`.
            index: integers ≥ 0; ``validation`` and ``lottery_round`` take exactly one, the
                others none.

        Returns:
            An integer in [0, 2⁶³).

        Raises:
            ValueError: an unknown stream (the message lists :data:`STREAMS`), or the wrong
                number of indices or an index that is not an integer ≥ 0.
        """
        if name not in STREAMS:
            raise ValueError(f"Unknown random stream {name!r}; the streams of a run are {list(STREAMS)}.")
        expected = _INDICES.get(name, 0)
        if len(index) != expected:
            takes = {0: "no index", 1: "one index"}[expected]
            raise ValueError(f"Random stream {name!r} takes {takes}, got {len(index)}: {index!r}.")
        key = (STREAMS.index(name), *(_check_index(i, f"The index of stream {name!r}") for i in index))
        low, high = np.random.SeedSequence(entropy=self.seed, spawn_key=key).generate_state(2, np.uint32)
        return (int(low) | int(high) << 32) & _MASK_63

    @property
    def weights(self) -> int:
        """Seed of the initial weights."""
        return self.stream("weights")

    @property
    def mask_scores(self) -> int:
        """Seed of the initial mask scores."""
        return self.stream("mask_scores")

    @property
    def batch_order(self) -> int:
        """Seed of the CPU generator of the per-epoch permutation of the training split."""
        return self.stream("batch_order")

    @property
    def augmentation(self) -> int:
        """Seed of the device generator of the batch augmentation."""
        return self.stream("augmentation")

    @property
    def mask_sampling(self) -> int:
        """Seed of the network's mask-sampling generator during training (stochastic strategies)."""
        return self.stream("mask_sampling")

    @property
    def sampled_evaluation(self) -> int:
        """Seed of the masks drawn for the evaluation over sampled masks (Zhou et al. 2019, Section 5)."""
        return self.stream("sampled_evaluation")

    @property
    def mask_criteria(self) -> int:
        """Seed of the ``random`` criterion's masks in the mask-criteria comparison
        (supermasks at initialisation, Zhou et al. 2019)."""
        return self.stream("mask_criteria")

    def validation(self, epoch: int) -> int:
        """Seed of the one mask sampled for the validation after ``epoch`` (integer ≥ 0)."""
        return self.stream("validation", epoch)

    def lottery_round(self, round_index: int) -> int:
        """Seed of the random choices of pruning round ``round_index`` (integer ≥ 0)."""
        return self.stream("lottery_round", round_index)


__all__ = ["STREAMS", "RunSeeds"]
