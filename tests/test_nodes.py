"""Issue 19: under torchrun on several machines, each machine's first process prepares that
machine's token cache. Two "nodes" are simulated on this one: four processes joined with gloo,
ranks 0-1 sharing one cache folder and ranks 2-3 another, as two machines' disks would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from helpers import data_file

RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from authorgen import distributed
    from authorgen.config import ModelConfig, TokenizerConfig, TrainConfig
    from authorgen.corpus import split_text
    from authorgen.prepare import prepare_data

    text_path, cache = sys.argv[1], Path(sys.argv[2])
    group = distributed.setup("cpu")
    messages = []
    data = prepare_data(
        split_text(Path(text_path).read_text(encoding="utf-8")),
        TokenizerConfig("bpe", vocab_size=600),
        TrainConfig(steps=1, context=16),
        ModelConfig(),
        cache=cache,
        group=group,
        report=messages.append,
    )
    print(json.dumps({
        "rank": group.rank,
        "messages": messages,
        "tokenizer": data.tokenizer.fingerprint(),
        "ids": [int(i) for i in data.train.ids[:2000]] + [len(data.train.ids)],
    }))
    distributed.teardown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_each_node_prepares_its_own_token_cache_once(tmp_path):
    text = data_file("pg11-alices-adventures-in-wonderland.txt")
    caches = {0: tmp_path / "node-a" / "cache", 1: tmp_path / "node-b" / "cache"}
    port = _free_port()
    processes = []
    for rank in range(4):
        node, local_rank = divmod(rank, 2)
        env = {
            **os.environ, "RANK": str(rank), "WORLD_SIZE": "4", "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": str(node), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", RANK_SCRIPT, str(text), str(caches[node])],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = {}
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        row = json.loads(out.strip().splitlines()[-1])
        results[row["rank"]] = row
    for rank, row in results.items():
        made_here = rank in (0, 2)  # each node's first process
        tokenizer_line, ids_line = row["messages"]
        assert tokenizer_line.endswith("from the cache") != made_here, (rank, tokenizer_line)
        assert ("from the cache" in ids_line) != made_here, (rank, ids_line)
    # the same tokenizer and the same ids everywhere: the nodes train as one
    assert len({row["tokenizer"] for row in results.values()}) == 1
    assert len({json.dumps(row["ids"]) for row in results.values()}) == 1
    for cache in caches.values():
        assert len(list((cache / "tokens").iterdir())) == 1
        assert len(list((cache / "tokenizers").iterdir())) == 1
