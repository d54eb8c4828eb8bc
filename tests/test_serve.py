"""`authorgen serve`: the engine's batch, and the API of a real server in a fresh process."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import threading
import time

import openai
import pytest
import torch

from authorgen.config import ModelConfig, SampleConfig
from authorgen.models import build_model
from authorgen.sample import Decoding, Generation, Job
from authorgen.tokenizer.char import CharTokenizer
from helpers import run_cli, served_text
from serving import Server, events, open_stream


@pytest.fixture(scope="module")
def server(served):
    with Server(served) as server:
        yield server
        code, err = server.stop()
        assert code == 0, err
        assert "Traceback" not in err


# --- the batch: texts that join and leave at token boundaries ---


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_samples_joining_a_batch_late_write_what_they_write_alone(kind):
    torch.manual_seed(0)
    text = served_text()
    tok = CharTokenizer.train([text])
    if kind == "lstm":
        config = ModelConfig(model="lstm", vocab_size=tok.vocab_size, hidden=32, embedding_dim=16)
    else:
        config = ModelConfig(
            model=kind, vocab_size=tok.vocab_size, layers=2, embedding_dim=32, heads=2, context=12
        )
    model = build_model(config).eval()
    settings = [
        ("The old ", SampleConfig(length=60, n=2)),
        ("Her quiet garden w", SampleConfig(length=30, top_k=5)),
    ]

    def alone(prompt, cfg, seeds):
        return [s.text for _, _, s in Generation(model, tok, prompt, cfg, seeds) if s]

    expected = [
        alone("The old ", settings[0][1], [3, 4]),
        alone("Her quiet garden w", settings[1][1], [9]),
    ]
    decoding = Decoding(model)
    first = Job(tok, "The old ", settings[0][1], [3, 4])
    second = Job(tok, "Her quiet garden w", settings[1][1], [9])
    decoding.add(first)
    sizes = []
    for step in range(200):
        if step == 17:  # the second joins while the first is writing; the context has slid
            decoding.add(second)
        sizes.append(len(decoding))
        decoding.step()
        if not decoding:
            break
    assert max(sizes) == 3 and sizes[-1] < 3  # together, and apart once the short one ended
    assert [s.sample.text for s in first.states] == expected[0]
    assert [s.sample.text for s in second.states] == expected[1]


def test_a_dropped_job_leaves_the_others_as_they_were():
    torch.manual_seed(0)
    tok = CharTokenizer.train([served_text()])
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, hidden=32, embedding_dim=16)).eval()
    cfg = SampleConfig(length=40)
    expected = [s.text for _, _, s in Generation(model, tok, "A ", cfg, [5]) if s]
    decoding = Decoding(model)
    kept, dropped = Job(tok, "A ", cfg, [5]), Job(tok, "The ", SampleConfig(length=500), [1, 2])
    decoding.add(dropped)
    decoding.add(kept)
    for _ in range(5):
        decoding.step()
    decoding.drop(dropped)
    assert len(decoding) == 1
    while decoding:
        decoding.step()
    assert [kept.states[0].sample.text] == expected
    assert all(s.sample is None for s in dropped.states)


# --- the API ---


def test_models_lists_every_run_with_what_it_is(server):
    response = server.get("/v1/models")
    assert response.status_code == 200
    data = {m["id"]: m for m in response.json()["data"]}
    assert set(data) == {"gpt", "lstm"}
    assert data["lstm"]["model"] == "lstm 1x64" and data["gpt"]["model"] == "transformer 2x32"
    for m in data.values():
        assert m["object"] == "model" and m["tokenizer"] == "char" and m["parameters"] > 1000
        assert 0 < m["best_val_bpc"] < 8 and m["created"] > 1.7e9
    assert server.get("/v1/models/gpt").json() == data["gpt"]
    assert server.get("/v1/models/nope").status_code == 404
    assert data["gpt"]["realism"] is None and data["gpt"]["longest_copy_chars"] is None


def test_a_runs_description_has_its_last_evals_realism_beside_its_copies(server, served):
    from authorgen.checkpoint import save_judgement

    judged = {"realism": {"auc": 0.81, "se": 0.03}, "longest_copy_chars": 27}
    save_judgement(served / "checkpoints" / "lstm", judged)  # as `authorgen eval` keeps it
    described = server.get("/v1/models/lstm").json()
    assert described["realism"] == 0.81 and described["longest_copy_chars"] == 27


@pytest.mark.parametrize("run", ["lstm", "gpt"])
def test_a_completion_has_every_field_and_the_seed_gives_generates_text(server, served, run):
    body = {"model": run, "prompt": "The old ", "length": 80, "n": 3, "seed": 11}
    response = server.post("/v1/completions", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "text_completion" and answer["model"] == run
    assert answer["id"].startswith("cmpl-") and isinstance(answer["created"], int)
    choices = answer["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert [c["seed"] for c in choices] == [11, 12, 13]
    for c in choices:
        assert len(c["text"]) == 80 and c["finish_reason"] == "length"
        copy = c["originality"]["copy"]
        assert c["text"][copy["start"] : copy["stop"]] == copy["text"] and copy["work"]
    usage = answer["usage"]
    assert usage["prompt_tokens"] == 8 and usage["completion_tokens"] == 240
    assert usage["total_tokens"] == 248
    # the same seed: the same text, again, and as `authorgen generate` writes it
    assert server.post("/v1/completions", body).json()["choices"] == choices
    cli = run_cli(
        "generate", run, "--prompt", "The old ", "--length", "80", "-n", "3", "--seed", "11",
        "--json", home=served,
    )  # fmt: skip
    assert [json.loads(line)["text"] for line in cli.stdout.splitlines()] == [
        c["text"] for c in choices
    ]


def test_a_stream_sends_the_same_text_in_pieces_then_done(server):
    body = {"model": "gpt", "prompt": "Her ", "length": 50, "n": 2, "seed": 3, "until": "sentence"}
    whole = server.post("/v1/completions", body).json()
    with server.post("/v1/completions", {**body, "stream": True}, stream=True) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        got = events(response)
    assert got[-1] == "[DONE]" and all(e != "[DONE]" for e in got[:-1])
    texts, ends = ["", ""], {}
    for event in got[:-1]:
        assert event["object"] == "text_completion" and event["id"].startswith("cmpl-")
        (choice,) = event["choices"]
        assert choice["index"] not in ends  # nothing after a choice's end
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            ends[choice["index"]] = choice
    assert texts == [c["text"] for c in whole["choices"]]
    for i, c in enumerate(whole["choices"]):
        assert ends[i]["finish_reason"] == c["finish_reason"] == "stop"
        assert ends[i]["stopped"] == "sentence" and ends[i]["originality"] == c["originality"]
        assert re.search(r"[.!?]$", c["text"])
    with server.post(
        "/v1/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
        stream=True,
    ) as response:
        got = events(response)
    assert got[-2]["choices"] == [] and got[-2]["usage"] == whole["usage"]


def test_stop_strings_end_a_sample_before_them_and_max_tokens_counts_tokens(server):
    body = {"model": "lstm", "prompt": "The ", "length": 400, "seed": 1, "temperature": 0.5}
    free = server.post("/v1/completions", body).json()["choices"][0]["text"]
    stop = free[free.index(" ", 20) : free.index(" ", 20) + 3]
    cut = server.post("/v1/completions", {**body, "stop": [stop, "zzz"]}).json()["choices"][0]
    assert cut["text"] == free[: free.index(stop)] and cut["finish_reason"] == "stop"
    short = server.post("/v1/completions", {"model": "lstm", "prompt": "The ", "seed": 1})
    answer = short.json()
    assert answer["usage"]["completion_tokens"] == 16  # OpenAI's default max_tokens
    assert (
        len(answer["choices"][0]["text"]) == 16
        and answer["choices"][0]["finish_reason"] == "length"
    )
    tokens = server.post("/v1/completions", {**body, "max_tokens": 7, "n": 2}).json()
    assert tokens["usage"]["completion_tokens"] == 14


def test_the_official_openai_client_speaks_to_it(server):
    """The `openai` package, as programs use it, against the real server."""
    client = openai.OpenAI(base_url=server.url + "v1", api_key="unused", max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["gpt", "lstm"]
    answer = client.completions.create(model="lstm", prompt="The old ", max_tokens=30, n=2, seed=4)
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(len(c.text) == 30 and c.finish_reason == "length" for c in answer.choices)
    assert answer.usage.completion_tokens == 60
    streamed = client.completions.create(
        model="lstm", prompt="The old ", max_tokens=30, n=2, seed=4, stream=True
    )
    texts = ["", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == [c.text for c in answer.choices]
    with pytest.raises(openai.NotFoundError, match="no run named 'nope'"):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="lstm", prompt="x", temperature=-1)


BIG = "a" * (64 * 1024 + 1)
ERRORS = [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    ({"prompt": "The"}, 400, "invalid_value"),
    ({"model": "nope", "prompt": "The"}, 404, "model_not_found"),
    ({"model": "../lstm", "prompt": "The"}, 404, "model_not_found"),
    ({"model": "checkpoints/lstm", "prompt": "The"}, 404, "model_not_found"),
    ({"model": "lstm", "temperature": -1}, 400, "invalid_value"),
    ({"model": "lstm", "temperature": "hot"}, 400, "invalid_value"),
    ({"model": "lstm", "top_p": 0}, 400, "invalid_value"),
    ({"model": "lstm", "n": 9}, 400, "invalid_value"),
    ({"model": "lstm", "n": 0}, 400, "invalid_value"),
    ({"model": "lstm", "max_tokens": True}, 400, "invalid_value"),
    ({"model": "lstm", "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value"),
    ({"model": "lstm", "stop": ""}, 200, None),  # no stop, as OpenAI's API reads it
    ({"model": "lstm", "until": "sentence"}, 400, "invalid_value"),
    ({"model": "lstm", "length": 10, "until": "chapter"}, 400, "invalid_value"),
    ({"model": "lstm", "seed": -2}, 400, "invalid_value"),
    ({"model": "lstm", "known_words": "yes"}, 400, "invalid_value"),
    ({"model": "lstm", "known_words": None, "max_tokens": 5}, 200, None),
    ({"model": "lstm", "ngrams": "yes"}, 400, "invalid_value"),
    ({"model": "lstm", "ngrams": False, "max_tokens": 5}, 200, None),
    ({"model": "lstm", "min_p": 2}, 400, "invalid_value"),
    ({"model": "lstm", "typical_p": "x"}, 400, "invalid_value"),
    ({"model": "lstm", "dry_allowed": 1.5}, 400, "invalid_value"),
    (
        {"model": "lstm", "min_p": 0.1, "typical_p": 0.9, "eta": 0.01, "dry": 1, "max_tokens": 5},
        200,
        None,
    ),
    ({"model": "lstm", "prompt": 42}, 400, "invalid_value"),
    ({"model": "lstm", "temprature": 0.5}, 400, "invalid_value"),
    ({"model": "lstm", "logprobs": 5}, 400, "invalid_value"),
    ({"model": "lstm", "logprobs": None, "echo": False, "user": "me"}, 200, None),
    ({"model": "lstm", "length": 1_000_000}, 400, "invalid_value"),
    ({"model": "lstm", "prompt": BIG}, 413, "too_large"),
    ({"model": "lstm", "prompt": "Ж"}, 400, "invalid_prompt"),  # a letter the model never saw
]


@pytest.mark.parametrize(("body", "status", "code"), ERRORS)
def test_bad_requests_get_an_error_object_and_the_right_status(server, body, status, code):
    response = server.post("/v1/completions", body)
    assert response.status_code == status, response.text
    if code is not None:
        error = response.json()["error"]
        assert error["code"] == code and error["type"] and error["message"]
        assert "\n" not in error["message"] and "Traceback" not in error["message"]


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"top_p": 0}, "top_p"),
        ({"max_copy": 0}, "max_copy"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"no_repeat_ngram": -1}, "no_repeat_ngram"),
        ({"repetition_window": 0}, "repetition_window"),
    ],
)
def test_errors_name_the_apis_fields_not_the_command_lines_options(server, body, name):
    response = server.post("/v1/completions", {"model": "lstm", "prompt": "The", **body})
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid_value"
    assert name in error["message"] and "--" not in error["message"], error["message"]


def test_known_words_is_a_field_of_the_api(server):
    body = {"model": "lstm", "prompt": "The old ", "length": 300, "n": 2, "seed": 3}
    body["temperature"] = 1.6  # hot: the model makes words up
    free = server.post("/v1/completions", {**body, "known_words": False}).json()["choices"]
    ruled = server.post("/v1/completions", {**body, "known_words": True}).json()["choices"]
    assert sum(c["originality"]["invented"] for c in free) > 0
    for c in ruled:
        assert c["originality"]["invented"] == 0 and c["originality"]["words"] > 20


def test_ngrams_is_a_field_of_the_api(server):
    body = {"model": "lstm", "prompt": "The old ", "length": 200, "seed": 3}
    mixed = server.post("/v1/completions", body).json()["choices"][0]["text"]
    alone = server.post("/v1/completions", {**body, "ngrams": False}).json()["choices"][0]["text"]
    assert (
        mixed
        == server.post("/v1/completions", {**body, "ngrams": True}).json()["choices"][0]["text"]
    )
    assert mixed != alone


def test_the_api_messages_name_the_apis_fields(server):
    message = server.post("/v1/completions", {"model": "lstm", "top_k": 0}).json()["error"]
    assert "top_k" in message["message"] and "--" not in message["message"]


def test_wrong_methods_paths_and_huge_bodies_get_error_objects(server):
    for response, status in [
        (server.get("/v1/completions"), 405),
        (server.get("/v2/nothing"), 404),
        (server.post("/v1/completions", b"x" * (300 * 1024)), 413),
    ]:
        assert response.status_code == status
        assert response.json()["error"]["message"]


def test_a_client_that_goes_away_mid_stream_stops_its_generation(server):
    body = {"model": "gpt", "prompt": "The ", "length": 100_000, "seed": 1}
    response, _lines = open_stream(server, body)
    assert server.get("/health").json()["decoding"] == 1
    response.close()  # the connection goes
    assert server.wait_idle()["decoding"] == 0


def test_a_client_that_goes_away_before_its_answer_stops_its_generation(server):
    body = json.dumps({"model": "gpt", "prompt": "The ", "length": 100_000, "seed": 1}).encode()
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(
            f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 30
        while server.get("/health").json()["decoding"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.get("/health").json()["decoding"] == 1  # it is being written
    assert server.wait_idle()["decoding"] == 0  # and no longer once the caller left


def test_requests_that_arrive_together_are_decoded_together(server):
    body = {"model": "lstm", "prompt": "The ", "length": 100_000}
    streams = [open_stream(server, {**body, "seed": s}) for s in (1, 2)]
    health = server.get("/health").json()
    assert health["decoding"] == 2 and "lstm" in health["loaded"]
    for response, _lines in streams:
        response.close()
    assert server.wait_idle()["decoding"] == 0


def test_a_token_is_needed_for_the_api_but_not_the_page(served):
    with Server(served, "--token", "s3cret") as server:
        assert server.get("/v1/models").status_code == 401
        wrong = server.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert server.post("/v1/completions", {"model": "lstm"}).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert server.get("/v1/models", headers=right).status_code == 200
        ok = server.post("/v1/completions", {"model": "lstm", "prompt": "A"}, headers=right)
        assert ok.status_code == 200
        assert server.get("/").status_code == 200
        code, err = server.stop(signal.SIGINT)  # Ctrl-C
        assert code == 0 and "Traceback" not in err


def test_a_full_server_answers_429_with_retry_after(served):
    with Server(served, "lstm", "--max-batch", "1", "--max-waiting", "0") as server:
        long = {"model": "lstm", "prompt": "The ", "length": 100_000}
        first, _lines = open_stream(server, long)
        busy = server.post("/v1/completions", {"model": "lstm", "prompt": "A"})
        assert busy.status_code == 429 and busy.headers["Retry-After"]
        assert busy.json()["error"]["type"] == "rate_limit_error"
        assert server.get("/v1/models").json()["data"][0]["id"] == "lstm"  # only the one named
        first.close()
        server.wait_idle()
        assert server.post("/v1/completions", {"model": "lstm", "prompt": "A"}).status_code == 200
        assert server.stop()[0] == 0


def test_models_stay_answering_while_a_long_generation_runs(server):
    body = {"model": "gpt", "prompt": "The ", "length": 100_000}
    response, _lines = open_stream(server, body)
    results = []
    thread = threading.Thread(target=lambda: results.append(server.get("/v1/models")))
    thread.start()
    thread.join(timeout=30)
    assert results and results[0].status_code == 200
    response.close()
    server.wait_idle()


def test_serve_refuses_a_taken_port_and_an_unknown_run_in_one_line(served):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = str(taken.getsockname()[1])
    try:
        result = run_cli("serve", "--port", port, home=served)
    finally:
        taken.close()
    assert result.returncode == 2 and "is in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    unknown = run_cli("serve", "nope", home=served)
    assert unknown.returncode == 4 and "no run named 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr + result.stderr


def test_a_run_that_cannot_load_is_a_500_and_the_others_go_on(served, tmp_path):
    shutil.copytree(served / "checkpoints" / "lstm", tmp_path / "checkpoints" / "lstm")
    shutil.copytree(served / "checkpoints" / "lstm", tmp_path / "checkpoints" / "broken")
    (tmp_path / "checkpoints" / "broken" / "model.safetensors").write_bytes(b"cut")
    with Server(tmp_path) as server:
        broken = server.post("/v1/completions", {"model": "broken", "prompt": "The "})
        assert broken.status_code == 500
        error = broken.json()["error"]
        assert error["code"] == "run_unavailable" and "train the run again" in error["message"]
        assert server.post("/v1/completions", {"model": "lstm", "prompt": "A"}).status_code == 200
        assert server.stop()[0] == 0


def test_stopping_ends_the_requests_in_flight_with_an_error_and_exits_0(served):
    with Server(served) as server:
        long = {"model": "lstm", "prompt": "The ", "length": 100_000}
        _response, lines = open_stream(server, long)
        answers = []
        waiting = threading.Thread(
            target=lambda: answers.append(server.post("/v1/completions", {**long, "model": "gpt"}))
        )
        waiting.start()
        deadline = time.monotonic() + 30
        while server.get("/health").json()["decoding"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        code, err = server.stop()
        waiting.join(timeout=30)
        rest = [line for line in lines if line.startswith("data: ")]
    assert code == 0 and "Traceback" not in err and "Cancel" not in err
    assert answers[0].status_code == 503
    assert answers[0].json()["error"]["code"] == "server_stopping"
    assert json.loads(rest[-1][len("data: ") :])["error"]["code"] == "server_stopping"


def test_a_run_trained_again_under_its_name_is_served_anew(served, tmp_path):
    runs = tmp_path / "checkpoints"
    shutil.copytree(served / "checkpoints" / "lstm", runs / "mine")
    body = {"model": "mine", "prompt": "The old ", "length": 40, "seed": 3}
    with Server(tmp_path) as server:
        before = server.post("/v1/completions", body).json()["choices"][0]["text"]
        shutil.rmtree(runs / "mine")  # as `train --force` replaces a run: another model now
        shutil.copytree(served / "checkpoints" / "gpt", runs / "mine")
        after = server.post("/v1/completions", body).json()["choices"][0]["text"]
        assert server.get("/v1/models/mine").json()["model"] == "transformer 2x32"
        assert server.stop()[0] == 0
    with Server(served) as server:
        assert (
            before
            == server.post("/v1/completions", {**body, "model": "lstm"}).json()["choices"][0][
                "text"
            ]
        )
        assert (
            after
            == server.post("/v1/completions", {**body, "model": "gpt"}).json()["choices"][0]["text"]
        )
        assert server.stop()[0] == 0
