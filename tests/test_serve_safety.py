"""`authorgen serve` against hostile web pages: a real server in a fresh process, requests as a
browser on another site (or a DNS-rebinding one) would send them."""

from __future__ import annotations

import re

import requests

from helpers import run_cli
from serving import Server

BODY = {"model": "lstm", "prompt": "The ", "length": 20, "seed": 1}


def _port(server: Server) -> str:
    return server.url.rstrip("/").rsplit(":", 1)[1]


def test_foreign_names_pages_and_bodies_are_refused_before_any_work(served):
    with Server(served) as server:
        port = _port(server)
        refused = [
            # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1
            (server.post("/v1/completions", BODY, headers={"Host": f"evil.example:{port}"}),
             403, "forbidden_host"),
            (server.get("/v1/models", headers={"Host": f"evil.example:{port}"}),
             403, "forbidden_host"),
            # a page of another site, with CORS or without (no-cors still sends its Origin)
            (server.post("/v1/completions", BODY, headers={"Origin": "http://evil.example"}),
             403, "forbidden_origin"),
            # a form or a no-cors fetch can send text/plain without asking first
            (server.post("/v1/completions", b'{"model": "lstm", "prompt": "The "}',
                         headers={"Content-Type": "text/plain"}),
             415, "unsupported_media_type"),
        ]  # fmt: skip
        for response, status, code in refused:
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
            assert "access-control-allow-origin" not in response.headers
        assert server.get("/health").json()["loaded"] == []  # no run was even loaded
        # its own names, and its own page's origin, are answered
        local = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
        assert server.get("/health", headers=local).status_code == 200
        own = {"Origin": server.url.rstrip("/")}
        assert server.post("/v1/completions", BODY, headers=own).status_code == 200
        assert server.get("/health").json()["loaded"] == ["lstm"]
        assert server.stop()[0] == 0


def test_only_the_origins_allowed_get_cors(served):
    allowed = "http://localhost:3000"
    with Server(served, "--allow-origin", allowed) as server:

        def preflight(origin: str) -> requests.Response:
            return requests.options(
                server.url + "v1/completions",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type, authorization",
                },
                timeout=60,
            )

        ok = preflight(allowed)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "content-type" in ok.headers["access-control-allow-headers"].lower()
        other = preflight("http://evil.example")
        assert other.status_code == 403
        assert not any(h.startswith("access-control-") for h in other.headers)
        answer = server.post("/v1/completions", BODY, headers={"Origin": allowed})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == allowed
        assert server.stop()[0] == 0
    bad = run_cli("serve", "--allow-origin", "localhost:3000", home=served)
    assert bad.returncode == 2 and "--allow-origin" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_any_token_header_is_a_401_never_a_failure(served):
    with Server(served, env={"AUTHORGEN_TOKEN": "s3cret"}) as server:
        for given in ["Bearer żółw".encode(), b"Bearer \xff\xfe", b"Basic s3cret", b"Bearer"]:
            response = server.get("/v1/models", headers={"Authorization": given})
            assert response.status_code == 401, (given, response.text)
            assert response.json()["error"]["code"] == "invalid_api_key"
        right = server.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def test_beyond_loopback_a_token_or_no_token_is_asked_for(served):
    refused = run_cli("serve", "--host", "0.0.0.0", "--port", "0", home=served)
    assert refused.returncode == 2 and "AUTHORGEN_TOKEN" in refused.stderr
    assert "--no-token" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    with Server(served, "--host", "0.0.0.0", "--no-token") as server:
        port = _port(server)
        # off loopback a name cannot be known in advance: the token guards it, not the Host
        assert server.get("/health", headers={"Host": f"example.org:{port}"}).status_code == 200
        code, err = server.stop()
    assert code == 0 and "warning: serving on 0.0.0.0 without a token" in err
    with Server(served, "--host", "0.0.0.0", env={"AUTHORGEN_TOKEN": "s3cret"}) as server:
        assert server.get("/health").status_code == 401
        code, err = server.stop()
    assert code == 0 and "warning" not in err


def test_a_seed_the_generator_cannot_take_is_a_400(served):
    huge = [2**63, 2**70, -1]
    for seed in huge:
        result = run_cli("generate", "lstm", "--seed", str(seed), "--length", "5", home=served)
        assert result.returncode == 2 and "--seed" in result.stderr
        assert "Traceback" not in result.stderr
    with Server(served) as server:
        for seed in huge:
            response = server.post("/v1/completions", {**BODY, "seed": seed})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "invalid_value" and "seed" in error["message"]
        top = server.post("/v1/completions", {**BODY, "seed": 2**63 - 1, "n": 2})
        assert top.status_code == 200, top.text
        assert server.stop()[0] == 0


def test_a_failure_tells_the_client_an_id_and_the_log_the_rest(served, tmp_path):
    import shutil

    home = tmp_path / "a-recognisable-folder-of-the-server-0123456789"
    runs = home / "checkpoints"
    shutil.copytree(served / "checkpoints" / "lstm", runs / "broken")
    (runs / "broken" / "model.safetensors").write_bytes(b"cut")
    with Server(home) as server:
        response = server.post("/v1/completions", {**BODY, "model": "broken"})
        assert response.status_code == 500
        message = response.json()["error"]["message"]
        assert "recognisable" not in message and "safetensors" not in message and "/" not in message
        request_id = re.search(r"request (\w+)", message).group(1)
        code, err = server.stop()
    assert code == 0
    logged = [line for line in err.splitlines() if request_id in line]
    assert logged and "a-recognisable-folder" in logged[0]


def test_what_one_request_may_ask_is_capped_and_health_says_so(served):
    with Server(served) as server:
        limits = server.get("/health").json()["limits"]
        work, stop = limits["max_work"], limits["max_stop_chars"]
        assert limits["max_n"] * limits["max_length"] > work  # the cap bites below the others
        assert limits["max_seconds"] is None and limits["max_batch"] == 32
        too_much = [
            {**BODY, "n": 8, "length": work // 8 + 1},
            {"model": "lstm", "prompt": "The ", "n": 3, "max_tokens": work // 3 + 1},
            {**BODY, "n": 3, "length": work // 6 + 1, "until": "sentence"},  # until may double it
            {**BODY, "stop": ["x" * (stop + 1)]},
        ]
        for body in too_much:
            response = server.post("/v1/completions", body)
            assert response.status_code == 400, body
            error = response.json()["error"]
            assert error["code"] == "invalid_value"
            assert f"{work:,}" in error["message"] or f"{stop}" in error["message"]
        fits = {**BODY, "n": 2, "length": 10, "stop": ["x" * stop]}
        assert server.post("/v1/completions", fits).status_code == 200
        assert server.get("/health").json()["loaded"] == ["lstm"]
        assert server.stop()[0] == 0


def test_a_request_past_its_deadline_ends_with_time_as_its_reason(served):
    with Server(served, "--max-seconds", "1") as server:
        assert server.get("/health").json()["limits"]["max_seconds"] == 1.0
        # 100,000 characters take a char model many seconds: one second ends them
        long = {**BODY, "length": 100_000, "n": 2}
        answer = server.post("/v1/completions", long).json()
        for choice in answer["choices"]:
            assert choice["finish_reason"] == "time" and choice["stopped"] == "time"
            assert 0 < len(choice["text"]) < 100_000
        short = server.post("/v1/completions", {**BODY, "length": 5}).json()["choices"][0]
        assert short["finish_reason"] == "length"
        assert server.stop()[0] == 0


def test_one_requests_slow_reports_hold_up_no_other_request(served, monkeypatch):
    import asyncio
    import threading

    from authorgen.config import SampleConfig
    from authorgen.serve import engine as engine_module

    release, real = threading.Event(), engine_module._report

    def held(ticket, item):  # the first request's originality reports take as long as we say
        if ticket.prompt == "The old ":
            release.wait(60)
        real(ticket, item)

    monkeypatch.setattr(engine_module, "_report", held)
    engine = engine_module.Engine(served / "checkpoints", device="cpu")
    engine.start()

    async def answer(ticket) -> list:
        items: list = []
        while not items or items[-1][0] not in ("end", "error"):
            items += await ticket.queue.get()
        return items

    async def both():
        config = SampleConfig(length=20, seed=1)
        slow = engine.submit("lstm", "The old ", config, [1])
        fast = engine.submit("lstm", "The ", config, [1])
        fast_items = await asyncio.wait_for(answer(fast), 30)
        held_back = not release.is_set()
        release.set()
        return fast_items, held_back, await asyncio.wait_for(answer(slow), 30)

    try:
        fast_items, held_back, slow_items = asyncio.run(both())
    finally:
        release.set()
        engine.stop()
    assert held_back  # the second request was answered while the first's report was held
    for items in (fast_items, slow_items):
        samples = [item[2] for item in items if item[0] == "sample"]
        assert len(samples) == 1 and samples[0].originality is not None


def test_a_request_decodes_a_fair_share_of_the_batch_beside_others(served, monkeypatch):
    """Two requests, batch 4: the one asking 8 samples decodes at most 2 at a time while the
    other is there, all 8 after, each sample in its place with its seed's text."""
    import asyncio

    from authorgen.config import SampleConfig
    from authorgen.sample import Decoding
    from authorgen.serve.engine import Engine

    rows_seen, step = [], Decoding.step

    def counted(self):
        rows_seen.append([job.states[i].seed for job, i in self.rows])  # each row's seed
        return step(self)

    monkeypatch.setattr(Decoding, "step", counted)

    async def answer(ticket) -> dict:
        items: list = []
        while not items or items[-1][0] not in ("end", "error"):
            items += await asyncio.wait_for(ticket.queue.get(), 60)
        return {i[1]: i[2].text for i in items if i[0] == "sample"}

    async def serve(requests) -> list:
        engine = Engine(served / "checkpoints", device="cpu", max_batch=4)
        tickets = [engine.submit("lstm", p, c, s) for p, c, s in requests]  # before it starts
        engine.start()
        try:
            return [await answer(t) for t in tickets]
        finally:
            engine.stop()

    hog = ("The old ", SampleConfig(length=20, n=8, seed=10), list(range(10, 18)))
    other = ("The ", SampleConfig(length=200, seed=1), [1])
    together = asyncio.run(serve([hog, other]))
    beside = [rows for rows in rows_seen if 1 in rows]  # steps the other request was in
    rows_seen.clear()
    alone = asyncio.run(serve([hog]))
    assert sorted(together[0]) == list(range(8)) and together[0] == alone[0]
    assert len(together[1]) == 1
    assert beside and max(len(rows) - 1 for rows in beside) == 2  # the hog's share: 4 // 2
    assert {s for rows in beside for s in rows} > {1, 10, 11, 12, 13}  # in turns
    assert max(len(rows) for rows in rows_seen) == 8  # alone, all at once (as before)


def test_one_client_may_have_only_its_share_of_the_engine_in_flight(served):
    from serving import open_stream

    with Server(served, "--max-batch", "2", "--max-waiting", "2") as server:
        assert server.get("/health").json()["limits"]["max_client_samples"] == 2
        body = {"model": "lstm", "prompt": "The ", "length": 5}
        response, _lines = open_stream(server, {**body, "n": 2, "length": 20_000})
        refused = server.post("/v1/completions", body)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "client_busy" and "max_client_samples" in error["message"]
        response.close()  # the client lets go: its samples count no more
        server.wait_idle()
        assert server.post("/v1/completions", body).status_code == 200
        assert server.post("/v1/completions", {**body, "n": 2}).status_code == 200
