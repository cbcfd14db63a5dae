# ollama-locust: the load tool (locust master / worker, `ollama-locust step`, the simulator) in one image.
#   docker build -t ollama-locust .
#   docker run --rm -p 8089:8089 ollama-locust locust -f locustfile.py --host http://HOST:11434
# docker-compose.yml builds it for the locust-master, locust-worker, sim and step services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package is built from /src and installed as a regular wheel: one top-level name, ollama_locust,
# whose scenarios/, reports/ and simulator/ come from the repository's folders (pyproject package-dir).
COPY pyproject.toml README.md /src/
COPY ollama_locust /src/ollama_locust
COPY scenarios /src/scenarios
COPY reports /src/reports
COPY simulator /src/simulator
RUN pip install /src && rm -rf /src

# Only the top-level locustfile in /app (no source folders beside it), so `locust -f locustfile.py`
# imports the installed package, as on any load machine.
COPY locustfile.py ./

# Run folders are written to /app/runs (compose mounts ./runs there).
RUN mkdir -p /app/runs
VOLUME ["/app/runs"]

# 8089: Locust web UI (master); 5557: master <- workers; 11434: the simulator.
EXPOSE 8089 5557 11434

CMD ["locust", "-f", "locustfile.py"]
