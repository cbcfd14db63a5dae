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

# Dependencies first (cached while only the code changes): the metadata and package folders.
COPY pyproject.toml README.md ./
COPY ollama_locust ./ollama_locust
COPY scenarios ./scenarios
COPY reports ./reports
COPY simulator ./simulator
RUN pip install .

# The top-level locustfile, so `locust -f locustfile.py` works from /app as in a checkout.
COPY locustfile.py ./

# Run folders are written to /app/runs (compose mounts ./runs there).
RUN mkdir -p /app/runs
VOLUME ["/app/runs"]

# 8089: Locust web UI (master); 5557: master <- workers; 11434: the simulator.
EXPOSE 8089 5557 11434

CMD ["locust", "-f", "locustfile.py"]
