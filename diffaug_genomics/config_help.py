"""``diffaug config``: every configuration key with its default in a preset, its valid values
and a one-line meaning.

The keys come from the dataclasses (:func:`~diffaug_genomics.config_keys.iter_keys`), so a
key someone adds appears here by itself. Its meaning is, in order: the field's
``metadata["help"]``, :data:`MEANINGS`, else the comment beside or above the field in
:mod:`diffaug_genomics.config_schema` (a comment that only lists choices does not count). Its
range: the field's choices or bound (``config.CHOICES``, ``config.BOUNDS``), else its type.
"""

from __future__ import annotations

import ast
import fnmatch
import inspect
import io
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from diffaug_genomics import config_schema
from diffaug_genomics.config import BOUNDS, CHOICES, PAIRS, flatten, resolve_config
from diffaug_genomics.config_keys import KeyInfo, closest_keys, iter_keys
from diffaug_genomics.errors import ConfigError

NO_MEANING = "(no description yet: see diffaug_genomics/config_schema.py)"

MEANINGS: dict[str, str] = {
    "seed": "Seed of data order, initialisation and sampling: a seed fixes the whole run.",
    "device": "Where to compute; auto takes a GPU when there is one.",
    "precision": "bf16: bfloat16 autocast of the forward passes; auto: where the device "
                 "computes bfloat16 natively.",
    "compile": "torch.compile the models (falls back to eager with one warning).",
    "checkpoint_every_s": "Seconds between checkpoints at epoch / block ends (0: after every "
                          "unit).",
    "augment": "Where the encoder's positives come from: generated (diffaug), kNN-mixup or "
               "hand-designed augmentations.",
    "modality": "The kind of data: dna, image, tabular or a plugin's name (detected from the "
                "input when not set).",
    "log_every": "Training steps between rows of metrics.csv.",
    "symmetry.mode": "auto: measure which letter maps (with or without reversal) the training "
                     "rows obey and use them; none: skip the discovery.",
    "symmetry.gap_ratio": "Accept only when every other candidate scores at least this x "
                          "the accepted one.",
    "symmetry.kmer_k": "DNA: length of the k-mers whose distribution the discovery compares.",
    "export.choose": "best: export the encoder state the criterion scores highest (the start "
                     "or a stage's end); final: the last state.",
    "export.criterion": "The label-free score of an encoder state (feature_agreement: nearest "
                        "neighbours shared with the encoder's own input features).",
    "encoder.position_dims": "spectrum: starting directions that read the position profile "
                             "(null: measured from the data's position frame).",
    "data.length": "Positions per row in bp (null: the longest record of the input).",
    "data.policy": "How records longer or shorter than data.length become rows: crop/pad at "
                   "the end, around the centre, or tile windows.",
    "data.stride": "Step between windows in bp (data.policy window; null: data.length).",
    "encoder.backbone": "The encoder network (DNA: conv1d or spectrum; images: resnet; "
                        "tables: mlp).",
    "encoder.width": "Units or channels of each hidden layer of the encoder.",
    "encoder.n_blocks": "Hidden layers or residual blocks of the encoder (per stage for "
                        "resnet).",
    "encoder.stem_kernel": "conv1d: kernel size of the first convolution, in bp.",
    "encoder.block_kernel": "conv1d: kernel size inside the residual blocks, in bp.",
    "encoder.embed_dim": "Size of the embedding z that embed exports (D).",
    "encoder.proj_hidden": "Hidden units of the projection head used only by the loss.",
    "encoder.proj_dim": "Output size of the projection head used only by the loss.",
    "encoder.rc": "Make the DNA encoder reverse-complement invariant (domain knowledge; off "
                  "by default).",
    "encoder.recalibrate_bn": "Recompute batch-norm statistics on clean training rows after "
                              "every encoder epoch.",
    "encoder.kmer_k": "spectrum: k of the k-mer spectrum the encoder reads.",
    "encoder.position_weight": "spectrum: weight of the position profile beside the k-mer "
                               "spectrum.",
    "encoder.pca_init": "spectrum: start the projection at the features' principal "
                        "directions (training rows, no labels).",
    "loss.name": "Contrastive loss: infonce (NT-Xent) or soft (the paper's Student-t loss).",
    "loss.temperature": "infonce: temperature of the softmax over similarities.",
    "loss.nu_z": "soft: degrees of freedom of the Student-t kernel in embedding space.",
    "loss.nu_y": "soft: degrees of freedom of the Student-t kernel in projection space.",
    "knn.space": "Where kNN-mixup neighbours are searched: k-mer spectrum, PCA of one-hot / "
                 "raw values, or the encoder's embedding.",
    "knn.k": "Neighbours per row for kNN-mixup positives.",
    "knn.kmer_k": "knn.space kmer: k of the k-mer spectrum.",
    "knn.pca_dim": "PCA components of the neighbour space (onehot-pca, pca).",
    "knn.alpha_min": "Smallest mixing weight of a neighbour in a kNN-mixup positive.",
    "knn.alpha_max": "Largest mixing weight of a neighbour in a kNN-mixup positive.",
    "handcrafted.mutation_rate": "[lo, hi] fraction of bases mutated per view (hand-designed "
                                 "baseline).",
    "handcrafted.rc_prob": "Probability of reverse-complementing a view.",
    "handcrafted.max_shift": "Largest random shift of a view, in bp.",
    "handcrafted.indel_prob": "Probability of an insertion or deletion in a view.",
    "handcrafted.indel_size": "[lo, hi] length of an insertion or deletion, in bp.",
    "image.crop_scale": "[lo, hi] area fraction of the random resized crop.",
    "image.crop_ratio": "[lo, hi] aspect ratio of the random resized crop.",
    "image.flip_prob": "Probability of a horizontal flip.",
    "image.jitter_prob": "Probability of colour jitter.",
    "image.brightness": "Colour jitter: largest relative brightness change.",
    "image.contrast": "Colour jitter: largest relative contrast change.",
    "image.saturation": "Colour jitter: largest relative saturation change.",
    "image.grayscale_prob": "Probability of turning a colour view grey.",
    "image.blur_prob": "Probability of a Gaussian blur.",
    "image.blur_sigma": "[lo, hi] standard deviation of the blur, in pixels.",
    "tabular.scaling": "Feature scaling fitted on the training table: z-score, to [-1, 1], "
                       "or none.",
    "tabular.corruption_rate": "SCARF: fraction of features replaced from the marginals.",
    "tabular.noise_std": "Gaussian noise added to every feature, in scaled units.",
    "generator.backbone": "The denoiser network (unet1d, unet2d or resmlp).",
    "generator.channels": "Channels per U-Net level, finest first (resmlp: width of each "
                          "block).",
    "generator.time_dim": "Size of the timestep embedding of the denoiser.",
    "generator.num_train_timesteps": "Diffusion steps T of the noise schedule.",
    "generator.beta_schedule": "Noise schedule of the diffusion.",
    "generator.prediction_type": "What the denoiser predicts: the noise or v.",
    "generator.cond_dropout": "Probability of training unconditionally (for classifier-free "
                              "guidance).",
    "generator.ema_decay": "Decay of the exponential moving average of the denoiser's "
                           "weights.",
    "generator.ema_warmup": "Restart the EMA every generator stage and warm its decay up.",
    "generator.lr": "Learning rate of the denoiser (AdamW).",
    "generator.batch_size": "Rows per denoiser step, per process.",
    "generator.steps": "Denoiser optimisation steps per round.",
    "generator.steps_per_checkpoint": "Denoiser steps per block between checkpoint chances.",
    "bank.fraction": "Fraction of the encoder's positives drawn from the bank of generated "
                     "ones.",
    "bank.sampler": "Sampler of generated positives: DDIM or ancestral DDPM.",
    "bank.steps": "Sampler steps per generated positive.",
    "bank.strength": "1 = generate from pure noise; < 1 = SDEdit from the noised source.",
    "bank.guidance_scale": "Classifier-free guidance scale of the sampler.",
    "bank.eta": "DDIM eta: 0 deterministic, 1 as noisy as DDPM.",
    "bank.batch_size": "Rows per sampler batch when refreshing the bank.",
    "bank.discrete": "Snap each generated positive to the data's discrete values (DNA: "
                     "argmax one-hot).",
    "bank.per_sequence": "Positives generated per training row at each refresh.",
    "bank.both_views": "Use two generated positives as the two views (needs per_sequence >= "
                       "2).",
    "schedule.warmup_epochs": "Encoder epochs with kNN-mixup positives before the first round.",
    "schedule.rounds": "Rounds of generator training, bank refresh and encoder training.",
    "schedule.epochs_per_round": "Encoder epochs per round.",
    "optim.lr": "Learning rate of the encoder (AdamW).",
    "optim.weight_decay": "Weight decay of the encoder (AdamW).",
    "optim.batch_size": "Rows per encoder step, per process.",
    "optim.lr_schedule": "Encoder learning-rate schedule over all encoder epochs.",
    "optim.min_lr_ratio": "cosine: the last learning rate as a fraction of optim.lr.",
}
"""One-line meanings of the keys whose source comment does not give one."""

_ONLY_CHOICES = re.compile(r"^[\w.-]+(\s*\([^)]*\))?(\s*\|\s*[\w.-]+(\s*\([^)]*\))?)+$")


@lru_cache(maxsize=1)
def _source_comments() -> dict[tuple[str, str], str]:
    """``{(class, field): comment}`` from config_schema's source: the comment on the field's
    line, else the comment block just above it."""
    source = inspect.getsource(config_schema)
    lines = source.splitlines()
    inline: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            inline.setdefault(tok.start[0], tok.string.lstrip("#").strip())
    out: dict[tuple[str, str], str] = {}
    for cls in ast.parse(source).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in cls.body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            text = inline.get(node.lineno, "")
            if not text or _ONLY_CHOICES.match(text):
                above, i = [], node.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#"):
                    above.insert(0, lines[i].strip().lstrip("#").strip())
                    i -= 1
                text = " ".join(above) or ("" if _ONLY_CHOICES.match(text or "x y") else text)
            if text:
                out[(cls.name, node.target.id)] = text
    return out


def meaning(info: KeyInfo) -> str:
    """The key's one-line meaning (module docstring), or :data:`NO_MEANING`."""
    helped = info.field.metadata.get("help") if info.field.metadata else None
    if helped:
        return str(helped)
    if info.key in MEANINGS:
        return MEANINGS[info.key]
    text = _source_comments().get((info.owner.__name__, info.field.name))
    if text:
        first = re.split(r"(?<=[.;])\s", text, maxsplit=1)[0]
        return first[0].upper() + first[1:]
    return NO_MEANING


def valid_values(info: KeyInfo) -> str:
    """The key's valid values: its choices, its numeric range, or its type."""
    if info.key in CHOICES:
        return " | ".join(CHOICES[info.key])
    hint = info.annotation
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
    is_list = typing.get_origin(hint) is list
    item = typing.get_args(hint)[0] if is_list else hint
    names = {bool: "true | false", int: "integer", float: "number", str: "text"}
    text = names.get(item, getattr(item, "__name__", str(item)))
    bound = BOUNDS.get(info.key)
    if bound is not None and item in (int, float):
        text = f"{text} {bound.describe()}"
    if is_list:
        text = (f"[lo, hi] of {text}" if info.key in PAIRS else f"list of {text}")
    return text + (" or null" if optional else "")


@dataclass(frozen=True)
class KeyLine:
    """One key of the listing."""

    key: str
    default: Any
    values: str
    meaning: str


def list_keys(preset: str | None = "default", modality: str = "dna",
              pattern: str | None = None) -> list[KeyLine]:
    """Every key (or those matching ``pattern``: a glob like ``bank.*``, else a substring)
    with its default in ``preset`` of ``modality``'s family.

    Raises:
        ConfigError: an unknown preset or modality, or a pattern that matches no key (naming
            the closest keys).
    """
    cfg = resolve_config(preset, modality=modality)
    defaults = flatten(cfg.to_dict())
    lines = [KeyLine(k.key, defaults.get(k.key), valid_values(k), meaning(k))
             for k in iter_keys()]
    if pattern:
        glob = any(c in pattern for c in "*?[")
        lines = [ln for ln in lines if (fnmatch.fnmatchcase(ln.key, pattern) if glob
                                        else pattern.lower() in ln.key.lower())]
        if not lines:
            close = closest_keys(pattern.strip("*?"))
            hint = f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""
            raise ConfigError(f"--keys '{pattern}' matches no config key{hint}")
    return lines


def _show(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def format_keys(lines: list[KeyLine], width: int = 80) -> str:
    """Two lines per key, within ``width`` columns: ``key = default   (valid values)`` and
    the meaning, indented."""
    out = []
    for ln in lines:
        head = f"{ln.key} = {_show(ln.default)}"
        values = f"({ln.values})"
        if len(head) + 2 + len(values) <= width:
            out.append(f"{head}  {values}")
        else:
            out.append(head)
            out += textwrap.wrap(values, width, initial_indent="    ", subsequent_indent="     ")
        out += textwrap.wrap(ln.meaning, width, initial_indent="    ", subsequent_indent="    ",
                             break_on_hyphens=False)
    return "\n".join(out)
