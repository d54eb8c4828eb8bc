"""`authorgen serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from authorgen.cli._common import EPILOG, CheckpointsDir, Device, Quiet, Threads, _folder, app


@app.command(epilog=EPILOG)
def serve(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN",
            help="Runs to serve (names under checkpoints/ or run folders); default: every run, "
            "including runs trained while it serves.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback needs care.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="AUTHORGEN_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on every API call; better from "
            "$AUTHORGEN_TOKEN (a command line shows in ps).",
            show_default=False,
        ),
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option(
            "--no-token", help="Serve beyond loopback without a token (anyone may use it)."
        ),
    ] = False,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Let pages of this origin (e.g. http://localhost:3000) call the API from a "
            "browser; repeatable. The server's own page needs none.",
            show_default=False,
        ),
    ] = None,
    device: Device = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="Transformer weights on the CPU: auto (int8 where this machine measures "
            "faster with them), fp32 or int8; other runs use fp32."
        ),
    ] = "auto",
    threads: Threads = None,
    max_loaded: Annotated[
        int, typer.Option(min=1, help="Runs kept in memory (least recently used out).")
    ] = 2,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Samples of one run decoded together at most.")
    ] = 32,
    max_waiting: Annotated[
        int,
        typer.Option(min=0, help="Samples that may wait for a place; more are answered 429."),
    ] = 64,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="End a request's samples after this many seconds, waiting included "
            '(finish_reason "time"); default: no limit.',
            show_default=False,
        ),
    ] = None,
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Serve a page to write in with your runs, and an OpenAI-style API (/v1/completions,
    /v1/models) for programs. Prints the address on stderr; Ctrl-C or SIGTERM stops it (exit 0).
    """
    from authorgen.cli.console import make_console
    from authorgen.config import GENERATION_PRECISIONS

    if precision not in GENERATION_PRECISIONS:
        raise typer.BadParameter(
            f"must be one of {', '.join(GENERATION_PRECISIONS)} (got {precision!r})",
            param_hint="--precision",
        )
    console = make_console(quiet)
    from authorgen.checkpoint import list_runs, read_config, resolve_run
    from authorgen.errors import UsageError
    from authorgen.serve.server import address, listen, loopback_names, origins

    folder = _folder(checkpoints_dir, "checkpoints")
    named = [resolve_run(run, folder) for run in runs or ()]
    for path in named:
        read_config(path)  # a damaged run is said now, not at its first request
    if not named and not list_runs(folder)[0]:
        console.print(f"note: no runs in {folder} yet; runs trained later appear without a restart")
    allowed = origins(allow_origin or [])
    sock = listen(host, port)
    names = loopback_names(sock, host)  # the address bound decides, not the name given
    if names is None and not token:
        if not no_token:
            sock.close()
            raise UsageError(
                f"serving on {host} without a token lets anyone who can reach this machine use "
                "your runs; set AUTHORGEN_TOKEN, or pass --no-token if that is what you want"
            )
        console.print(
            f"warning: serving on {host} without a token: anyone who can reach it can use it"
        )

    from authorgen.devices import use_threads
    from authorgen.serve.api import create_app
    from authorgen.serve.engine import Engine

    use_threads(threads)
    engine = Engine(
        folder, named or None, device, max_loaded, max_batch, max_waiting, precision, max_seconds
    )
    app_ = create_app(engine, token or None, names, allowed)
    from authorgen.serve.server import serve as run_server

    run_server(
        app_,
        sock,
        ready=lambda: console.print(f"serving at {address(sock)} (Ctrl-C stops)"),
        stopping=engine.close,
    )
