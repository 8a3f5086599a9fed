"""Data files in the formats people have, the examples payload, and the project's data schema: round trips and
every way a file can be malformed or not fit the project."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import save_file

from aggregator.dataset_io import DatasetError, decode_examples, encode_examples, load_table
from aggregator.examples import Examples
from aggregator.schema import DataSchema, infer_schema, parse_preprocessing


def frame(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "radius": rng.normal(10, 2, n),
            "texture": rng.normal(20, 4, n),
            "diagnosis": ["benign", "malignant"] * (n // 2),
        }
    )


def test_csv_and_parquet_read_by_column_name(tmp_path):
    df = frame()
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        table = load_table(tmp_path / name, label_column="diagnosis")
        assert table.feature_names == ("radius", "texture") and table.features.shape == (12, 2)
        assert list(table.labels[:2]) == ["benign", "malignant"]
    with pytest.raises(DatasetError, match=r"no label column 'label'.*--label-column"):
        load_table(tmp_path / "d.csv")


def test_npz_safetensors_and_jsonl(tmp_path):
    X = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    y = np.array([0, 1, 2, 1])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    save_file({"X": X, "y": y}, str(tmp_path / "d.safetensors"))
    for name in ("d.npz", "d.safetensors"):
        table = load_table(tmp_path / name)
        assert table.features.shape == (4, 2, 3) and table.labels.tolist() == [0, 1, 2, 1]
    rows = [
        {"question": "Who was Rollo?", "article": "Normans"},
        {"question": "What is P?", "article": "Complexity"},
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    table = load_table(tmp_path / "q.jsonl", label_column="article", text_column="question")
    assert table.texts == ("Who was Rollo?", "What is P?") and table.labels.tolist() == [
        "Normans",
        "Complexity",
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no dataset"),
        ("d.tsv", "a\tb\n", "unsupported dataset format"),
        ("d.npz", b"not a zip", "unreadable"),
        ("d.parquet", b"PAR1 garbage", "unreadable"),
        ("d.safetensors", b"\x00" * 16, "unreadable"),
        ("d.csv", "a,label\n1,0\nx,1\n", "not numeric"),
        ("d.csv", "a,label\n1,0\n,1\n", "NaN or Inf"),
        ("d.csv", "label\n0\n1\n", "no feature columns"),
        ("d.csv", "a,label\n", "empty"),
        ("d.jsonl", '{"text": "hi", "label": 1}\nnot json\n', "d.jsonl:2: not JSON"),
        ("d.jsonl", '{"text": 3, "label": 1}\n', "needs a text field"),
        ("d.jsonl", '{"text": "a", "label": [1]}\n', "not a number or a string"),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path, name, content, message):
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    elif content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        load_table(tmp_path / name)
    assert "\n" not in str(info.value)


def test_pickles_and_wrong_arrays_are_refused(tmp_path):
    with open(tmp_path / "obj.npz", "wb") as fh:
        np.savez(fh, X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DatasetError):
        load_table(tmp_path / "obj.npz")
    np.savez(tmp_path / "wrong.npz", features=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="needs arrays 'X' and 'y'"):
        load_table(tmp_path / "wrong.npz")
    np.savez(tmp_path / "shape.npz", X=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DatasetError, match="one label per row"):
        load_table(tmp_path / "shape.npz")
    np.savez(tmp_path / "nan.npz", X=np.array([[np.nan, 1.0]]), y=np.zeros(1))
    with pytest.raises(DatasetError, match="NaN or Inf"):
        load_table(tmp_path / "nan.npz")


def test_examples_payload_round_trips_tensors_and_text():
    tensor = Examples(torch.tensor([0, 2, 1]), features=torch.rand(3, 1, 4, 4))
    back = decode_examples(encode_examples(tensor))
    assert torch.equal(back.features, tensor.features) and torch.equal(back.targets, tensor.targets)
    text = Examples(torch.tensor([1.5, -2.0]), texts=("héllo wörld", ""))
    back = decode_examples(encode_examples(text))
    assert back.texts == text.texts and torch.equal(back.targets, text.targets)


def test_malformed_payloads():
    from safetensors.torch import save

    with pytest.raises(DatasetError, match="not safetensors"):
        decode_examples(b"garbage")
    bad = [
        {"X": torch.zeros(2, 2)},
        {"X": torch.zeros(2, 2), "y": torch.zeros(2, dtype=torch.int32)},
        {"X": torch.zeros(2, 2, dtype=torch.float64), "y": torch.zeros(2, dtype=torch.int64)},
        {"X": torch.zeros(3, 2), "y": torch.zeros(2, dtype=torch.int64)},
        {"X": torch.zeros(2, 2), "y": torch.zeros(2, dtype=torch.int64), "extra": torch.zeros(1)},
        {
            "text_utf8": torch.tensor([255], dtype=torch.uint8),
            "text_offsets": torch.tensor([0, 1]),
            "y": torch.zeros(1, dtype=torch.int64),
        },
        {
            "text_utf8": torch.tensor([65], dtype=torch.uint8),
            "text_offsets": torch.tensor([0, 5]),
            "y": torch.zeros(1, dtype=torch.int64),
        },
    ]
    for tensors in bad:
        with pytest.raises(DatasetError):
            decode_examples(save(tensors))


def test_schema_inferred_from_the_validation_set_checks_every_trainer_file(tmp_path):
    frame().to_csv(tmp_path / "validation.csv", index=False)
    schema = infer_schema(load_table(tmp_path / "validation.csv", label_column="diagnosis"), "classification")
    assert schema.labels == ("benign", "malignant") and schema.feature_names == ("radius", "texture")
    assert DataSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema

    # Columns in another order are fine: features are taken by name.
    frame(seed=1)[["texture", "diagnosis", "radius"]].to_csv(tmp_path / "mine.csv", index=False)
    mine = schema.examples(load_table(tmp_path / "mine.csv", label_column="diagnosis"))
    assert mine.features.shape == (12, 2) and mine.targets.tolist() == [0, 1] * 6

    cases = {
        "extra.csv": (frame().assign(age=1.0), "unexpected \\['age'\\]"),
        "missing.csv": (frame().drop(columns=["texture"]), "missing \\['texture'\\]"),
        "labels.csv": (frame().assign(diagnosis="unknown"), "label\\(s\\) unknown are not among"),
    }
    for name, (df, message) in cases.items():
        df.to_csv(tmp_path / name, index=False)
        with pytest.raises(DatasetError, match=message):
            schema.examples(load_table(tmp_path / name, label_column="diagnosis"))
    np.savez(tmp_path / "wide.npz", X=np.zeros((2, 32)), y=np.zeros(2))
    with pytest.raises(DatasetError, match="has 32 features"):
        infer_schema(
            load_table(tmp_path / "validation.csv", label_column="diagnosis"), "classification"
        ).examples(load_table(tmp_path / "wide.npz"))


def test_integer_labels_are_class_indices_and_a_label_outside_is_refused(tmp_path):
    np.savez(tmp_path / "v.npz", X=np.zeros((4, 3)), y=np.array([0, 1, 3, 3]))
    schema = infer_schema(load_table(tmp_path / "v.npz"), "classification")
    assert schema.labels == (0, 1, 2, 3) and schema.num_outputs == 4
    np.savez(tmp_path / "t.npz", X=np.zeros((2, 3)), y=np.array([12, 0]))
    with pytest.raises(DatasetError, match="label\\(s\\) 12 are not among"):
        schema.examples(load_table(tmp_path / "t.npz"))
    np.savez(tmp_path / "f.npz", X=np.zeros((2, 3)), y=np.array([0.5, 1.0]))
    with pytest.raises(DatasetError, match="not an integer"):
        schema.examples(load_table(tmp_path / "f.npz"))


def test_text_and_tensor_data_do_not_mix(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    text_schema = infer_schema(load_table(tmp_path / "q.jsonl"), "text-classification")
    assert text_schema.kind == "text" and text_schema.labels == ("x", "y")
    np.savez(tmp_path / "v.npz", X=np.zeros((2, 3)), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="text-classification needs text data"):
        infer_schema(load_table(tmp_path / "v.npz"), "text-classification")
    with pytest.raises(DatasetError, match="give --text-column"):
        text_schema.examples(load_table(tmp_path / "v.npz"))
    with pytest.raises(DatasetError, match="applies to feature tensors"):
        infer_schema(
            load_table(tmp_path / "q.jsonl"),
            "text-classification",
            preprocessing=parse_preprocessing(["scale=2"]),
        )


def test_preprocessing_is_recorded_and_applied_to_everyone(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "v.npz", X=rng.integers(0, 17, (50, 4)).astype(np.float64), y=rng.integers(0, 3, 50))
    steps = parse_preprocessing(["scale=0.0625", "standardize"])
    schema = infer_schema(load_table(tmp_path / "v.npz"), "classification", preprocessing=steps)
    assert schema.preprocessing[0] == {"op": "scale", "factor": 0.0625}
    assert len(schema.preprocessing[1]["mean"]) == 4
    prepared = schema.prepare(schema.examples(load_table(tmp_path / "v.npz")))
    assert prepared.features.mean(dim=0).abs().max() < 1e-5
    assert (prepared.features.std(dim=0, unbiased=False) - 1).abs().max() < 1e-4
    again = DataSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert torch.equal(
        again.prepare(schema.examples(load_table(tmp_path / "v.npz"))).features, prepared.features
    )
    for bad in (["scale=x"], ["scale=0"], ["normalize"], ["standardize=3"]):
        with pytest.raises(DatasetError):
            parse_preprocessing(bad)


def test_regression_targets_and_a_declared_range(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0.5, 1.5, 2.5]}).to_csv(tmp_path / "v.csv", index=False)
    schema = infer_schema(load_table(tmp_path / "v.csv"), "regression", label_range=(0.0, 3.0))
    assert schema.labels is None and schema.num_outputs == 1
    assert schema.examples(load_table(tmp_path / "v.csv")).targets.dtype == torch.float32
    pd.DataFrame({"x": [1.0], "label": [7.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match="outside the project's range"):
        schema.examples(load_table(tmp_path / "t.csv"))
    pd.DataFrame({"x": [1.0], "label": ["high"]}).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DatasetError, match="must be numbers"):
        schema.examples(load_table(tmp_path / "s.csv"))
