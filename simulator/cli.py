"""``ollama-locust sim`` / ``python -m ollama_locust.simulator``: parse, validate, serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import signal
import sys

from ollama_locust import contract
from ollama_locust.simulator.config import ConfigError, config_from_args
from ollama_locust.simulator.server import listening_line, new_event_loop, serve


def _fail(message: str, code: int = contract.EXIT_BAD_INPUT) -> int:
    print(f"ollama-locust sim: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = config_from_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error already printed (2)
        return int(e.code or 0)
    except ConfigError as e:
        return _fail(str(e))
    if cfg.engine == "llama-cpp":  # llama-cpp-python installed, and llama.cpp can load the file?
        from ollama_locust.simulator.llama_runner import probe_model
        try:
            probe_model(cfg.model_file)
        except ConfigError as e:
            return _fail(str(e))
    if cfg.truth_log:
        try:
            open(cfg.truth_log, "a").close()
        except OSError as e:
            return _fail(f"cannot write --truth-log {cfg.truth_log} ({e.strerror})")

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread / Windows
            pass

    def ready(url: str) -> None:
        print(listening_line(cfg, url), flush=True)

    try:
        loop.run_until_complete(serve(cfg, stop, ready))
    except OSError as e:
        why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        return _fail(f"cannot listen on {cfg.host}:{cfg.port} ({why}); pick another --port or use --port 0", 1)
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
