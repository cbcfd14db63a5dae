"""The project's Locust shape: one class driven by a plan (``--shape step|burst|ramp``) or by Locust's
own ``-u/-r/-t`` (``--shape none``); the decisions live in :mod:`scenarios.stepping`."""

from __future__ import annotations

from locust import LoadTestShape


class LLMShape(LoadTestShape):
    """The project's shape: follows ``--shape`` (step, burst, ramp) or Locust's -u/-r/-t when 'none'."""

    use_common_options = True

    def tick(self):
        controller = getattr(self.runner.environment, "llm_shape", None) if self.runner else None
        if controller is None:
            return None
        return controller.tick()
