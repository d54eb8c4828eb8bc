"""The page of `authorgen serve`, in a real browser: Debian's Chromium driven by Playwright.

Chromium is found as `chromium` on the PATH or at $AUTHORGEN_CHROMIUM; `.ci/run` installs it
(`apt-get install chromium`). Without it these tests fail and say how to get it.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from helpers import served_text
from serving import Server

playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
]
PROMPT = 'The <script>alert("script")</script><img src=x onerror="alert(1)"> old '


@pytest.fixture(scope="module")
def browser():
    path = os.environ.get("AUTHORGEN_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "the page tests need Chromium: apt-get install chromium (or set AUTHORGEN_CHROMIUM)"
        )
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(served):
    with Server(served) as server:
        yield server
        assert server.stop()[0] == 0


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server.url)
    playwright.expect(page.locator("#run option")).to_have_count(2)
    yield page
    context.close()


def _settings(page, **values) -> None:
    for name, value in values.items():
        page.fill(f"#{name}", str(value))


def test_write_continue_see_it_stream_and_accept_a_suggestion(page, server, tmp_path):
    expect = playwright.expect
    page.select_option("#run", "lstm")
    expect(page.locator("#run-info")).to_contain_text("lstm 1x64 · char")
    page.uncheck("#until")
    _settings(page, n=2, seed=5, length=60, temperature=0.8)
    page.fill("#text", PROMPT)
    page.press("#text", "Control+Enter")
    accept = page.locator(".card button:not([disabled])")
    expect(accept).to_have_count(2, timeout=30_000)
    expect(page.locator("#status")).to_contain_text("Done")
    answer = server.post(
        "/v1/completions",
        {"model": "lstm", "prompt": PROMPT, "n": 2, "seed": 5, "length": 60, "temperature": 0.8},
    ).json()
    cards = page.locator(".card")
    for i, choice in enumerate(answer["choices"]):
        card = cards.nth(i)
        assert card.locator(".written").inner_text() == choice["text"]  # what the API writes
        copy = choice["originality"]["copy"]
        mark = card.locator("mark")
        assert mark.inner_text() == copy["text"]  # the longest copy, marked where it is
        assert len(copy["text"]) >= 8 and copy["text"] in served_text()  # from the corpus
        assert "training text" in mark.get_attribute("title")
        assert "longest copy" in card.locator(".meta").inner_text()
    # the prompt is shown as text: its tags are characters on the page, nothing ran
    assert "</script><img src=x" in cards.nth(0).locator(".context").inner_text()
    assert page.locator("#suggestions img, #suggestions script").count() == 0
    assert page.dialogs == []
    page.screenshot(path=str(tmp_path / "page.png"))
    accept.nth(1).click()
    expect(page.locator(".card")).to_have_count(0)
    assert page.input_value("#text") == PROMPT + answer["choices"][1]["text"]
    page.reload()  # the text is kept in the browser
    assert page.input_value("#text") == PROMPT + answer["choices"][1]["text"]


def test_the_authors_words_box_sends_the_rule_and_cards_name_invented_words(page, server):
    expect = playwright.expect
    page.select_option("#run", "lstm")
    page.uncheck("#until")
    _settings(page, n=2, seed=3, length=300, temperature=1.6)  # hot: words are made up
    page.fill("#text", "The old ")
    body = {"model": "lstm", "prompt": "The old ", "n": 2, "seed": 3, "length": 300}
    body["temperature"] = 1.6
    for rule in (False, True):
        page.set_checked("#known_words", rule)
        page.focus("#text")
        page.keyboard.press("End")
        with page.expect_request("**/v1/completions") as sent:
            page.keyboard.press("Control+Enter")
        # checked: the server's default (on, where the run has an index); unchecked: off
        assert json.loads(sent.value.post_data).get("known_words") is (None if rule else False)
        expect(page.locator(".card button:not([disabled])")).to_have_count(2, timeout=30_000)
        choices = server.post("/v1/completions", {**body, "known_words": rule}).json()["choices"]
        for i, choice in enumerate(choices):
            assert page.locator(".card .written").nth(i).inner_text() == choice["text"]
            meta = page.locator(".card .meta").nth(i).inner_text()
            assert ("invented word" in meta) == (choice["originality"]["invented"] > 0)
        invented = sum(c["originality"]["invented"] for c in choices)
        assert (invented > 0) is not rule


def test_the_sampler_boxes_send_what_is_set_and_leave_the_rest_to_the_server(page, server):
    expect = playwright.expect
    page.select_option("#run", "lstm")
    page.uncheck("#until")
    _settings(page, n=1, seed=2, length=40)
    names = ("temperature", "top_p", "min_p", "dry")
    for values in ({}, {"temperature": 0.9, "top_p": 0.95, "min_p": 0.1, "dry": 1.5}):
        for name in names:
            page.fill(f"#{name}", str(values.get(name, "")))
        page.fill("#text", "The old ")
        page.focus("#text")
        page.keyboard.press("End")
        with page.expect_request("**/v1/completions") as sent:
            page.keyboard.press("Control+Enter")
        body = json.loads(sent.value.post_data)
        assert {k: body.get(k) for k in names} == {k: values.get(k) for k in names}
        expect(page.locator(".card button:not([disabled])")).to_have_count(1, timeout=30_000)
        asked = {"model": "lstm", "prompt": "The old ", "n": 1, "seed": 2, "length": 40, **values}
        choice = server.post("/v1/completions", asked).json()["choices"][0]
        assert page.locator(".card .written").nth(0).inner_text() == choice["text"]


def test_a_suggestion_continues_the_text_before_the_cursor_and_goes_in_there(page, server):
    expect = playwright.expect
    page.select_option("#run", "lstm")
    _settings(page, n=1, length=20, seed=2)
    page.uncheck("#until")
    page.fill("#text", "The old house. Her quiet garden.")
    page.press("#text", "End")
    for _ in range(len(" Her quiet garden.")):
        page.press("#text", "ArrowLeft")  # the cursor after "The old house."
    page.press("#text", "Control+Enter")
    expect(page.locator(".card button:not([disabled])")).to_have_count(1, timeout=30_000)
    body = {"model": "lstm", "prompt": "The old house.", "length": 20, "seed": 2, "top_p": 1}
    text = server.post("/v1/completions", body).json()["choices"][0]["text"]
    page.click(".card button")
    assert page.input_value("#text") == "The old house." + text + " Her quiet garden."


def test_stop_ends_a_long_generation_on_the_server_too(page, server):
    expect = playwright.expect
    page.select_option("#run", "gpt")
    _settings(page, n=1, length=100000)
    page.uncheck("#until")
    page.fill("#text", "Her quiet ")
    page.click("#continue")
    written = page.locator(".card .written")
    expect(written).not_to_have_text("", timeout=30_000)  # text arrives while it is written
    expect(page.locator("#stop")).to_be_enabled()
    assert page.locator(".card button:not([disabled])").count() == 0  # not finished yet
    page.click("#stop")
    expect(page.locator("#status")).to_have_text("Stopped.")
    assert server.wait_idle()["decoding"] == 0
    expect(page.locator("#continue")).to_be_enabled()


def test_escape_stops_and_a_token_is_asked_for_when_the_server_has_one(browser, served):
    with Server(served, "--token", "s3cret") as server:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url)
        token = page.locator("#token")
        playwright.expect(token).to_be_visible()  # the API answered 401
        token.fill("s3cret")
        token.press("Enter")  # commits the field: a change event, and the runs load
        playwright.expect(page.locator("#run option")).to_have_count(2)
        _settings(page, n=1, length=100000)
        page.fill("#text", "The ")
        page.press("#text", "Control+Enter")
        playwright.expect(page.locator(".card .written")).not_to_have_text("", timeout=30_000)
        page.press("#text", "Escape")
        playwright.expect(page.locator("#status")).to_have_text("Stopped.")
        assert server.wait_idle(headers={"Authorization": "Bearer s3cret"})["decoding"] == 0
        context.close()
        assert server.stop()[0] == 0


class _OtherSite:
    """A page of another origin, as any site the user visits: a second server on 127.0.0.1."""

    def __enter__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Page(BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<!doctype html><title>another site</title><p>hello</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# what the other site's script tries: a completion with CORS, one without (no-cors), the runs
ATTEMPTS = """async (url) => {
  const body = JSON.stringify({model: "lstm", prompt: "The ", length: 20, seed: 1});
  const out = {};
  try {
    const r = await fetch(url + "v1/completions",
      {method: "POST", headers: {"Content-Type": "application/json"}, body});
    out.cors = await r.text();
  } catch (e) { out.cors = "blocked " + e.name; }
  try {
    const r = await fetch(url + "v1/completions", {method: "POST", mode: "no-cors", body});
    out.nocors = {type: r.type, status: r.status, text: await r.text()};
  } catch (e) { out.nocors = "blocked " + e.name; }
  try { out.models = await (await fetch(url + "v1/models")).text(); }
  catch (e) { out.models = "blocked " + e.name; }
  return out;
}"""


def test_a_page_of_another_site_cannot_use_the_server_unless_allowed(browser, served):
    with _OtherSite() as site:
        context = browser.new_context()
        other = context.new_page()
        other.goto(site.url)
        with Server(served) as server:
            tried = other.evaluate(ATTEMPTS, server.url)
            # it could read nothing, and nothing was computed for it: no run was even loaded
            assert tried["cors"] == "blocked TypeError" and tried["models"] == "blocked TypeError"
            assert tried["nocors"] == {"type": "opaque", "status": 0, "text": ""}
            assert server.get("/health").json()["loaded"] == []
            assert server.stop()[0] == 0
        with Server(served, "--allow-origin", site.url) as server:  # the user allows that site
            tried = other.evaluate(ATTEMPTS, server.url)
            assert json.loads(tried["cors"])["choices"][0]["text"]
            assert json.loads(tried["models"])["data"]
            assert server.stop()[0] == 0
        context.close()


def test_the_page_names_the_base_a_run_was_fine_tuned_from(browser, served, tmp_path):
    from authorgen.config import TrainOptions
    from authorgen.train import train_corpus
    from helpers import run_cli

    home = tmp_path / "home"
    shutil.copytree(served, home)
    text = tmp_path / "more.txt"
    text.write_text(served_text() * 2, encoding="utf-8")
    assert run_cli("fetch", str(text), "--name", "more", "-q", home=home).returncode == 0
    train_corpus(
        home / "corpora", home / "checkpoints", "more", TrainOptions(steps=0, device="cpu"),
        run_name="tuned", base="lstm",
    )  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    with Server(home) as server:
        page.goto(server.url)
        playwright.expect(page.locator("#run option")).to_have_count(3)
        page.select_option("#run", "tuned")
        playwright.expect(page.locator("#run-info")).to_contain_text("more · lstm")
        playwright.expect(page.locator("#run-info")).to_contain_text("from lstm")
        page.select_option("#run", "lstm")
        playwright.expect(page.locator("#run-info")).not_to_contain_text("from")
    context.close()


def test_the_page_names_a_pretrained_base_and_its_licence(browser, served, tmp_path):
    from helpers import run_cli
    from tiny_hf import hf_folder

    home, model = tmp_path / "home", tmp_path / "tiny-llama"
    shutil.copytree(served, home)
    model.mkdir()
    hf_folder("llama", model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n", encoding="utf-8")
    text = tmp_path / "more.txt"
    text.write_text(served_text() * 2, encoding="utf-8")
    assert run_cli("fetch", str(text), "--name", "more", "-q", home=home).returncode == 0
    made = run_cli("train", "more", "--from", str(model), "--steps", "0", "--name", "smol",
                   home=home)  # fmt: skip
    assert made.returncode == 0, made.stderr
    context = browser.new_context()
    page = context.new_page()
    with Server(home) as server:
        page.goto(server.url)
        page.select_option("#run", "smol")
        info = page.locator("#run-info")
        playwright.expect(info).to_contain_text("more · transformer 2x64 · pretrained")
        playwright.expect(info).to_contain_text("from tiny-llama (apache-2.0)")
    context.close()
