"""OneHotH5Dataset (lazy per-worker handle, batched reads) and load_onehot."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from diffaug_genomics.data import OneHotH5Dataset, load_onehot
from diffaug_genomics.errors import InputError


def test_load_onehot_matches_plain_reader(example_h5, example_fasta):
    from conftest import read_example_rows

    arr = load_onehot(example_h5)
    assert arr.dtype == np.uint8 and arr.shape == (500, 200, 4)
    np.testing.assert_array_equal(arr, read_example_rows(example_fasta))


def test_lazy_open_and_pickling(example_h5):
    ds = OneHotH5Dataset(example_h5)
    assert ds._file is None and len(ds) == 500 and ds.length == 200
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    x = ds[3]
    assert ds._file is not None
    assert x.dtype == torch.float32 and x.shape == (4, 200)
    np.testing.assert_array_equal(x.numpy().T, load_onehot(example_h5)[3])
    again = pickle.loads(pickle.dumps(ds))  # an open handle is never pickled
    assert again._file is None and torch.equal(again[3], x)
    ds.close()
    assert ds._file is None


def test_get_batch_any_order_and_subset(example_h5):
    full = load_onehot(example_h5)
    ds = OneHotH5Dataset(example_h5)
    for idx in ([5, 1, 1, 499, 0], [10, 11, 12, 13], list(range(0, 500, 97)), [-1]):
        batch = ds.get_batch(idx)
        assert batch.shape == (len(idx), 4, 200) and batch.dtype == torch.float32
        np.testing.assert_array_equal(batch.numpy().transpose(0, 2, 1), full[idx])
    sub = OneHotH5Dataset(example_h5, indices=[400, 2, 7])
    assert len(sub) == 3 and torch.equal(sub[1], ds[2])
    np.testing.assert_array_equal(sub.get_batch([2, 0]).numpy().transpose(0, 2, 1),
                                  full[[7, 400]])
    assert sub.ids == [ds.ids[i] for i in (400, 2, 7)]
    assert sub.labels == [ds.labels[i] for i in (400, 2, 7)]
    with pytest.raises(IndexError):
        sub[3]
    with pytest.raises(IndexError):
        OneHotH5Dataset(example_h5, indices=[500])


def test_dataloader_with_two_workers(example_h5):
    ds = OneHotH5Dataset(example_h5)
    loader = DataLoader(ds, batch_size=64, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [b.shape[0] for b in batches] == [64] * 7 + [52]
    got = torch.cat(batches).numpy().transpose(0, 2, 1)
    np.testing.assert_array_equal(got, load_onehot(example_h5))
    assert ds._file is None  # only the workers opened the file


def test_bad_file_fails_early(tmp_path):
    path = tmp_path / "x.h5"
    path.write_text("not hdf5")
    with pytest.raises(InputError):
        OneHotH5Dataset(path)
