"""Secrets kept out of everything stored: the API key masked in error texts, credentials kept out of URLs.

* :func:`register` — a client or the preflight that sends a key registers it (per process: workers
  register their own); :func:`mask` replaces every registered key in a text with ``MASK``. The one
  place a request's error text is stored (``request_report.complete``) and the reply-text shortener
  (``clients.base._one_line``, before it cuts, so no prefix of a key survives) call it.
* :func:`redact_url` — a URL without its ``user:password@``; :func:`url_credentials_error` — the one
  line that refuses a ``--host`` carrying them (they would go to every file that names the target:
  run.json's command, Locust's HTML, results.*). Put a key in ``OLLAMA_LOCUST_API_KEY`` instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"
MIN_SECRET = 4  # shorter "keys" are not masked (they would mask ordinary words)

_secrets: set[str] = set()


def register(secret: str | None) -> None:
    """Mask ``secret`` in every text :func:`mask` sees from now on (in this process)."""
    if secret and len(secret) >= MIN_SECRET:
        _secrets.add(secret)


def mask(text, secrets=None):
    """``text`` with every registered secret (and ``secrets``) replaced by ``MASK``; non-strings as they are."""
    if not isinstance(text, str) or not text:
        return text
    for secret in sorted(_secrets.union(secrets or ()), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def has_credentials(url: str | None) -> bool:
    if not url:
        return False
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        return bool(parts.username or parts.password)
    except ValueError:
        return False


def redact_url(url: str | None) -> str | None:
    """``url`` without ``user:password@`` (unchanged when it has none)."""
    if not url or not has_credentials(url):
        return url
    parts = urlsplit(url if "://" in url else "http://" + url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the credentials of every URL in it removed (``--host=URL`` included)."""
    out = []
    for arg in argv:
        if "=" in arg and arg.startswith("-"):
            flag, value = arg.split("=", 1)
            out.append(f"{flag}={redact_url(value)}" if has_credentials(value) else arg)
        else:
            out.append(redact_url(arg) if "@" in arg and "://" in arg else arg)
    return out


def url_credentials_error(url: str, field: str = "--host") -> str:
    """The one line that refuses a host with ``user:password@`` in it (``field``: where it was given)."""
    return (f"{field} {redact_url(url)}: credentials in the URL (user:password@) are not accepted, they would be "
            "written to the run folder; put an API key in OLLAMA_LOCUST_API_KEY (--api openai/gateway) instead")
