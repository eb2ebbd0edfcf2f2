"""What a run configuration holds: the typed sections and their defaults, and its hash.

Building one (defaults < preset < ``--config`` < ``--set`` < flags) and checking every value is
:mod:`diffaug_genomics.config`, which also re-exports these names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

PRESETS = ("tiny", "default", "paper")
AUGMENTS = ("diffaug", "knn-mixup", "handcrafted")


@dataclass
class DataConfig:
    """How sequences become fixed-length one-hot rows (see ``diffaug encode``)."""

    length: int | None = None  # bp; None = longest record in the input
    policy: str = "center"  # pad | crop | center | window
    stride: int | None = None  # bp, for policy=window


@dataclass
class EncoderConfig:
    """Semantic encoder f(x) -> z and the projection head g(z) -> y used only by the loss.

    ``width`` and ``n_blocks`` size every backbone: ``conv1d`` (channels, residual blocks),
    ``spectrum`` (units of each hidden layer of its MLP, hidden layers), ``resnet`` (channels of the first of three stages, residual blocks per stage), ``mlp``
    (units of each hidden layer, hidden layers).
    """

    backbone: str = "conv1d"
    width: int = 128
    n_blocks: int = 3
    stem_kernel: int = 15
    block_kernel: int = 5
    embed_dim: int = 128
    proj_hidden: int = 256
    proj_dim: int = 64
    rc: bool = False  # reverse-complement invariance: domain knowledge, off by default
    # Recompute batch-norm running statistics on clean training rows after every encoder epoch
    # (so the frozen encoder that conditions the generator, and the exported weights, normalise
    # with the data's statistics, not a momentum average that still holds its initial values).
    recalibrate_bn: bool = True
    # spectrum backbone: k of the k-mer spectrum, the position profile's weight beside it, and
    # whether its projection starts at the features' principal directions (training rows)
    kmer_k: int = 5
    position_weight: float = 0.7
    pca_init: bool = True
    # spectrum backbone with pca_init: how many of the projection's starting directions read
    # the position profile. None (auto): as many as the profile has principal directions above
    # those of the same rows with their positions shuffled (what composition alone explains;
    # parallel analysis), the spectrum gets the rest. A number fixes it.
    position_dims: int | None = None


@dataclass
class LossConfig:
    """Contrastive loss: ``infonce`` (NT-Xent) or ``soft`` (the paper's Student-t loss).

    InfoNCE is the default: on the DHS validation split the soft loss barely moved from its
    starting value in our budget (benchmarks/results/selection.md); the ``paper`` preset uses it."""

    name: str = "infonce"
    temperature: float = 0.2  # infonce
    nu_z: float = 100.0  # soft: degrees of freedom in embedding space
    nu_y: float = 0.01  # soft: degrees of freedom in projection space


@dataclass
class KnnConfig:
    """Phase-1 positives: kNN-mixup with neighbours in a domain-knowledge-free space."""

    space: str = "kmer"  # onehot-pca | kmer (DNA) | pca (images, tables) | embedding
    k: int = 10
    kmer_k: int = 4
    pca_dim: int = 50
    alpha_min: float = 0.0
    alpha_max: float = 1.0


@dataclass
class HandcraftedConfig:
    """EvoAug-style hand-designed augmentations (the ``--augment handcrafted`` baseline)."""

    mutation_rate: list[float] = field(default_factory=lambda: [0.05, 0.10])
    rc_prob: float = 0.5
    max_shift: int = 10
    indel_prob: float = 0.5
    indel_size: list[int] = field(default_factory=lambda: [1, 20])


@dataclass
class ImageConfig:
    """Images: the SimCLR-style hand-designed baseline (``--augment handcrafted``).

    Each view: a random resized crop (area fraction ``crop_scale``, aspect ratio ``crop_ratio``)
    resampled to the full size, a horizontal flip, colour jitter, random grayscale (colour
    images only), Gaussian blur (``blur_sigma`` in pixels; kernel about a tenth of the side).
    """

    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])


@dataclass
class TabularConfig:
    """Tables and single-cell matrices: feature scaling and the SCARF-style baseline."""

    scaling: str = "standard"  # standard (z-score) | minmax (to [-1, 1]) | none
    corruption_rate: float = 0.6  # SCARF: fraction of features replaced from the marginals
    noise_std: float = 0.1  # Gaussian noise added to every feature, in scaled units


@dataclass
class GeneratorConfig:
    """Conditional diffusion model p(x | z): the denoiser and its noise schedule.

    ``channels``: channels per U-Net level, finest first (``unet1d``, ``unet2d``), or the width
    of each residual block (``resmlp``).
    """

    backbone: str = "unet1d"
    channels: list[int] = field(default_factory=lambda: [48, 96, 96])
    time_dim: int = 128
    num_train_timesteps: int = 1000
    beta_schedule: str = "cosine"  # cosine | linear
    prediction_type: str = "epsilon"  # epsilon | v_prediction
    cond_dropout: float = 0.1  # probability of training unconditionally (classifier-free)
    ema_decay: float = 0.998
    # Restart the EMA at every generator stage and warm its decay up as min(ema_decay,
    # (1 + n) / (10 + n)) over the stage's steps n, so the weights sampled from average this
    # round's training at any budget. false: one EMA from the random initial weights, carried
    # across rounds (the earlier behaviour, kept to reproduce old runs).
    ema_warmup: bool = True
    lr: float = 1e-3
    batch_size: int = 256
    steps: int = 750  # optimisation steps per round
    steps_per_checkpoint: int = 250


@dataclass
class BankConfig:
    """The bank of generated positives, refreshed once per round."""

    fraction: float = 1.0  # fraction of positives drawn from the bank in encoder phases
    sampler: str = "ddim"  # ddim | ddpm
    steps: int = 20
    strength: float = 0.5  # 1.0 = from pure noise; < 1 = SDEdit from the noised source
    guidance_scale: float = 2.0
    eta: float = 0.0
    batch_size: int = 500
    # Snap each generated positive to the data's discrete values before the encoder sees it
    # (DNA: the argmax one-hot, a real sequence); false keeps the continuous sample.
    discrete: bool = False
    # Positives generated per training sample at each refresh; every encoder step draws one of
    # them at random, so an encoder phase does not see the same pair epoch after epoch.
    per_sequence: int = 1
    # Both views generated (two different draws; needs per_sequence >= 2) instead of the source
    # against one generated positive.
    both_views: bool = False


@dataclass
class ScheduleConfig:
    """Warm-up, then ``rounds`` x (generator -> bank refresh -> encoder)."""

    warmup_epochs: int = 4
    rounds: int = 2
    epochs_per_round: int = 8


@dataclass
class OptimConfig:
    """Encoder optimiser (AdamW) and learning-rate schedule over all encoder epochs."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    lr_schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1


@dataclass
class SymmetryConfig:
    """Symmetries learned from the training rows (:mod:`diffaug_genomics.symmetry`).

    ``auto`` scores every candidate transform the modality offers (DNA: the 24 permutations of
    the alphabet, each with and without reversal, by their ``kmer_k``-mer distribution) against
    a noise floor measured on the same rows and accepts the ones the data obeys; ``none`` skips
    it. Nothing in it names a particular map."""

    mode: str = "auto"  # auto: accept the maps the training rows obey (measured); none: skip
    accept_ratio: float = 1.5  # accept a candidate scoring at most this x the noise floor
    gap_ratio: float = 3.0  # ... when every other one scores at least this x its score
    max_rows: int = 20000  # training rows scored (a seeded sample when there are more)
    kmer_k: int = 4  # DNA: length of the k-mers whose distribution is compared


@dataclass
class ExportConfig:
    """Which encoder state ``fit`` exports as ``encoder.pt``.

    The start (after the data-dependent initialisation) and the end of every encoder stage are
    candidates; ``best`` exports the one with the highest label-free ``criterion`` on the
    diagnostic rows, ``final`` the last one (:mod:`diffaug_genomics.train.export`)."""

    choose: str = "best"  # best: the state the criterion scores highest; final: the last one
    # The label-free score of a state (feature_agreement: the embedding's nearest neighbours
    # shared with those of the encoder's own input features; nbr_agreement: with the kNN
    # space's; eff_rank; uniformity).
    criterion: str = "feature_agreement"


@dataclass
class Config:
    """The whole resolved configuration of a ``diffaug fit`` run."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 (diffaug_genomics.train.precision)
    compile: bool = False  # torch.compile the models' forward passes (falls back when it fails)
    # auto: on a GPU, batches (and learning rates) scaled to the device (train/autotune);
    # fixed: the configured batches
    batch_scaling: str = "auto"
    checkpoint_every_s: float = 60.0  # seconds between unit-boundary checkpoints (0: every unit)
    augment: str = "diffaug"
    modality: str = "dna"
    log_every: int = 10  # steps between metrics.csv rows
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
