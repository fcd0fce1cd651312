"""FSDP shard-only loading on a real 2-rank torchrun group (gloo): each rank holds exactly its
rows of every parameter, with the values and dtypes `from_pretrained` gives."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.conftest import run_engine

FIXTURE = Path(__file__).parent / "fixtures" / "sharded_load.py"


def test_each_rank_holds_its_rows_as_from_pretrained_loads_them(
    tiny_a14b: Path, tmp_path: Path
) -> None:
    done = run_engine([str(FIXTURE), str(tiny_a14b), str(tmp_path)], nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert set(ranks[0]) == {
        f"{name}/{dtype}"
        for name in ("transformer", "transformer_2", "text_encoder")
        for dtype in ("float32", "bfloat16", "float16")
    }
    for component, found in ranks[0].items():
        other = ranks[1][component]
        # values and dtypes (diffusers' float32 norms, transformers' fp16-only `wo`), buffers
        # (the rotary tables) and ties all as from_pretrained makes them
        assert found["mismatched"] == other["mismatched"] == [], component
        assert found["held"] + other["held"] == found["total"], component  # a partition
        assert max(found["held"], other["held"]) <= found["total"] * 0.6, component
        assert found["aliases"] == (1 if component.startswith("text_encoder") else 0)
        assert found["eval"]
