"""Rules read rows memory-mapped from safetensors files, a chunk of columns at a time."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from aggregator.errors import InvalidUpdate
from aggregator.rules import RULES, get_rule


@pytest.fixture
def row_files(tmp_path):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(9, 500, generator=gen)
    x[8] *= -15.0
    paths = []
    for i, row in enumerate(x):
        path = tmp_path / f"update-{i}.safetensors"
        save_file({"delta": row.contiguous()}, str(path))
        paths.append(path)
    return x, paths


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("access", ["get_tensor", "get_slice"])
def test_memory_mapped_rows_give_the_in_memory_result(row_files, name, access):
    x, paths = row_files
    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(p), framework="pt")) for p in paths]
        rows = [getattr(h, access)("delta") for h in handles]
        from_disk = get_rule(name, chunk=64).aggregate(rows)
    in_memory = get_rule(name, chunk=64).aggregate(x)
    assert torch.equal(from_disk.aggregate, in_memory.aggregate)
    assert torch.equal(from_disk.weights, in_memory.weights)


def test_a_lazy_slice_with_the_wrong_shape_or_dtype_is_refused(tmp_path):
    good, wide, ints = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    save_file({"delta": torch.zeros(10)}, str(good))
    save_file({"delta": torch.zeros(2, 5)}, str(wide))
    save_file({"delta": torch.zeros(10, dtype=torch.int32)}, str(ints))
    for bad in (wide, ints):
        with safe_open(str(good), framework="pt") as g, safe_open(str(bad), framework="pt") as b:
            with pytest.raises(InvalidUpdate) as err:
                get_rule("median").aggregate([g.get_slice("delta"), b.get_slice("delta")])
            assert err.value.rows == (1,)
