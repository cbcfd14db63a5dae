"""ollama-locust: how many concurrent users can your Ollama server carry?

One namespace: ``ollama_locust.scenarios`` (the load model), ``ollama_locust.reports`` (the
post-processor), ``ollama_locust.simulator`` (the Ollama-compatible server), ``ollama_locust.contract``
(the request record and run-folder names both sides share) and the ``ollama-locust`` command.

Installed, setuptools' ``package-dir`` puts the repository's top-level ``scenarios/``, ``reports/`` and
``simulator/`` folders inside this package. Imported from a checkout instead (``locust -f locustfile.py``
puts the checkout first on ``sys.path``, whatever is installed), the package's search path also holds
the checkout's root, so the same names resolve to the same files there.
"""

import os as _os

__version__ = "0.1.0"

_here = _os.path.dirname(_os.path.abspath(__file__))
_checkout = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "scenarios")) and _os.path.isfile(
        _os.path.join(_checkout, "scenarios", "__init__.py")):
    __path__.append(_checkout)  # noqa: F821 (a package's own __path__)
