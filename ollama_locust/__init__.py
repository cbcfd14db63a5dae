"""ollama-locust: how many concurrent users can your Ollama server carry?"""

__version__ = "0.1.0"
