"""A lazy part is built once, and what it holds is kept out of the garbage collector's full collections."""

from __future__ import annotations

import gc
import threading

from backend.api.services import Part


def test_a_lazy_part_is_built_once_and_frozen_out_of_collections():
    builds = []

    def build() -> dict:
        builds.append(1)
        return {"weights": [[float(i)] for i in range(1000)]}  # many tracked containers, as a model has

    part = Part("model", build=build)
    gc.unfreeze()
    try:
        threads = [threading.Thread(target=part.get) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Built once for four callers, and everything alive then (the part included) is outside collections.
        assert len(builds) == 1 and part.ready
        assert gc.get_freeze_count() >= 1000
    finally:
        gc.unfreeze()
