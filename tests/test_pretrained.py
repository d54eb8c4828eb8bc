"""Issue 30: public pretrained models (Hugging Face format) in authorgen's own transformer.

Tiny models of each family supported are built here with `transformers` (random weights of
small shapes), each with a byte-level BPE tokenizer trained here on Alice, and saved as
`save_pretrained` saves them. Their logits, and greedy text through `authorgen generate`, are
checked against `transformers`' own.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from authorgen.devices import cpu_has_bf16
from authorgen.families import load_pretrained
from authorgen.tokenizer.pretrained import PretrainedTokenizer
from helpers import data_file, run_cli, run_in_process
from texts import FRENCH
from tiny_hf import ALICE, hf_folder, random_model, tokenizer

POLISH = "Zażółć gęślą jaźń — “cudzysłów”, 𝔘nicode i emoji 🙂.\n"


@pytest.fixture(scope="module", params=["llama", "gpt_neox", "gpt2"])
def hf_model(request, tmp_path_factory):
    """(folder, the transformers model, its tokenizer): a tiny model's Hugging Face folder,
    named after its family."""
    folder = tmp_path_factory.mktemp(f"{request.param}-")
    return (folder, *hf_folder(request.param, folder))


def _family(folder: Path) -> str:
    return folder.name.rsplit("-", 1)[0]


def _fetch_alice(home: Path) -> None:
    done = run_cli("fetch", str(data_file("pg11-alices-adventures-in-wonderland.txt")),
                   "--name", "alice", "-q", home=home)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _as_is(home: Path, folder: Path):
    """Run `as-is` of the model in `folder` as it is (--steps 0) on Alice."""
    made = run_cli("train", "alice", "--from", str(folder), "--steps", "0", "--name", "as-is",
                   home=home)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return made


def test_the_logits_equal_transformers_and_the_cache_equals_a_full_pass(hf_model):
    folder, reference, tok = hf_model
    ours, config = load_pretrained(folder)
    ours.eval()
    ids = torch.tensor([tok.encode(ALICE[5000:5400]).ids[:100]])
    with torch.no_grad():
        expected = reference(ids).logits
        got, _ = ours(ids)
        assert (got - expected).abs().max() < 1e-4
        _, cache = ours(ids[:, :60])
        steps = torch.cat([ours(ids[:, i : i + 1], cache)[0] for i in range(60, 100)], dim=1)
    assert (steps - got[:, 60:]).abs().max() < 1e-4
    assert config.context == 128 and config.variant is not None


def _windows(reference, ids: list[int], start: int, context: int) -> torch.Tensor:
    """transformers' logits (len - start, V) of the tokens after each of ids[start - 1:], each
    read in its window of learned positions: when a window is full, the next begins with its
    last half."""
    window, logits = 0, []
    for t in range(start - 1, len(ids) - 1):
        if t - window == context:
            window = t - context // 2
        logits.append(reference(torch.tensor([ids[window : t + 1]])).logits[0, -1])
    return torch.stack(logits)


def test_gpt2_weights_saved_without_the_transformer_prefix_read_the_same(tmp_path):
    """OpenAI's upload (`openai-community/gpt2`) names its weights as GPT2Model does, without
    GPT2LMHeadModel's "transformer." prefix, and keeps the attention's causal mask beside them."""
    from safetensors.torch import load_file, save_file

    reference, tok = hf_folder("gpt2", tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    renamed = {k.removeprefix("transformer."): v for k, v in weights.items()}
    renamed["h.0.attn.bias"] = torch.ones(1, 1, 128, 128).tril()  # the old mask buffer
    assert renamed.keys() != weights.keys()
    save_file(renamed, str(tmp_path / "model.safetensors"))
    ours = load_pretrained(tmp_path)[0].eval()
    ids = torch.tensor([tok.encode(ALICE[2000:2400]).ids[:80]])
    with torch.no_grad():
        assert (ours(ids)[0] - reference(ids).logits).abs().max() < 1e-4


def test_learned_positions_read_past_the_tables_end_single_and_batched(tmp_path):
    """GPT-2's positions end at its table's end (here 128): a text read further starts a new
    window with its last 64 tokens, alone, in the engine's batch (rows joined at different
    times reach the end at different steps), and when validating in chunks."""
    reference, tok = hf_folder("gpt2", tmp_path)
    ours = load_pretrained(tmp_path)[0].eval()
    a, b = tok.encode(ALICE[5000:7000]).ids[:300], tok.encode(ALICE[9000:11000]).ids[:300]
    with torch.no_grad():
        expected_a, expected_b = _windows(reference, a, 100, 128), _windows(reference, b, 30, 128)
        _, cache = ours(torch.tensor([a[:99]]))  # one text, a token at a time
        alone = [ours(torch.tensor([[i]]), cache)[0][0, -1] for i in a[99:-1]]
        assert (torch.stack(alone) - expected_a).abs().max() < 1e-4
        # in a batch: a (twice), then b joins 40 steps later; one copy of a leaves at step 150
        batch = ours.join(None, ours.prefill(torch.tensor([a[:99]]))[1], copies=2)
        texts, rows = {0: a, 1: a, 2: b}, [0, 1]  # the texts in the batch's rows, in order
        got = {row: [] for row in texts}
        for step in range(200):
            if step == 40:
                batch = ours.join(batch, ours.prefill(torch.tensor([b[:29]]), batch)[1])
                rows.append(2)
            if step == 150:
                batch, rows = ours.keep(batch, torch.tensor([0, 2])), [0, 2]
            # each row is fed its text's next token: a's 99th at step 0, b's 29th at step 40
            fed = [texts[r][step + 99 if r < 2 else step - 11] for r in rows]
            logits = ours(torch.tensor(fed)[:, None], batch)[0][:, -1]
            for row, scores in zip(rows, logits, strict=True):
                got[row].append(scores)
        for row, expected in ((0, expected_a), (1, expected_a[:150]), (2, expected_b[:160])):
            assert len(got[row]) == len(expected)
            assert (torch.stack(got[row]) - expected).abs().max() < 1e-4
        # validation feeds 64 tokens at a time, each from 64 to 127 tokens before it
        chunked, _ = ours(torch.tensor([a]))
        full = reference(torch.tensor([a[:128]])).logits[0]
        later = [reference(torch.tensor([a[i - 64 : i + 64]])).logits[0, 64:] for i in (128, 192)]
        assert (chunked[0, :256] - torch.cat([full, *later])).abs().max() < 1e-4


def test_greedy_text_through_generate_equals_transformers(hf_model, home):
    folder, reference, tok = hf_model
    _fetch_alice(home)
    made = _as_is(home, folder)
    assert made.stdout.strip() == "as-is" and "pretrained" in made.stderr
    greedy = ("--temperature", "0", "--no-ngrams", "--any-words", "--length", "120", "--json")
    done = run_cli("generate", "as-is", "--prompt", "Alice was", *greedy, home=home)
    assert done.returncode == 0, done.stderr
    text = json.loads(done.stdout)["text"]
    prompt = torch.tensor([tok.encode("Alice was").ids])
    with torch.no_grad():
        out = reference.generate(prompt, max_new_tokens=120, do_sample=False, pad_token_id=0)
    expected = tok.decode(out[0, prompt.shape[1] :].tolist())
    assert len(text) == 120 and expected.startswith(text)
    batch = run_cli("generate", "as-is", "--prompt", "Alice was", "-n", "3", *greedy, home=home)
    assert [json.loads(line)["text"] for line in batch.stdout.splitlines()] == [text] * 3
    config = json.loads((home / "checkpoints" / "as-is" / "config.json").read_text())
    assert config["base"]["pretrained"]["family"] == _family(folder)
    assert config["tokenizer"]["kind"] == "pretrained"


def test_fine_tuning_a_few_steps_lowers_the_validation_loss(hf_model, home):
    folder = hf_model[0]
    _fetch_alice(home)
    losses = []
    for steps in ("0", "40"):
        args = ("--steps", steps, "--lr", "3e-3", "--context", "64")
        args = (*args, "--name", f"s{steps}")
        done = run_cli("train", "alice", "--from", str(folder), *args, home=home)
        assert done.returncode == 0, done.stderr
        config = json.loads((home / "checkpoints" / f"s{steps}" / "config.json").read_text())
        losses.append(config["best"]["val_loss"])
        assert config["train"]["context"] == 64
        # the plan's precision, --precision not given: bf16 where this CPU has it
        assert config["train"]["precision"] == ("bf16" if cpu_has_bf16() else "auto")
    assert losses[1] < losses[0] - 0.2


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ({"model_type": "gpt_bigcode"}, 2, "architecture 'gpt_bigcode' is not supported"),
        ({"rope_scaling": {"rope_type": "llama3"}}, 2, "RoPE scaling 'llama3'"),
        ({"head_dim": 8}, 2, "head size other than width / heads (8)"),
        ({"num_hidden_layers": None}, 4, "config.json has no valid num_hidden_layers (None)"),
        (None, 4, "has no readable weights"),
    ],
)
def test_a_model_folder_that_cannot_be_used_is_one_line(home, tmp_path, change, code, says):
    folder = tmp_path / "model"
    folder.mkdir()
    tokenizer(folder)
    torch.manual_seed(0)
    random_model("llama", 412).save_pretrained(folder)
    if change is None:
        (folder / "model.safetensors").unlink()
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **change}))
    _fetch_alice(home)
    done = run_cli("train", "alice", "--from", str(folder), "--steps", "0", home=home)
    assert done.returncode == code and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not list((home / "checkpoints").glob("alice*"))


def test_the_tokenizer_round_trips_any_text_and_streams_whole_characters(tmp_path):
    tokenizer(tmp_path)
    tok = PretrainedTokenizer((tmp_path / "tokenizer.json").read_bytes(), 420)
    assert tok.vocab_size == 420 and set(range(400, 420)) <= set(tok.special_ids)
    for text in (POLISH, FRENCH[:2000], ALICE[:3000]):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        decoder, streamed = tok.decoder(), []
        for i in ids:
            assert i not in decoder.banned()  # the text's own tokens never break UTF-8
            streamed.append(decoder.push(i))
        assert "".join(streamed) + decoder.flush() == text
        assert "\ufffd" not in "".join(streamed)
    decoder = tok.decoder()
    lead = next(i for i, b in enumerate(tok.piece_bytes) if b == b"\xc5")  # begins "ż", "ł"
    decoder.push(lead)
    banned = set(decoder.banned())
    assert tok.encode("a")[0] in banned  # a character is begun: only its next byte may come
    assert not {i for i, b in enumerate(tok.piece_bytes) if b[:1] == b"\xbc"} & banned
    cut = tok.safe_cut(ALICE[:5000])
    assert tok.encode(ALICE[:cut]) + tok.encode(ALICE[cut:5000]) == tok.encode(ALICE[:5000])


def test_a_fine_tune_that_cannot_fit_in_memory_is_refused_before_it_starts(
    hf_model, home, monkeypatch
):
    import authorgen.pretrained

    _fetch_alice(home)
    monkeypatch.setattr(authorgen.pretrained, "free_memory", lambda device: 5 << 20)  # 5 MiB
    done = run_in_process("train", "alice", "--from", str(hf_model[0]), "--steps", "5", home=home)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "needs about" in done.stderr and "and 5 MiB is free; lower --batch-size" in done.stderr
    assert not list((home / "checkpoints").glob("alice*"))
    fits = run_in_process("train", "alice", "--from", str(hf_model[0]), "--steps", "0",
                          "--batch-size", "1", "--context", "16", home=home)  # fmt: skip
    assert fits.returncode == 0, fits.stderr


def test_a_model_by_hub_id_is_downloaded_once_then_found_offline(hf_model, home):
    """The hub path against a local server standing in for the hub (`HF_ENDPOINT`), then from
    the cache with the server gone."""
    from hub_server import LocalHub

    folder = hf_model[0]
    repo = f"tests/tiny-{folder.name}"
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# A tiny model for tests\n"
    env = {"HF_HOME": str(home / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    _fetch_alice(home)
    train = ("train", "alice", "--from", repo, "--steps", "0", "--name")
    with LocalHub({repo: files}) as hub:
        env["HF_ENDPOINT"] = hub.url
        done = run_cli(*train, "hub", home=home, env=env)
        assert done.returncode == 0, done.stderr
        again = run_cli(*train, "again", home=home, env=env)
        assert again.returncode == 0, again.stderr
        unknown = run_cli(*train[:3], "tests/nothing", "--steps", "0", home=home, env=env)
        downloads = dict(hub.downloads)
        commit = hub.commits[repo]
    wanted = {"config.json", "tokenizer.json", "model.safetensors", "README.md"}
    assert downloads == {(repo, name): 1 for name in wanted}  # once, and only what is read
    config = json.loads((home / "checkpoints" / "hub" / "config.json").read_text())
    known = config["base"]["pretrained"]
    assert (known["id"], known["hub"], known["revision"]) == (repo, True, commit)
    assert known["licence"] == "apache-2.0"
    assert config["base"]["name"] == "tiny-" + folder.name.replace("_", "-")
    assert unknown.returncode == 4 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert "no run named 'tests/nothing'" in unknown.stderr and "no model" in unknown.stderr
    # the server is gone: the cache serves the model, an unknown one is one line (exit 3)
    offline = run_cli(*train, "offline", home=home, env=env)
    assert offline.returncode == 0, offline.stderr
    best = [
        json.loads((home / "checkpoints" / n / "config.json").read_text())["best"]["val_loss"]
        for n in ("hub", "offline")
    ]
    assert best[0] == best[1]
    env["HF_HUB_OFFLINE"] = "1"  # else the hub is retried for about 20 s first
    missing = run_cli(*train[:3], "tests/other", "--steps", "0", home=home, env=env)
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1, missing.stderr
    assert "not in the cache and the hub cannot be reached" in missing.stderr


def test_compare_puts_a_pretrained_model_as_it_is_and_fine_tuned_beside_scratch(home, tmp_path):
    folder = tmp_path / "tiny-gpt2"
    folder.mkdir()
    hf_folder("gpt2", folder)
    _fetch_alice(home)
    compare = ("compare", "alice", "--models", "lstm", "--steps", "3", "--samples", "0")
    missing = run_cli(*compare, "--from", "nope", home=home)
    assert missing.returncode == 4 and missing.stderr.count("\n") == 1, missing.stderr
    assert not (home / "checkpoints" / "alice-compare-lstm-char").exists()  # refused first
    done = run_cli(*compare, "--from", str(folder), "--json", home=home)
    assert done.returncode == 0, done.stderr
    rows = {r["run"]: r for r in json.loads(done.stdout)}
    assert set(rows) == {
        "alice-compare-lstm-char",
        "alice-compare-tiny-gpt2-tuned",
        "alice-compare-tiny-gpt2-as-is",
    }
    assert [rows[f"alice-compare-tiny-gpt2-{k}"]["steps"] for k in ("tuned", "as-is")] == [3, 0]
    tuned = rows["alice-compare-tiny-gpt2-tuned"]
    assert tuned["base"] == str(folder) and tuned["tokenizer"] == "pretrained"
    config = json.loads((home / "checkpoints" / tuned["run"] / "config.json").read_text())
    assert config["base"]["pretrained"]["family"] == "gpt2"


def test_the_run_serves_through_the_api_with_its_lineage(hf_model, home):
    from serving import Server

    folder = hf_model[0]
    _fetch_alice(home)
    _as_is(home, folder)
    cli = run_cli("generate", "as-is", "--prompt", "Alice was", "--temperature", "0",
                  "--no-ngrams", "--any-words", "--length", "80", "--json", home=home)  # fmt: skip
    body = {"model": "as-is", "prompt": "Alice was", "temperature": 0, "ngrams": False}
    body.update(known_words=False, length=80, n=2)
    with Server(home) as server:
        answer = server.post("/v1/completions", body).json()
        described = server.get("/v1/models/as-is").json()
        assert server.stop()[0] == 0
    text = json.loads(cli.stdout)["text"]
    assert [c["text"] for c in answer["choices"]] == [text, text]
    pretrained = described["base"]["pretrained"]
    assert pretrained["family"] == _family(folder) and "source" not in pretrained


def test_known_words_and_the_ngram_mix_work_on_its_tokens(hf_model, home):
    from authorgen.checkpoint import load_run
    from authorgen.known_words import ROOT

    folder = hf_model[0]
    _fetch_alice(home)
    _as_is(home, folder)
    args = ("generate", "as-is", "--length", "300", "-n", "3", "--seed", "1", "--json")
    for extra, invented in ((("--no-ngrams",), False), (("--any-words", "--no-ngrams"), True)):
        done = run_cli(*args, *extra, home=home)
        assert done.returncode == 0, done.stderr
        samples = [json.loads(line) for line in done.stdout.splitlines()]
        made_up = sum(s["originality"]["invented"] for s in samples)
        assert (made_up > 10) == invented and all(s["originality"]["words"] > 20 for s in samples)
    mixed = json.loads(run_cli(*args, home=home).stdout.splitlines()[0])
    assert mixed["ngrams"] is True and mixed["known_words"] is True
    # the tokens that hold part of a character and more (curly quotes' first bytes...) are never
    # allowed by the rule: byte pieces spell every character
    run = load_run(home / "checkpoints" / "as-is")
    rule = run.originality_index().known_words(run.tokenizer)
    partial = [
        i for i, t in enumerate(rule.texts) if t is None and len(run.tokenizer.piece_bytes[i]) > 1
    ]
    mask, _ = rule.banned(ROOT, torch.device("cpu"))
    assert partial and all(mask[i] for i in partial)


def test_a_fine_tune_of_a_pretrained_model_resumes_bit_for_bit(hf_model, home):
    from safetensors.torch import load_file

    from authorgen.config import TrainOptions
    from authorgen.errors import Interrupted
    from authorgen.train import resume, train_corpus
    from helpers import StopAt

    folder = hf_model[0]
    _fetch_alice(home)
    corpora, checkpoints = home / "corpora", home / "checkpoints"
    settings = TrainOptions(steps=16, eval_every=8, context=32, batch_size=4, device="cpu")
    whole = train_corpus(corpora, checkpoints, "alice", settings, run_name="whole",
                         base=str(folder))  # fmt: skip
    for name, at in (("cut", 10), ("early", 3)):
        with pytest.raises(Interrupted):
            train_corpus(corpora, checkpoints, "alice", settings, run_name=name,
                         base=str(folder), callback=StopAt(at))  # fmt: skip
    shutil.rmtree(checkpoints / "early" / "last")  # killed before its first state
    for name in ("cut", "early"):
        resume(corpora, checkpoints, name)
        for file in ("model.safetensors", "last/model.safetensors"):
            a = load_file(str(whole.run_dir / file))
            b = load_file(str(checkpoints / name / file))
            assert all(torch.equal(a[k], b[k]) for k in a), (name, file)


def test_adapters_merged_give_the_adapted_models_logits():
    from authorgen import lora
    from authorgen.config import ModelConfig
    from authorgen.models import build_model

    torch.manual_seed(0)
    config = ModelConfig(model="transformer", vocab_size=50, embedding_dim=32, layers=2,
                         heads=4, context=16, variant={"kv_heads": 2, "mlp": "swiglu"})  # fmt: skip
    model = build_model(config).eval()
    trained = lora.add_adapters(model, 4)
    assert trained == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_()  # as if trained: B starts at zero
        ids = torch.randint(0, 50, (2, 16))
        adapted, _ = model(ids)
        plain, _ = build_model(config, lora.merged(model.state_dict())).eval()(ids)
    assert (adapted - plain).abs().max() < 1e-4 and adapted.abs().max() > 0.1


def test_adapters_fine_tune_and_are_chosen_when_every_weight_would_not_fit(
    hf_model, home, monkeypatch
):
    import authorgen.pretrained

    folder = hf_model[0]
    _fetch_alice(home)
    small = ("--batch-size", "4", "--context", "64")
    asked = run_cli("train", "alice", "--from", str(folder), "--lora", "8", "--steps", "60",
                    "--lr", "1e-2", *small, "--name", "adapted", home=home)  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert "low-rank adapters of rank 8" in asked.stderr
    as_is = run_cli("train", "alice", "--from", str(folder), "--steps", "0", *small,
                    "--name", "as-is", home=home)  # fmt: skip
    configs = {
        n: json.loads((home / "checkpoints" / n / "config.json").read_text())
        for n in ("adapted", "as-is")
    }
    assert as_is.returncode == 0 and configs["adapted"]["train"]["lora"] == 8
    assert configs["adapted"]["best"]["val_loss"] < configs["as-is"]["best"]["val_loss"] - 0.1
    made = run_cli("generate", "adapted", "--length", "50", "--json", home=home)
    assert made.returncode == 0 and len(json.loads(made.stdout)["text"]) == 50
    # free memory between what adapters need and what every weight needs at this size
    from authorgen.config import TrainConfig

    base = authorgen.pretrained.PretrainedBase.open(str(folder))
    sizes = TrainConfig(batch_size=1, context=16, steps=2, precision="bf16")
    every, adapters = (sum(base.memory(base.model_config, replace(sizes, lora=r))) for r in (0, 8))
    assert adapters < every
    free = (adapters + every) // 2
    monkeypatch.setattr(authorgen.pretrained, "free_memory", lambda device: free)
    done = run_in_process("train", "alice", "--from", str(folder), "--steps", "2", "--batch-size",
                          "1", "--context", "16", "--name", "chosen", home=home)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "low-rank adapters of rank 8: training every weight needs about" in done.stderr
    config = json.loads((home / "checkpoints" / "chosen" / "config.json").read_text())
    assert config["train"]["lora"] == 8
    refused = run_cli("train", "alice", "--lora", "8", "--steps", "2", home=home)
    assert refused.returncode == 2 and "--lora adapts trained weights" in refused.stderr
