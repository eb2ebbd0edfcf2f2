"""The data a report looks at: a sample of the run's rows, their embeddings and labels, the
bank of generated positives, and the label-based scores (with the same-size PCA reference).

Everything is capped at ``max_points`` rows (a fixed random sample, seeded), so a report on a
large run stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.report.state import RunState, load_whole
from diffaug_genomics.run_files import BANK_FORMAT, bank_from_record


@dataclass
class PointSet:
    """Up to ``max_points`` rows of the run's data: ``rows`` in the stored layout (DNA ``(n, L, 4)
    uint8``; images / tables preprocessed ``(n, *shape)`` float32), or None when only an
    embeddings file was given; their ``embeddings (n, D)``; ids, labels; the indices of the rows
    in the training data (``index``, for the bank), the total number of rows, and where each part
    came from (``sources``)."""

    ids: list[str]
    rows: np.ndarray | None
    embeddings: np.ndarray | None
    labels: list[str] | None
    index: np.ndarray | None
    total: int
    sources: dict[str, str]
    label_source: str | None = None


def training_input(state: RunState, given: str | Path | None) -> Path | None:
    """The data to read: ``--input``, else the run's ``data.h5``, else the input in config.yaml
    (when it still exists)."""
    if given is not None:
        p = Path(given)
        if not p.exists():
            raise InputError("no such file", path=p)
        return p
    if state.paths.data.is_file():
        return state.paths.data
    src = state.config.get("input")
    if src and str(src) != "-" and Path(str(src)).exists():
        return Path(str(src))
    return None


def _choose(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _read_dna(path: Path, state: RunState, max_points: int, seed: int
              ) -> tuple[np.ndarray, list[str], list[str] | None, np.ndarray, int]:
    """(onehot, ids, labels, indices, total) of a sample of a DNA input (HDF5 or FASTA)."""
    from diffaug_genomics.io.h5 import is_hdf5

    if is_hdf5(path):
        from diffaug_genomics.io.h5 import open_onehot, read_strings

        with open_onehot(path) as f:
            total = int(f["onehot"].shape[0])
            idx = _choose(total, max_points, seed)
            onehot = f["onehot"][idx] if len(idx) < total else f["onehot"][()]
            all_ids = read_strings(f["ids"])
            labels = None
            if "labels" in f:
                all_labels = read_strings(f["labels"])
                labels = [all_labels[i] for i in idx]
        return onehot, [all_ids[i] for i in idx], labels, idx, total
    from diffaug_genomics.modalities.sequences import iter_chunks

    data = state.config.get("data", {}) or {}
    length = state.sample_shape[0] if state.sample_shape else data.get("length")
    chunks = list(iter_chunks(path, length, data.get("policy", "center"), data.get("stride")))
    onehot = np.concatenate([c.onehot for c in chunks]) if chunks else np.zeros((0, 0, 4))
    ids = [i for c in chunks for i in c.ids]
    idx = _choose(len(ids), max_points, seed)
    return onehot[idx], [ids[i] for i in idx], None, idx, len(ids)


def _read_samples(path: Path, state: RunState, max_points: int, seed: int,
                  label_key: str | None = None
                  ) -> tuple[np.ndarray, list[str], list[str] | None, np.ndarray, int]:
    """Images / tables: read with the run's modality and stored preprocessing; labels from
    ``label_key`` (``--obs-key`` / ``--label-column``), else the run's label column."""
    from diffaug_genomics.io.samples import ReadOptions
    from diffaug_genomics.modalities.arrays import load_preprocess, read_samples
    from diffaug_genomics.modalities.registry import get_modality

    modality = get_modality(state.modality)
    record = load_preprocess(state.root)
    key = label_key or record.get("label_key")
    fmt = record.get("source_format")
    options = ReadOptions(label_column=key if fmt in ("csv", "tsv") else None,
                          obs_key=key if fmt == "h5ad" else None)
    samples = read_samples(modality.io, modality.name, path, options)
    rows = modality.io.transform(samples, record["state"], str(path))
    idx = _choose(len(rows), max_points, seed)
    labels = [samples.labels[i] for i in idx] if samples.labels is not None else None
    return rows[idx], [samples.ids[i] for i in idx], labels, idx, len(rows)


def load_encoder(state: RunState, sample_shape: tuple[int, ...]):  # noqa: ANN201 - nn.Module
    """The run's encoder on the CPU (eval mode): ``encoder.pt`` when finished, else the encoder
    of ``checkpoints/latest.pt`` as :func:`~diffaug_genomics.report.state.read_run` read it
    (with the progress the report shows); ``(encoder, what)`` or ``(None, why not)``."""
    from diffaug_genomics.config import config_from_dict
    from diffaug_genomics.modalities.registry import get_modality
    from diffaug_genomics.runs import encoder_from
    from diffaug_genomics.train import checkpoint as ckpt

    cfg = config_from_dict(state.config)
    modality = get_modality(cfg.modality)
    paths = state.paths
    if state.finished:
        saved, path = ckpt.load(paths.encoder, ckpt.ENCODER_FORMAT), paths.encoder
        what = "the final encoder (encoder.pt)"
    elif state.latest is not None and "encoder" in state.latest:
        saved, path = state.latest, paths.latest
        what = "the encoder of the latest checkpoint (checkpoints/latest.pt; the run is unfinished)"
    elif paths.latest.is_file():  # damaged: exit 2 naming it
        ckpt.load(paths.latest, ckpt.CHECKPOINT_FORMAT)
        return None, "checkpoints/latest.pt was being replaced while it was read"
    else:
        return None, "no checkpoint yet"
    return encoder_from(saved, cfg, modality, sample_shape, path), what


def collect_points(state: RunState, *, input_path: str | Path | None,
                   embeddings: str | Path | None, labels: str | Path | None,
                   max_points: int, seed: int = 0, label_key: str | None = None) -> PointSet:
    """The rows the embedding map and the scores use (see :class:`PointSet`)."""
    from diffaug_genomics.modalities.registry import get_modality

    modality = get_modality(state.modality)
    data_path = training_input(state, input_path)
    sources: dict[str, str] = {}
    rows = emb = index = None
    ids: list[str] = []
    file_labels: list[str] | None = None
    label_source = None
    total = 0
    if embeddings is not None:
        emb_all, emb_ids, emb_labels, attrs = _read_embeddings(Path(embeddings), state)
        idx = _choose(len(emb_ids), max_points, seed)
        emb, ids, total = emb_all[idx], [emb_ids[i] for i in idx], len(emb_ids)
        file_labels = [emb_labels[i] for i in idx] if emb_labels is not None else None
        label_source = f"/labels of {embeddings}" if file_labels is not None else None
        sources["embeddings"] = str(embeddings)
        if data_path is not None:  # raw rows of the same ids, for the PCA reference and GC
            try:
                found = _rows_for_ids(data_path, state, ids)
                if found is not None:
                    rows, index, data_labels = found
                    sources["rows"] = str(data_path)
                    if file_labels is None and data_labels is not None:
                        file_labels = data_labels
                        label_source = f"/labels of {data_path}"
                else:
                    sources["rows"] = f"{data_path} does not hold the embeddings' ids"
            except InputError as exc:
                sources["rows"] = f"not read ({exc})"
    elif data_path is not None:
        if state.modality == "dna":
            rows, ids, file_labels, index, total = _read_dna(data_path, state, max_points, seed)
        else:
            rows, ids, file_labels, index, total = _read_samples(data_path, state, max_points,
                                                                 seed, label_key)
        if file_labels is not None:
            label_source = f"/labels of {data_path}"
        sources["rows"] = str(data_path)
        if len(rows):
            shape = tuple(modality.to_model(rows[:1]).shape[1:])
            encoder, what = load_encoder(state, shape)
            if encoder is not None:
                import torch

                from diffaug_genomics.embed import embed_array

                with torch.no_grad():
                    emb = embed_array(encoder, modality.to_model(rows), 256)
                sources["embeddings"] = f"computed here with {what}"
            else:
                sources["embeddings"] = f"not computed ({what})"
    else:
        sources["rows"] = ("no input found: the run's data.h5 and the input in config.yaml are "
                           "missing; give --input or --embeddings")
    if index is not None and data_path is not None and data_path != state.paths.data \
            and state.config.get("input") and Path(str(state.config["input"])) != data_path:
        index = None  # --input other than the training data: the bank does not apply
    if labels is not None:
        from diffaug_genomics.io.labels import align_labels, label_for, read_labels

        mapping = read_labels(labels)
        if ids and not any(label_for(rid, mapping) is not None for rid in ids):
            raise InputError(f"the labels match no id of the run's data (first id: {ids[0]!r})",
                             path=labels)
        file_labels = align_labels(ids, mapping, path=labels)
        label_source = str(labels)
    return PointSet(ids, rows, emb, file_labels, index, total, sources, label_source)


def _rows_for_ids(path: Path, state: RunState, ids: list[str]
                  ) -> tuple[np.ndarray, np.ndarray, list[str] | None] | None:
    """(rows, their indices in ``path``, labels) of the rows with these ids; None when one is
    missing. One-hot HDF5 reads only those rows."""
    from diffaug_genomics.io.h5 import is_hdf5

    if state.modality == "dna" and is_hdf5(path):
        from diffaug_genomics.io.h5 import open_onehot, read_strings

        with open_onehot(path) as f:
            where = {rid: i for i, rid in enumerate(read_strings(f["ids"]))}
            if not all(rid in where for rid in ids):
                return None
            pick = np.asarray([where[rid] for rid in ids], dtype=np.int64)
            order = np.argsort(pick)
            rows = np.empty((len(pick), *f["onehot"].shape[1:]), dtype=f["onehot"].dtype)
            rows[order] = f["onehot"][pick[order]]
            labels = None
            if "labels" in f:
                all_labels = read_strings(f["labels"])
                labels = [all_labels[i] for i in pick]
        return rows, pick, labels
    reader = _read_dna if state.modality == "dna" else _read_samples
    all_rows, all_ids, data_labels, _, _ = reader(path, state, 10**12, 0)
    where = {rid: i for i, rid in enumerate(all_ids)}
    if not all(rid in where for rid in ids):
        return None
    pick = np.asarray([where[rid] for rid in ids], dtype=np.int64)
    labels = [data_labels[i] for i in pick] if data_labels is not None else None
    return all_rows[pick], pick, labels


def _read_embeddings(path: Path, state: RunState
                     ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
    from diffaug_genomics.evaluate_inputs import read_for_evaluation
    from diffaug_genomics.io.samples import ReadOptions

    if not path.is_file():
        raise InputError("no such file", path=path)
    emb, ids, labels, attrs = read_for_evaluation(path, ReadOptions())
    got = attrs.get("config_hash")
    if isinstance(got, bytes):
        got = got.decode()
    if got is None or attrs.get("raw_features"):
        raise InputError("not an embeddings file written by diffaug embed (no config_hash)",
                         path=path)
    if str(got) != state.config_hash:
        raise InputError(f"embeddings from another run: config hash {got}, this run "
                         f"{state.config_hash} ({state.root})", path=path)
    if emb.shape[1] != state.embed_dim:
        raise InputError(f"embedding dimension {emb.shape[1]} differs from the run's "
                         f"encoder.embed_dim {state.embed_dim}", path=path)
    return emb, ids, labels, attrs


# -------------------------------------------------------------------------------- positives


@dataclass
class Bank:
    """The last bank of generated positives: ``positives (n, K, *shape)`` float32 (model
    layout) for the rows ``index`` of the training data, and the refresh round."""

    positives: np.ndarray
    round: int
    total: int


def load_bank(state: RunState, index: np.ndarray | None) -> tuple[Bank | None, str]:
    """The positives of ``index`` from ``cache/bank.pt`` (or, for a bank too large for memory,
    ``cache/bank.npy``, read by rows), or ``(None, why not)``."""
    paths = state.paths
    if not state.has_generator:
        return None, (f"this run used --augment {state.augment}: there is no generator and no "
                      "generated positives")
    if not paths.bank.is_file() and not paths.bank_file.is_file():
        return None, "no bank yet: the run has not reached its first bank refresh"
    if index is None:
        return None, ("the report's rows are not the training rows (another --input or "
                      "unmatched embeddings), so the bank cannot be paired with its sources")
    if paths.bank.is_file():
        saved = load_whole(paths.bank, BANK_FORMAT, state.writer is not None)
        bank, refresh = bank_from_record(saved, state.sample_shape), int(saved.get("round", 0))
    else:
        from diffaug_genomics.train.bank_store import DiskBank

        bank, refresh = DiskBank(paths.bank_file, None), 0  # the file does not say its round
    if len(index) and int(index.max()) >= bank.shape[0]:
        return None, f"the bank holds {bank.shape[0]} rows, fewer than the data"
    return Bank(bank[index].float().numpy(), refresh, int(bank.shape[0])), ""


# ------------------------------------------------------------------------------------ scores


def same_size_pca_reference(features: np.ndarray, labels: list[str] | np.ndarray, dim: int, *,
                            folds: int = 5, seed: int = 0,
                            protocols: tuple[str, ...] = ("linear", "knn")) -> dict[str, Any]:
    """The linear / kNN probes on PCA-``dim`` of raw input features, PCA fitted on the training
    folds only: the reference an embedding of size ``dim`` has to beat.

    :func:`~diffaug_genomics.evaluate.evaluate_embeddings` with ``pca_dim`` (stratified
    ``folds``-fold cross-validation shuffled with ``seed``), ``dim`` capped at what the training
    folds allow; its report, with ``"dim"`` the components used.
    """
    from diffaug_genomics.evaluate import evaluate_embeddings

    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    smallest_fold = len(x) - -(-len(x) // folds)  # rows of the smallest training part
    d = max(1, min(dim, smallest_fold - 1, x.shape[1]))
    return evaluate_embeddings(x, [str(v) for v in labels], protocols=protocols, folds=folds,
                               seed=seed, pca_dim=d)


def raw_features(state: RunState, rows: np.ndarray) -> tuple[np.ndarray, str]:
    """Training-free features of the rows for the PCA reference, and their name."""
    if state.modality == "dna":
        from diffaug_genomics.kmers import baseline_features

        return baseline_features(rows, "kmer", 6), "6-mer frequencies"
    return rows.reshape(len(rows), -1).astype(np.float32), "raw (preprocessed) features"


def reference_note(state: RunState, reference: dict[str, Any], report: dict[str, Any]) -> str:
    """How the report's PCA reference relates to ``diffaug evaluate``'s: which features, which
    rows, so that the two figures can be told apart."""
    n, d = report["n"], reference["dim"]
    if state.modality == "dna":
        same = f"diffaug evaluate INPUT --features kmer:6 --pca {d}"
        return (f"The reference is PCA-{d} of the 6-mer frequencies of these {n} rows, as "
                f"`{same}` computes on the same rows; on all rows of another input its "
                "figure differs.")
    return (f"The reference is PCA-{d} of the run's preprocessed features (scaled as the "
            f"encoder sees them) of these {n} rows. `diffaug evaluate INPUT --pca {d}` starts "
            "from the input's unscaled values and uses every row, so its figure can differ by "
            "a few points: it answers what PCA gives on the raw data, this one what it gives "
            "on the encoder's own input.")


def scores(state: RunState, points: PointSet, folds: int = 5, seed: int = 0
           ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """(evaluate report of the embedding, PCA reference, note) with labels; Nones and the
    reason otherwise."""
    from diffaug_genomics.evaluate import evaluate_embeddings

    if points.labels is None:
        return None, None, ("no labels: give --labels labels.tsv (or an input with /labels) to "
                            "score the embedding")
    if points.embeddings is None:
        return None, None, "no embeddings to score"
    try:
        report = evaluate_embeddings(points.embeddings, points.labels,
                                     protocols=("linear", "knn"), folds=folds, seed=seed)
    except InputError as exc:
        return None, None, f"not scored: {exc}"
    reference, note = None, ""
    if points.rows is not None:
        feats, name = raw_features(state, points.rows)
        reference = same_size_pca_reference(feats, points.labels, state.embed_dim, folds=folds,
                                            seed=seed)
        reference["features"] = name
    else:
        note = "no raw rows for the PCA reference (give --input)"
    return report, reference, note
