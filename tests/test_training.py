"""Issue 5: the transformer, exact resume, time budgets, patience, divergence, auto-sizing, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from authorgen import plan
from authorgen.callbacks import Callback
from authorgen.config import ModelConfig, TrainConfig, TrainOptions
from authorgen.corpus import Split
from authorgen.errors import Interrupted, UsageError
from authorgen.models import build_model, count_parameters
from authorgen.models.transformer import KVCache, rotary
from authorgen.optim import learning_rate, make_optimizer
from authorgen.train import build_trainer, resume, train, train_corpus
from authorgen.trainer import Diverged
from helpers import StopAt, data_file, default_sigint, run_cli

TINY_LSTM = {
    "model": "lstm", "layers": 2, "hidden": 24, "embedding_dim": 8, "dropout": 0.1,
    "context": 16, "batch_size": 4, "lr": 1e-2, "device": "cpu", "batching": "stream",
}  # fmt: skip
TINY_TRANSFORMER = {
    "model": "transformer", "layers": 2, "heads": 2, "embedding_dim": 16, "dropout": 0.1,
    "context": 24, "batch_size": 4, "lr": 3e-3, "device": "cpu",
}  # fmt: skip


def _tiny_transformer(context: int = 12, vocab: int = 11, layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        model="transformer", vocab_size=vocab, layers=layers, heads=2, embedding_dim=16,
        mlp_dim=32, context=context,
    )  # fmt: skip
    return build_model(config).eval()


# --- the transformer ------------------------------------------------------------------------


def test_kv_cache_steps_equal_one_full_pass():
    model = _tiny_transformer()
    idx = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        full, _ = model(idx)
        logits, state = model(idx[:, :5])
        steps = [logits]
        for t in range(5, 12):
            logits, state = model(idx[:, t : t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert state.position == 12


def test_attention_is_causal_and_depends_only_on_relative_positions():
    model = _tiny_transformer()
    idx = torch.randint(0, 11, (1, 10))
    changed = idx.clone()
    changed[0, 6] = (changed[0, 6] + 1) % 11
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
        # the same tokens at positions 1000.. instead of 0..: rotary embeddings are relative
        empty = KVCache(context=12, position=1000)
        shifted, _ = model(idx, empty)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    torch.testing.assert_close(shifted, a, atol=1e-4, rtol=1e-4)


def test_the_cache_slides_so_generation_has_no_length_limit():
    # one layer: a token's logits depend on exactly the tokens its attention sees
    model = _tiny_transformer(context=8, layers=1)
    idx = torch.randint(0, 11, (1, 30))
    fed = idx[0].tolist()
    with torch.no_grad():
        logits, state = model(idx)  # longer than the context: fed in pieces
        assert logits.shape == (1, 30, 11) and torch.isfinite(logits).all()
        for t in range(40):
            token = idx[:, t % 30 : t % 30 + 1]
            fed.append(int(token))
            logits, state = model(token, state)
            assert state.keys[0].shape[2] <= 8
        # the last token saw exactly the 7 fed before it, as a fresh pass over those 8 does
        fresh, _ = model(torch.tensor([fed[-8:]]))
        shorter, _ = model(torch.tensor([fed[-3:]]))
    assert state.position == len(fed) == 70
    torch.testing.assert_close(logits[:, -1], fresh[:, -1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(logits[:, -1], shorter[:, -1], atol=1e-3)


def _banded(model, seq: torch.Tensor, window: int) -> torch.Tensor:
    """Logits of a whole-sequence pass in which every layer attends to at most `window`
    positions (the query's own included): what a sliding cache computes."""
    B, T = seq.shape
    cos, sin = model._angles(0, T, seq.device)
    i = torch.arange(T)
    mask = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)  # (T, T)
    x = model.embedding(seq)
    for block in model.blocks:
        attention, E = block.attention, x.shape[-1]
        qkv = attention.qkv(block.norm1(x)).view(B, T, 3, attention.heads, E // attention.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + attention.out(y.transpose(1, 2).reshape(B, T, E))
        x = x + block.mlp(block.norm2(x))
    return F.linear(model.norm(x), model.embedding.weight)


def test_one_token_steps_attend_over_a_sliding_window_at_every_layer():
    model = _tiny_transformer(context=8, layers=2)
    seq = torch.randint(0, 11, (2, 30))
    with torch.no_grad():
        logits, state = model(seq[:, :1])
        steps = [logits]
        for t in range(1, 30):
            logits, state = model(seq[:, t : t + 1], state)
            steps.append(logits)
        expected = _banded(model, seq, window=8)
        wider = _banded(model, seq, window=9)
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(expected[:, 8:], wider[:, 8:], atol=1e-4)  # the band matters


def test_a_chunk_past_the_context_slides_the_cache_in_one_forward_pass():
    model = _tiny_transformer(context=8, layers=1)
    seq = torch.randint(0, 11, (2, 10))
    with torch.no_grad():
        _, state = model(seq[:, :6])
        logits, state = model(seq[:, 6:10], state)  # 6 cached + 4 new > 8: 2 slide out
        for i, p in enumerate(range(6, 10)):
            # the chunk attends to the last 8 - 4 cached positions (2..5) and to itself
            fresh, _ = model(seq[:, 2 : p + 1])
            torch.testing.assert_close(logits[:, i], fresh[:, -1], atol=1e-5, rtol=1e-4)
        whole = _banded(model, seq, window=10)  # every token before it, unslid
    assert not torch.allclose(logits[:, -1], whole[:, -1], atol=1e-4)
    assert state.position == 10 and state.keys[0].shape[2] <= 8


def _steps(model, idx, ring: bool) -> torch.Tensor:
    """Logits of a 5-token prompt, then one token at a time, then a 3-token chunk."""
    model.ring_cache = ring
    with torch.no_grad():
        logits, state = model(idx[:, :5])
        out = [logits]
        for t in range(5, idx.shape[1] - 3):
            logits, state = model(idx[:, t : t + 1], state)
            out.append(logits)
        logits, state = model(idx[:, -3:], state)
        out.append(logits)
    return torch.cat(out, dim=1)


def test_the_ring_cache_gives_the_logits_of_the_growing_cache():
    model = _tiny_transformer(context=8)
    idx = torch.randint(0, 11, (2, 40))
    ring = _steps(model, idx, ring=True)
    grown = _steps(model, idx, ring=False)
    assert ring.shape == (2, 40, 11)
    torch.testing.assert_close(ring, grown, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        {"model": "lstm", "layers": 2, "hidden": 32, "embedding_dim": 8},
        {"model": "gru", "layers": 3, "hidden": 16, "embedding_dim": 16, "tie_weights": True},
        {"model": "rnn", "layers": 1, "hidden": 32, "embedding_dim": 8, "tie_weights": True},
        {"model": "transformer", "layers": 3, "heads": 4, "embedding_dim": 32, "mlp_dim": 64,
         "context": 16},
    ],
)  # fmt: skip
def test_tied_heads_share_the_embedding(options):
    model = build_model(ModelConfig(vocab_size=50, **options))
    if model.config.model == "transformer":
        assert model.config.tie_weights  # always, and never quietly: untying it is refused
        with pytest.raises(UsageError, match="always ties"):
            ModelConfig(vocab_size=50, **{**options, "tie_weights": False})
    elif model.config.tie_weights:
        untied = build_model(ModelConfig(vocab_size=50, **{**options, "tie_weights": False}))
        assert count_parameters(model) < count_parameters(untied)
    if model.config.tie_weights:
        assert not any(name.startswith("head.") for name in model.state_dict())
        logits, _ = model(torch.tensor([[1, 2, 3]]))
        logits.sum().backward()
        assert model.embedding.weight.grad[1:4].abs().sum() > 0


@pytest.mark.slow
def test_a_transformer_run_saved_before_the_mlp_had_names_still_generates(tmp_path):
    text = "an older run, read by a newer authorgen. " * 60
    run_dir = tmp_path / "checkpoints" / "old"
    config = TrainConfig(steps=3, context=8, batch_size=2, device="cpu", index=False)
    model = _model(model="transformer", heads=2, context=8)
    train(_split(text, text[:200]), model, config, run_dir)
    args = ("generate", "old", "--length", "60", "--seed", "3")
    before = run_cli(*args, home=tmp_path)
    assert before.returncode == 0, before.stderr
    # rewrite the run as authorgen wrote it then: the MLP's width in `hidden`, its layers by index
    record = json.loads((run_dir / "config.json").read_text())
    record["model"]["hidden"] = record["model"].pop("mlp_dim")
    (run_dir / "config.json").write_text(json.dumps(record))
    old_names = {".mlp.fc.": ".mlp.0.", ".mlp.proj.": ".mlp.2."}
    weights = load_file(str(run_dir / "model.safetensors"))
    for new, old in old_names.items():
        weights = {k.replace(new, old): v for k, v in weights.items()}
    assert any(".mlp.0." in k for k in weights)
    save_file(weights, str(run_dir / "model.safetensors"))
    after = run_cli(*args, home=tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout and len(after.stdout) >= 60


def test_weight_decay_skips_norms_biases_and_embeddings():
    model = _tiny_transformer()
    decay, no_decay = make_optimizer(
        model, TrainConfig(steps=1, weight_decay=0.1), torch.device("cpu")
    ).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 and not names[id(p)].startswith("embedding") for p in decay["params"])
    assert {names[id(p)] for p in no_decay["params"]} >= {"embedding.weight", "norm.weight"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# --- auto-sizing ------------------------------------------------------------------------------


@pytest.mark.parametrize("chars", [10_000, 1_000_000, 100_000_000])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_sizing_picks_something_sane(chars, device):
    chosen = plan.choose(chars, "char", device, TrainOptions(time_s=300.0))
    m, t = chosen.model, chosen.train
    params = count_parameters(build_model(replace(m, vocab_size=100)))
    assert chosen.reasons and "preset" in chosen.reasons[0]
    assert m.model == ("transformer" if device == "cuda" else "lstm")
    assert t.batch_size * (t.context + 1) * 4 <= chars
    assert plan.overfit_warning(params, chars) is None  # small enough not to memorise
    if chars == 10_000:
        assert m.dropout > 0 and params < 150_000
    if chars >= 1_000_000:
        assert params >= 500_000  # and big enough to learn the language
    if device == "cpu" and chars == 1_000_000:  # the measured 5-minute CPU recipe
        assert (m.layers, m.hidden, t.context, t.batch_size, t.lr) == (2, 256, 64, 4, 3e-3)


def test_given_options_win_and_a_too_big_model_is_warned_about(tmp_path):
    chosen = plan.choose(5_000, "char", "cpu", TrainOptions(hidden=512, layers=3, steps=1))
    assert (chosen.model.hidden, chosen.model.layers) == (512, 3)
    assert chosen.train.steps == 1 and chosen.train.time_s is None
    assert "given: hidden 512, layers 3" in chosen.reasons
    text = "a small text to learn. " * 200
    trainer = build_trainer(_split(text, text[:300]), chosen.model, chosen.train, tmp_path / "run")
    assert "4,600 training tokens: it will likely memorise" in trainer.record.warnings[0]
    transformer = plan.choose(1_000_000, "bpe", "cpu", TrainOptions(model="transformer", steps=5))
    assert transformer.model.model == "transformer" and transformer.train.batching == "windows"
    with pytest.raises(UsageError, match="--preset must be one of"):
        plan.choose(1000, "char", "cpu", TrainOptions(steps=1), preset="huge")
    with pytest.raises(UsageError, match="--heads applies to the transformer"):
        plan.choose(1000, "char", "cpu", TrainOptions(steps=1, model="lstm", heads=2))
    with pytest.raises(UsageError, match="heads of an even size"):
        plan.choose(1000, "char", "cpu", TrainOptions(steps=1, model="transformer", heads=5))


# --- exact resume -----------------------------------------------------------------------------


class Notes(Callback):
    """Keeps the messages and counts the starts it is given."""

    def __init__(self):
        self.messages, self.started = [], 0

    def on_message(self, text):
        self.messages.append(text)

    def on_start(self, info):
        self.started += 1


def _weights(run_dir, name="last/model.safetensors"):
    return load_file(str(run_dir / name))


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("options", [TINY_LSTM, TINY_TRANSFORMER], ids=["lstm", "transformer"])
def test_interrupted_and_resumed_equals_uninterrupted_bit_for_bit(alice_home, options):
    corpora, checkpoints = alice_home / "corpora", alice_home / "checkpoints"
    settings = TrainOptions(**options, steps=30, eval_every=10)
    name = options["model"]
    whole = train_corpus(corpora, checkpoints, "alice", settings, run_name=f"{name}-whole")
    with pytest.raises(Interrupted, match="--resume"):
        train_corpus(
            corpora, checkpoints, "alice", settings, run_name=f"{name}-cut", callback=StopAt(17)
        )
    cut_dir = checkpoints / f"{name}-cut"
    assert json.loads((cut_dir / "config.json").read_text())["status"] == "interrupted"
    assert torch.load(cut_dir / "last" / "state.pt", weights_only=True)["step"] == 17
    notes = Notes()
    resumed = resume(corpora, checkpoints, f"{name}-cut", callback=notes)
    assert notes.messages[-1].startswith(f"resuming {name}-cut at step 17 (")
    assert notes.started == 1  # the loop reports to the same callback as the resume
    assert resumed.steps == whole.steps == 30
    _assert_same_weights(_weights(whole.run_dir), _weights(cut_dir))
    _assert_same_weights(
        _weights(whole.run_dir, "model.safetensors"), _weights(cut_dir, "model.safetensors")
    )
    rows = [
        [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        for d in (whole.run_dir, cut_dir)
    ]
    assert [(r["step"], r["val_loss"]) for r in rows[0]] == [
        (r["step"], r["val_loss"]) for r in rows[1]
    ]
    config = json.loads((cut_dir / "config.json").read_text())
    assert config["status"] == "finished" and config["resumed"][0]["step"] == 17
    with pytest.raises(UsageError, match="already finished"):
        resume(corpora, checkpoints, f"{name}-cut")


@pytest.mark.slow
def test_sigterm_saves_exits_130_and_the_run_resumes(alice_home):
    args = ["--preset", "tiny", "--device", "cpu", "--steps", "100000", "--name", "term"]
    env = {**os.environ, "AUTHORGEN_HOME": str(alice_home)}
    env.pop("AUTHORGEN_CACHE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "authorgen", "train", "alice", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    config = alice_home / "checkpoints" / "term" / "config.json"
    deadline = time.monotonic() + 120
    while not config.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "authorgen train --resume term" in err
    state = torch.load(config.parent / "last" / "state.pt", weights_only=True)
    assert state["step"] > 0
    refused = run_cli("train", "alice", "--resume", "term", home=alice_home)
    assert refused.returncode == 2 and "--resume continues a run" in refused.stderr
    unknown = run_cli("train", "--resume", "nope", home=alice_home)
    assert unknown.returncode == 4 and "no run named 'nope'" in unknown.stderr


# --- budget, patience, divergence, precision --------------------------------------------------


def _split(train: str, val: str) -> Split:
    return Split.from_texts(train, val, "test")


def _model(**kw) -> ModelConfig:
    size = {"mlp_dim": 16} if kw.get("model") == "transformer" else {"hidden": 16}
    return ModelConfig(**{**size, "embedding_dim": 8, "layers": 1, **kw})


class Ticks(Callback):
    """A clock that moves only when told: `seconds_per_step` after each training step."""

    def __init__(self, seconds_per_step: float):
        self.now, self.per_step = 0.0, seconds_per_step

    def __call__(self) -> float:
        return self.now

    def on_step(self, step, loss, progress, tokens_per_s):
        self.now += self.per_step


def test_the_time_budget_is_honoured(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 400
    config = TrainConfig(time_s=2.0, context=16, batch_size=4, eval_every=10_000, device="cpu")
    clock = Ticks(0.1)  # each step takes 0.1 s, however fast this machine is
    split, run_dir = _split(text, text[:500]), tmp_path / "run"
    result = train(split, _model(), config, run_dir, callback=clock, clock=clock)
    # the budget is checked as each step ends, before its tick: the step that finds 2.0 s
    # used (the 21st) is the last
    assert result.steps == 21 and result.elapsed_s == pytest.approx(2.1)
    assert json.loads((run_dir / "config.json").read_text())["result"]["steps"] == 21
    # the schedule followed the clock: the last step ran at 1.9 s of 2, 95% of the budget
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["lr"] == pytest.approx(learning_rate(config, 20, 0.95))


def test_patience_stops_when_validation_stops_improving(tmp_path):
    # it learns "abab...", so its validation loss on "aaaa..." gets worse as it learns
    config = TrainConfig(steps=400, eval_every=5, patience=3, lr=3e-2, context=8, device="cpu")
    result = train(_split("ab" * 2000, "a" * 400), _model(), config, tmp_path / "run")
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert result.status == "stopped early" and result.steps < 400
    assert len(rows) == rows.index(min(rows, key=lambda r: r["val_loss"])) + 4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["status"] == "stopped early"


class Poison(Callback):
    """After step 3, make the output weights overflow, as a far too high learning rate would."""

    def __init__(self, trainer_ref: list):
        self.trainer_ref, self.poisoned = trainer_ref, None

    def on_step(self, step, loss, progress, tokens_per_s):
        if step == 3:
            model = self.trainer_ref[0].model
            with torch.no_grad():
                model.head.weight.fill_(float("inf"))
            self.poisoned = {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("read_every", [1, 7])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_state_before_it(tmp_path, read_every):
    """Read at once (CPU), or found on the device and read 3 steps later (as on a GPU)."""
    ref: list = []
    callback = Poison(ref)
    config = TrainConfig(steps=50, context=8, device="cpu")
    text = "some text to learn from. " * 100
    split = _split(text, text[:200])
    run = tmp_path / "run"
    trainer = build_trainer(split, _model(), config, run, callback=callback, read_every=read_every)
    ref.append(trainer)
    with pytest.raises(Diverged, match=r"became (nan|inf|-inf) at step 4.*Lower --lr"):
        trainer.run()
    state = torch.load(tmp_path / "run" / "last" / "state.pt", weights_only=True)
    assert state["step"] == 3 and state["tokens"] == 3 * 4 * 8
    saved = _weights(tmp_path / "run")
    for key, value in callback.poisoned.items():  # the failed step changed nothing
        assert torch.equal(saved[key], value), key
    assert json.loads((tmp_path / "run" / "config.json").read_text())["status"] == "diverged"


def test_bf16_autocast_on_the_cpu_trains_or_is_refused_in_one_line(tmp_path):
    text = "bf16 on a processor. " * 200
    config = TrainConfig(steps=3, context=8, device="cpu", precision="bf16")
    transformer = _model(model="transformer", heads=2, context=8)
    result = train(_split(text, text[:200]), transformer, config, tmp_path / "t")
    assert math.isfinite(result.best_val_loss)
    assert json.loads((tmp_path / "t" / "config.json").read_text())["precision"] == "bf16"
    # oneDNN has a bf16 LSTM only on processors with AVX512-BF16 (or AMX)
    try:
        lstm = train(_split(text, text[:200]), _model(), config, tmp_path / "l")
    except UsageError as exc:
        assert "cannot run the lstm in bf16" in str(exc) and "--precision fp32" in str(exc)
        assert "\n" not in str(exc)
    else:
        assert math.isfinite(lstm.best_val_loss)


# --- generation and many processes ------------------------------------------------------------


@pytest.mark.slow
def test_a_transformer_run_generates_past_its_context_in_a_fresh_process(alice_home):
    trained = run_cli(
        "train", "alice", "--model", "transformer", "--layers", "1", "--heads", "2",
        "--embedding-dim", "16", "--context", "16", "--steps", "30", "--device", "cpu",
        "--name", "gen-t", home=alice_home,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "transformer 1 layers x 2 heads" in trained.stderr
    args = ("generate", "gen-t", "--length", "300", "--seed", "3", "--quiet")
    first, second = run_cli(*args, home=alice_home), run_cli(*args, home=alice_home)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.rstrip("\n")) >= 300 and first.stdout == second.stdout


@pytest.mark.slow
def test_two_processes_with_ddp_train_one_run_like_one_process_with_twice_the_batch(alice_home):
    common = [
        "--model", "lstm", "--layers", "1", "--hidden", "32", "--embedding-dim", "8",
        "--context", "16", "--dropout", "0", "--device", "cpu", "--steps", "20",
        "--eval-every", "10", "--lr", "1e-2",
    ]  # fmt: skip
    env = {**os.environ, "AUTHORGEN_HOME": str(alice_home), "OMP_NUM_THREADS": "1"}
    env.pop("AUTHORGEN_CACHE", None)
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "authorgen", "train", "alice", *common, "--batch-size", "2", "--name", "ddp"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stderr.count("best val") == 1  # rank 0 alone reports
    assert ddp.stdout == "ddp\n"  # and prints the run's name
    single = run_cli(
        "train", "alice", *common, "--batch-size", "4", "--name", "one", home=alice_home
    )
    assert single.returncode == 0, single.stderr
    run_dir = alice_home / "checkpoints" / "ddp"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["processes"] == 2 and config["status"] == "finished"
    assert config["result"]["tokens"] == 20 * 4 * 16
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert not list(run_dir.parent.glob("ddp*[!p]"))  # one run directory, nothing beside it
    a, b = _weights(run_dir), _weights(alice_home / "checkpoints" / "one")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-4, rtol=1e-3)


# --- the plan from measured speed (issue 19) --------------------------------------------------

# tokens per second of each CPU candidate, as the probe reports them
FAST_CPU = {
    "lstm": {"fp32": 60_000.0, "bf16": 90_000.0},
    "lstm-medium": {"fp32": 40_000.0, "bf16": 70_000.0},
    "lstm-large": {"fp32": 30_000.0, "bf16": 60_000.0},
}
SLOW_CPU = {
    "lstm": {"fp32": 2_000.0},
    "lstm-medium": {"fp32": 700.0},
    "lstm-large": {"fp32": 300.0},
}


def test_the_cpu_plan_follows_the_measured_speed():
    options = TrainOptions(time_s=300.0)
    slow = plan.choose(1_000_000, "char", "cpu", options, speeds=SLOW_CPU)
    fast = plan.choose(1_000_000, "char", "cpu", options, speeds=FAST_CPU)
    assert slow.model.hidden < fast.model.hidden
    assert (slow.train.precision, fast.train.precision) == ("fp32", "bf16")
    assert slow.speeds == SLOW_CPU and any("measured on this machine" in r for r in fast.reasons)
    assert any(r.startswith("precision bf16: bf16 measured") for r in fast.reasons)
    # the choice is the candidate whose curve is lowest at the tokens it would read
    expected = {
        name: plan.expected_loss(name, speed[plan.fast_precision(speed)] * 300 * plan.TRAIN_SHARE)
        for name, speed in FAST_CPU.items()
    }
    best = min(expected, key=expected.get)
    assert fast.model.hidden == plan.PRESETS[best]["hidden"]
    # a longer budget never picks a smaller model
    hour = plan.choose(1_000_000, "char", "cpu", TrainOptions(time_s=3600.0), speeds=SLOW_CPU)
    assert hour.model.hidden >= slow.model.hidden

    # given sizes or a step budget: the probe only sets the precision of a measured shape
    def measured(**options):
        return plan.choose(1_000_000, "char", "cpu", TrainOptions(**options), speeds=FAST_CPU)

    sized = measured(time_s=300.0, hidden=64)
    assert sized.model.hidden == 64 and sized.train.precision == "auto"
    steps = measured(steps=100)
    assert steps.model.hidden == 256 and steps.train.precision == "bf16"
    assert measured(steps=9, precision="fp32").train.precision == "fp32"


def test_a_candidate_the_probe_had_no_time_for_is_planned_without_it():
    # the probe's deadline came before lstm-large's bf16 step (0 tokens/s: not measured in time)
    speeds = {**FAST_CPU, "lstm-large": {"fp32": 0.0}}
    chosen = plan.choose(1_000_000, "char", "cpu", TrainOptions(time_s=3600.0), speeds=speeds)
    assert chosen.model.hidden == plan.PRESETS["lstm-medium"]["hidden"]
    assert plan.fast_precision({"fp32": 0.0}) == "fp32"


@pytest.mark.parametrize("memory", [60_000_000, 250_000_000, 64 << 30])
def test_a_plan_never_needs_more_than_half_the_free_memory(memory):
    chosen = plan.choose(
        1_000_000, "char", "cpu", TrainOptions(time_s=3600.0), speeds=FAST_CPU, memory=memory
    )
    settings = {**chosen.model.to_dict(), **chosen.train.to_dict()}
    assert plan.training_bytes(settings, 100) <= memory * plan.MEMORY_SHARE
    if memory == 60_000_000:
        assert chosen.model.hidden == 256
        assert any("would not fit in memory" in r for r in chosen.reasons)


@pytest.mark.parametrize("name", ["lstm", "lstm-medium", "lstm-large", "transformer-small"])
def test_the_plan_estimates_a_models_size_without_building_it(name):
    preset = plan.PRESETS[name]
    config = ModelConfig(
        vocab_size=100, context=preset["context"],
        **{k: v for k, v in preset.items() if k in plan.MODEL_FIELDS},
    )  # fmt: skip
    params = count_parameters(build_model(config))
    assert abs(plan.estimated_params(preset, 100) - params) <= 0.02 * params


def _plant_speeds(cache, speeds: dict) -> None:
    """The probe's measurements of this machine, as `probe.speeds` keeps them."""
    from authorgen import probe

    shapes = plan.probe_shapes("char")
    mine = {
        probe.spec(ModelConfig(**model), batch, context): speeds[name]
        for name, (model, batch, context) in shapes.items()
    }
    vocab = next(iter(shapes.values()))[0]["vocab_size"]
    cache.mkdir(parents=True, exist_ok=True)
    key = probe.machine_key(torch.device("cpu"), vocab)
    (cache / probe.PROBE_FILE).write_text(json.dumps({key: mine}))


@pytest.mark.slow
def test_the_probes_choice_is_recorded_and_resume_keeps_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    names = (  # one whole work is held out: two are left to train on, 290k tokens
        "pg1342-pride-and-prejudice.txt",
        "pg98-a-tale-of-two-cities.txt",
        "pg1400-great-expectations.txt",
    )
    books = [data_file(name) for name in names]
    assert run_cli("fetch", *map(str, books), "--name", "three", home=home).returncode == 0
    cache = tmp_path / "cache"
    monkeypatch.setenv("AUTHORGEN_CACHE", str(cache))
    # this "machine" trains the large LSTM fast enough for it to win, and fp32 faster than bf16
    fast_large = {
        "lstm": {"fp32": 1e5, "bf16": 5e4},
        "lstm-medium": {"fp32": 1e5, "bf16": 5e4},
        "lstm-large": {"fp32": 1e7, "bf16": 5e6},
    }
    _plant_speeds(cache, fast_large)
    # a budget no machine spends here: the callbacks stop both parts (a short budget ran out
    # before step 3 on a loaded machine)
    options = TrainOptions(time_s=1800.0, eval_every=1000)
    corpora, checkpoints = home / "corpora", home / "checkpoints"
    with pytest.raises(Interrupted):
        train_corpus(corpora, checkpoints, "three", options, run_name="big", callback=StopAt(3))
    run_dir = checkpoints / "big"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["hidden"] == plan.PRESETS["lstm-large"]["hidden"]
    assert config["train"]["precision"] == "fp32" and config["precision"] == "fp32"
    assert config["data"]["probe"] == fast_large
    assert any(r.startswith("measured on this machine") for r in config["data"]["plan"])
    # the machine now measures otherwise; the run goes on as it was planned
    _plant_speeds(cache, {**fast_large, "lstm-large": {"fp32": 1.0, "bf16": 1e7}})
    with pytest.raises(Interrupted):
        resume(corpora, checkpoints, "big", callback=StopAt(5))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["hidden"] == plan.PRESETS["lstm-large"]["hidden"]
    assert config["precision"] == "fp32" and config["train"]["time_s"] == 1800.0
    # it went on from step 3 to step 5
    assert config["resumed"][0]["step"] == 3
    assert config["status"] == "interrupted"
    assert torch.load(run_dir / "last" / "state.pt", weights_only=True)["step"] == 5


def test_the_loss_chart_is_drawn_first_then_at_most_every_30_s_and_at_the_end(
    monkeypatch, tmp_path
):
    from authorgen import train as train_module

    drawn, now = [], [0.0]
    monkeypatch.setattr(train_module.checkpoint, "save_chart", lambda run_dir: drawn.append(now[0]))
    chart = train_module.LossChart(tmp_path, print, clock=lambda: now[0])
    for now[0] in (0.0, 5.0, 20.0, 31.0, 40.0):
        chart.on_eval({})
    assert drawn == [0.0, 31.0]
    chart.on_end("finished")  # the rows of 40 s were not drawn yet
    assert drawn == [0.0, 31.0, 40.0]
    chart.on_end("finished")  # nothing new: not drawn again
    assert len(drawn) == 3
