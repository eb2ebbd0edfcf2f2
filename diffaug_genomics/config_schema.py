"""What a run configuration holds: the typed sections, every key's default beside its valid
values (:func:`choice`: one of a list; :func:`bounded`: a numeric range), and its hash.

Each list of choices has one home: here, or (``data.policy``) the module that implements it;
the modules that act on a key import its list from here. Building a configuration (defaults <
preset < ``--config`` < ``--set`` < flags) and checking every value against these is
:mod:`diffaug_genomics.config`, which also re-exports these names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from diffaug_genomics.io.onehot import POLICIES

PRESETS = ("tiny", "default", "paper")
AUGMENTS = ("diffaug", "knn-mixup", "handcrafted")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
"""``precision`` (:mod:`diffaug_genomics.train.precision`)."""
BATCH_SCALINGS = ("auto", "fixed")
LOSSES = ("soft", "infonce")
KNN_SPACES = ("onehot-pca", "kmer", "pca", "embedding")
SCALINGS = ("standard", "minmax", "none")
BETA_SCHEDULES = ("cosine", "linear")
"""``generator.beta_schedule`` (:mod:`diffaug_genomics.diffusion`)."""
PREDICTION_TYPES = ("epsilon", "v_prediction")
SAMPLERS = ("ddim", "ddpm")
"""``bank.sampler`` (:meth:`diffaug_genomics.diffusion.Diffusion.sample`)."""
LR_SCHEDULES = ("cosine", "constant")
SYMMETRY_MODES = ("auto", "none")
EXPORT_CHOICES = ("best", "final")
EXPORT_CRITERIA = ("eff_rank", "uniformity", "nbr_agreement", "feature_agreement")
"""The label-free criteria an encoder state is scored by (:mod:`diffaug_genomics.train.export`;
all logged in ``metrics.csv``)."""


@dataclass(frozen=True)
class Bound:
    """The valid values of a numeric config key: ``lo`` / ``hi`` (None: unbounded), each
    inclusive unless ``lo_open`` / ``hi_open``. A list key (``channels``, ``[lo, hi]`` pairs)
    bounds every item."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):  # NaN, .inf
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None
                    and (value > self.hi or (self.hi_open and value == self.hi)))

    def describe(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return " and ".join(p for p in (lo, hi) if p) or "a finite number"


POSITIVE_INT = Bound(1)
COUNT = Bound(0)  # epochs, rounds, steps: 0 allowed
PROBABILITY = Bound(0.0, 1.0)
POSITIVE_REAL = Bound(0.0, lo_open=True)
NON_NEGATIVE_REAL = Bound(0.0)


def bounded(default: Any, bound: Bound, pair: bool = False) -> Any:
    """A numeric field (or list of numbers) with its valid range; ``pair``: a ``[lo, hi]``
    list (two items, lo <= hi, each within ``bound``)."""
    meta = {"bound": bound, "pair": pair}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A text field whose value is one of ``choices``."""
    return field(default=default, metadata={"choices": choices})


@dataclass
class DataConfig:
    """How sequences become fixed-length one-hot rows (see ``diffaug encode``)."""

    length: int | None = bounded(None, POSITIVE_INT)  # bp; None = longest record in the input
    policy: str = choice("center", POLICIES)
    stride: int | None = bounded(None, POSITIVE_INT)  # bp, for policy=window


@dataclass
class EncoderConfig:
    """Semantic encoder f(x) -> z and the projection head g(z) -> y used only by the loss.

    ``width`` and ``n_blocks`` size every backbone: ``conv1d`` (channels, residual blocks),
    ``spectrum`` (units of each hidden layer of its MLP, hidden layers), ``resnet`` (channels of the first of three stages, residual blocks per stage), ``mlp``
    (units of each hidden layer, hidden layers).
    """

    backbone: str = "conv1d"
    width: int = bounded(128, POSITIVE_INT)
    n_blocks: int = bounded(3, POSITIVE_INT)
    stem_kernel: int = bounded(15, POSITIVE_INT)
    block_kernel: int = bounded(5, POSITIVE_INT)
    embed_dim: int = bounded(128, POSITIVE_INT)
    proj_hidden: int = bounded(256, POSITIVE_INT)
    proj_dim: int = bounded(64, POSITIVE_INT)
    rc: bool = False  # reverse-complement invariance: domain knowledge, off by default
    # Recompute batch-norm running statistics on clean training rows after every encoder epoch
    # (so the frozen encoder that conditions the generator, and the exported weights, normalise
    # with the data's statistics, not a momentum average that still holds its initial values).
    recalibrate_bn: bool = True
    # spectrum backbone: k of the k-mer spectrum, the position profile's weight beside it, and
    # whether its projection starts at the features' principal directions (training rows)
    kmer_k: int = bounded(5, Bound(1, 8))
    position_weight: float = bounded(0.7, NON_NEGATIVE_REAL)
    pca_init: bool = True
    # spectrum backbone with pca_init: how many of the projection's starting directions read
    # the position profile. None (auto): as many as the profile has principal directions above
    # those of the same rows with their positions shuffled (what composition alone explains;
    # parallel analysis), the spectrum gets the rest. A number fixes it.
    position_dims: int | None = bounded(None, COUNT)


@dataclass
class LossConfig:
    """Contrastive loss: ``infonce`` (NT-Xent) or ``soft`` (the paper's Student-t loss).

    InfoNCE is the default: on the DHS validation split the soft loss barely moved from its
    starting value in our budget (benchmarks/results/selection.md); the ``paper`` preset uses it."""

    name: str = choice("infonce", LOSSES)
    temperature: float = bounded(0.2, POSITIVE_REAL)  # infonce
    nu_z: float = bounded(100.0, POSITIVE_REAL)  # soft: degrees of freedom in embedding space
    nu_y: float = bounded(0.01, POSITIVE_REAL)  # soft: degrees of freedom in projection space


@dataclass
class KnnConfig:
    """Phase-1 positives: kNN-mixup with neighbours in a domain-knowledge-free space."""

    space: str = choice("kmer", KNN_SPACES)
    k: int = bounded(10, POSITIVE_INT)
    kmer_k: int = bounded(4, Bound(1, 12))
    pca_dim: int = bounded(50, POSITIVE_INT)
    alpha_min: float = bounded(0.0, PROBABILITY)
    alpha_max: float = bounded(1.0, PROBABILITY)


@dataclass
class HandcraftedConfig:
    """EvoAug-style hand-designed augmentations (the ``--augment handcrafted`` baseline)."""

    mutation_rate: list[float] = bounded([0.05, 0.10], PROBABILITY, pair=True)
    rc_prob: float = bounded(0.5, PROBABILITY)
    max_shift: int = bounded(10, COUNT)
    indel_prob: float = bounded(0.5, PROBABILITY)
    indel_size: list[int] = bounded([1, 20], POSITIVE_INT, pair=True)


@dataclass
class ImageConfig:
    """Images: the SimCLR-style hand-designed baseline (``--augment handcrafted``).

    Each view: a random resized crop (area fraction ``crop_scale``, aspect ratio ``crop_ratio``)
    resampled to the full size, a horizontal flip, colour jitter, random grayscale (colour
    images only), Gaussian blur (``blur_sigma`` in pixels; kernel about a tenth of the side).
    """

    crop_scale: list[float] = bounded([0.5, 1.0], Bound(0.0, 1.0, lo_open=True), pair=True)
    crop_ratio: list[float] = bounded([0.75, 1.3333], POSITIVE_REAL, pair=True)
    flip_prob: float = bounded(0.5, PROBABILITY)
    jitter_prob: float = bounded(0.8, PROBABILITY)
    brightness: float = bounded(0.4, NON_NEGATIVE_REAL)
    contrast: float = bounded(0.4, NON_NEGATIVE_REAL)
    saturation: float = bounded(0.4, NON_NEGATIVE_REAL)
    grayscale_prob: float = bounded(0.2, PROBABILITY)
    blur_prob: float = bounded(0.5, PROBABILITY)
    blur_sigma: list[float] = bounded([0.1, 2.0], POSITIVE_REAL, pair=True)


@dataclass
class TabularConfig:
    """Tables and single-cell matrices: feature scaling and the SCARF-style baseline."""

    scaling: str = choice("standard", SCALINGS)
    # SCARF: fraction of features replaced from the marginals
    corruption_rate: float = bounded(0.6, PROBABILITY)
    # Gaussian noise added to every feature, in scaled units
    noise_std: float = bounded(0.1, NON_NEGATIVE_REAL)


@dataclass
class GeneratorConfig:
    """Conditional diffusion model p(x | z): the denoiser and its noise schedule.

    ``channels``: channels per U-Net level, finest first (``unet1d``, ``unet2d``), or the width
    of each residual block (``resmlp``).
    """

    backbone: str = "unet1d"
    channels: list[int] = bounded([48, 96, 96], POSITIVE_INT)
    time_dim: int = bounded(128, Bound(2))
    num_train_timesteps: int = bounded(1000, Bound(2))
    beta_schedule: str = choice("cosine", BETA_SCHEDULES)
    prediction_type: str = choice("epsilon", PREDICTION_TYPES)
    # probability of training unconditionally (classifier-free)
    cond_dropout: float = bounded(0.1, PROBABILITY)
    ema_decay: float = bounded(0.998, Bound(0.0, 1.0, hi_open=True))
    # Restart the EMA at every generator stage and warm its decay up as min(ema_decay,
    # (1 + n) / (10 + n)) over the stage's steps n, so the weights sampled from average this
    # round's training at any budget. false: one EMA from the random initial weights, carried
    # across rounds (the earlier behaviour, kept to reproduce old runs).
    ema_warmup: bool = True
    lr: float = bounded(1e-3, POSITIVE_REAL)
    batch_size: int = bounded(256, POSITIVE_INT)
    steps: int = bounded(750, COUNT)  # optimisation steps per round
    steps_per_checkpoint: int = bounded(250, POSITIVE_INT)


@dataclass
class BankConfig:
    """The bank of generated positives, refreshed once per round."""

    # fraction of positives drawn from the bank in encoder phases
    fraction: float = bounded(1.0, PROBABILITY)
    sampler: str = choice("ddim", SAMPLERS)
    steps: int = bounded(20, POSITIVE_INT)
    # 1.0 = from pure noise; < 1 = SDEdit from the noised source
    strength: float = bounded(0.5, PROBABILITY)
    guidance_scale: float = bounded(2.0, NON_NEGATIVE_REAL)
    eta: float = bounded(0.0, PROBABILITY)
    batch_size: int = bounded(500, POSITIVE_INT)
    # Snap each generated positive to the data's discrete values before the encoder sees it
    # (DNA: the argmax one-hot, a real sequence); false keeps the continuous sample.
    discrete: bool = False
    # Positives generated per training sample at each refresh; every encoder step draws one of
    # them at random, so an encoder phase does not see the same pair epoch after epoch.
    per_sequence: int = bounded(1, POSITIVE_INT)
    # Both views generated (two different draws; needs per_sequence >= 2) instead of the source
    # against one generated positive.
    both_views: bool = False


@dataclass
class ScheduleConfig:
    """Warm-up, then ``rounds`` x (generator -> bank refresh -> encoder)."""

    warmup_epochs: int = bounded(4, COUNT)
    rounds: int = bounded(2, COUNT)
    epochs_per_round: int = bounded(8, COUNT)


@dataclass
class OptimConfig:
    """Encoder optimiser (AdamW) and learning-rate schedule over all encoder epochs."""

    lr: float = bounded(1e-3, POSITIVE_REAL)
    weight_decay: float = bounded(1e-4, NON_NEGATIVE_REAL)
    batch_size: int = bounded(256, POSITIVE_INT)
    lr_schedule: str = choice("cosine", LR_SCHEDULES)
    min_lr_ratio: float = bounded(0.1, PROBABILITY)


@dataclass
class SymmetryConfig:
    """Symmetries learned from the training rows (:mod:`diffaug_genomics.symmetry`).

    ``auto`` scores every candidate transform the modality offers (DNA: the 24 permutations of
    the alphabet, each with and without reversal, by their ``kmer_k``-mer distribution) against
    a noise floor measured on the same rows and accepts the ones the data obeys; ``none`` skips
    it. Nothing in it names a particular map."""

    # auto: accept the maps the training rows obey (measured); none: skip
    mode: str = choice("auto", SYMMETRY_MODES)
    # accept a candidate scoring at most this x the noise floor
    accept_ratio: float = bounded(1.5, POSITIVE_REAL)
    # ... when every other one scores at least this x its score
    gap_ratio: float = bounded(3.0, Bound(1.0))
    # training rows scored (a seeded sample when there are more)
    max_rows: int = bounded(20000, Bound(2))
    # DNA: length of the k-mers whose distribution is compared
    kmer_k: int = bounded(4, Bound(1, 8))


@dataclass
class ExportConfig:
    """Which encoder state ``fit`` exports as ``encoder.pt``.

    The start (after the data-dependent initialisation) and the end of every encoder stage are
    candidates; ``best`` exports the one with the highest label-free ``criterion`` on the
    diagnostic rows, ``final`` the last one (:mod:`diffaug_genomics.train.export`)."""

    # best: the state the criterion scores highest; final: the last one
    choose: str = choice("best", EXPORT_CHOICES)
    # The label-free score of a state (feature_agreement: the embedding's nearest neighbours
    # shared with those of the encoder's own input features; nbr_agreement: with the kNN
    # space's; eff_rank; uniformity).
    criterion: str = choice("feature_agreement", EXPORT_CRITERIA)


@dataclass
class Config:
    """The whole resolved configuration of a ``diffaug fit`` run."""

    seed: int = bounded(0, Bound(0, 2**63 - 1))
    device: str = choice("auto", DEVICES)
    precision: str = choice("auto", PRECISIONS)
    compile: bool = False  # torch.compile the models' forward passes (falls back when it fails)
    # auto: on a GPU, batches (and learning rates) scaled to the device (train/autotune);
    # fixed: the configured batches
    batch_scaling: str = choice("auto", BATCH_SCALINGS)
    # seconds between unit-boundary checkpoints (0: every unit)
    checkpoint_every_s: float = bounded(60.0, Bound(0))
    augment: str = choice("diffaug", AUGMENTS)
    modality: str = "dna"
    log_every: int = bounded(10, POSITIVE_INT)  # steps between metrics.csv rows
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    handcrafted: HandcraftedConfig = field(default_factory=HandcraftedConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    tabular: TabularConfig = field(default_factory=TabularConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    symmetry: SymmetryConfig = field(default_factory=SymmetryConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-ready)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short sha256 of the canonical JSON form: identifies a configuration.

        Sections and keys added after 0.1.0 (:data:`LATER_SECTIONS`, :data:`LATER_KEYS`) enter
        only when they differ from their defaults, so a run started with 0.1.0 keeps its hash
        and can still be resumed. :data:`EXECUTION_KEYS` never enter: they say how a run is
        computed, not what it computes, so a run may be resumed with other values (on another
        kind of node, say); it is then not bit-identical to an uninterrupted run.
        """
        data = self.to_dict()
        for name in EXECUTION_KEYS:
            del data[name]
        defaults = Config().to_dict()
        for name in LATER_SECTIONS:
            if data[name] == defaults[name]:
                del data[name]
        for key in LATER_KEYS:
            section, name = key.split(".")
            if data[section][name] == defaults[section][name]:
                del data[section][name]
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


LATER_SECTIONS = ("image", "tabular", "symmetry", "export")
"""Config sections that did not exist in 0.1.0 (see :meth:`Config.hash`)."""
LATER_KEYS = ("bank.discrete", "bank.per_sequence", "bank.both_views", "encoder.recalibrate_bn",
              "generator.ema_warmup", "encoder.kmer_k", "encoder.position_weight",
              "encoder.pca_init", "encoder.position_dims")
"""Keys of 0.1.0's sections added since (see :meth:`Config.hash`)."""
EXECUTION_KEYS = ("precision", "compile", "checkpoint_every_s", "batch_scaling")
"""Top-level keys left out of :meth:`Config.hash` (how a run computes, not what)."""

# Keys written into config.yaml for the record (versions, world size); ignored when read back.
RECORD_KEYS = ("versions", "world_size", "global_batch_size", "resolved_precision", "preset",
               "input", "input_bytes", "input_sha256", "label_column", "obs_key",
               "discovered_symmetry", "start", "exported", "precision_decision",
               "resolved_batch_scaling")
