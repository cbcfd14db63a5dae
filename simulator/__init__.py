"""An Ollama-compatible server that behaves like Ollama under load (see docs/simulator.md).

Imports neither locust nor gevent, so it can run next to (or inside the tests of) the load side.
"""

from ollama_locust.simulator.config import SETTINGS, ConfigError, SimConfig
from ollama_locust.simulator.profiles import PROFILES, Profile
from ollama_locust.simulator.server import SimProcess, SimStartError, run_in_thread, start_process

__all__ = sorted(["ConfigError", "PROFILES", "Profile", "SETTINGS", "SimConfig", "SimProcess", "SimStartError",
                  "run_in_thread", "start_process"])
