"""Dataset files and payloads: round trips and every way they can be malformed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aggregator.dataset_io import (
    DatasetError,
    decode_dataset,
    encode_dataset,
    load_dataset_file,
    save_dataset_file,
)


def test_npz_and_csv_round_trip(tmp_path):
    X = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    save_dataset_file(tmp_path / "d.npz", X, y)
    X2, y2 = load_dataset_file(tmp_path / "d.npz")
    assert torch.equal(X, X2) and torch.equal(y, y2)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X.numpy(), y.numpy()]), delimiter=",")
    X3, y3 = load_dataset_file(tmp_path / "d.csv")
    assert torch.equal(X, X3) and torch.equal(y, y3)


def test_payload_round_trip():
    X, y = torch.rand(5, 2), torch.tensor([1, 0, 1, 0, 1])
    X2, y2 = decode_dataset(encode_dataset(X, y))
    assert torch.equal(X, X2) and torch.equal(y, y2)


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.zeros((3,)), np.zeros(3), "must be 2-D"),
        (np.zeros((3, 2)), np.zeros(2), "one label per row"),
        (np.zeros((0, 2)), np.zeros(0), "empty"),
        (np.array([[np.nan, 1.0]]), np.zeros(1), "NaN or Inf"),
        (np.array([[np.inf, 1.0]]), np.zeros(1), "NaN or Inf"),
        (np.zeros((1, 2)), np.array([0.5]), "integer class labels"),
        (np.zeros((1, 2)), np.array([-1]), "non-negative"),
    ],
)
def test_malformed_arrays(tmp_path, X, y, message):
    np.savez(tmp_path / "bad.npz", X=X, y=y)
    with pytest.raises(DatasetError, match=message):
        load_dataset_file(tmp_path / "bad.npz")


def test_malformed_files(tmp_path):
    with pytest.raises(DatasetError, match="no dataset"):
        load_dataset_file(tmp_path / "missing.npz")
    np.savez(tmp_path / "wrong.npz", features=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="needs arrays 'X' and 'y'"):
        load_dataset_file(tmp_path / "wrong.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="unreadable"):
        load_dataset_file(tmp_path / "garbage.npz")
    (tmp_path / "text.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="unreadable"):
        load_dataset_file(tmp_path / "text.csv")
    (tmp_path / "d.parquet").write_bytes(b"x")
    with pytest.raises(DatasetError, match="unsupported"):
        load_dataset_file(tmp_path / "d.parquet")
    # Pickled object arrays are refused, never loaded.
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with open(tmp_path / "obj.npz", "wb") as fh:
        np.savez(fh, X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DatasetError):
        load_dataset_file(tmp_path / "obj.npz")


def test_malformed_payloads():
    with pytest.raises(DatasetError, match="not safetensors"):
        decode_dataset(b"garbage")
    from safetensors.torch import save

    with pytest.raises(DatasetError, match="exactly 'X' and 'y'"):
        decode_dataset(save({"X": torch.zeros(1, 1)}))
    with pytest.raises(DatasetError, match="float32"):
        decode_dataset(
            save({"X": torch.zeros(1, 1, dtype=torch.float64), "y": torch.zeros(1, dtype=torch.int64)})
        )
