"""A Locust worker's side of a run: its records wait in a :class:`RecordBuffer` and go to the master every
second (custom message ``llm_records``) and once more with every stats report (``report_to_master``),
with its generator-health samples; it answers the master's clock pings, burst signals, open-loop rate
orders and aborts (``setup_worker``, from the plugin)."""

from __future__ import annotations

import logging

import gevent

from ollama_locust.scenarios import clock_sync, open_loop
from ollama_locust.scenarios.generator_health import HealthSampler
from ollama_locust.scenarios.record_sink import RecordBuffer
from ollama_locust.scenarios.request_report import worker_tag

logger = logging.getLogger(__name__)

SHIP_INTERVAL_S = 1.0


def setup_worker(environment) -> None:
    """Wire a worker's records, health samples and the master's messages (see the module's docstring)."""
    from ollama_locust.scenarios.users import register_burst_message

    register_burst_message(environment)  # the master's burst signal (--shape burst) reaches BurstyUsers here
    buffer = RecordBuffer()
    environment.llm_records = buffer
    runner = environment.runner
    sampler = HealthSampler(worker_tag(), users=lambda: runner.user_count)
    driver = open_loop.RateDriver(environment)  # --shape rate: the master's orders (open_loop.MESSAGE)
    shipped_in_flight = [0]

    def ship_loop() -> None:
        while True:
            gevent.sleep(SHIP_INTERVAL_S)
            try:
                if driver.in_flight or shipped_in_flight[0]:
                    shipped_in_flight[0] = driver.in_flight
                    runner.send_message(open_loop.IN_FLIGHT_MESSAGE, driver.in_flight)
                if len(buffer):
                    runner.send_message("llm_records", buffer.drain())
                samples = sampler.drain()
                if samples:
                    runner.send_message("llm_health", samples)
            except Exception as error:  # a lost connection: Locust reconnects; keep going
                logger.warning("could not ship records to the master: %s", error)

    def on_report(client_id, data, **_kw) -> None:
        data["llm_records"] = buffer.drain()
        data["llm_health"] = sampler.drain()

    def on_clock_ping(environment, msg, **_kw) -> None:
        runner.send_message(clock_sync.PONG, clock_sync.pong(msg.data, worker_tag()))

    def on_abort(environment, msg, **_kw) -> None:
        environment.stop_timeout = 0
        driver.abort()
        environment.runner.stop()
        runner.send_message("llm_records", buffer.drain())

    def on_rate(environment, msg, **_kw) -> None:
        if msg.data:
            driver.start(msg.data)
        else:
            driver.stop_arrivals()

    environment.events.report_to_master.add_listener(on_report)
    environment.events.test_stopping.add_listener(lambda **_kw: driver.abort())  # what still runs is cut short
    runner.register_message("llm_abort", on_abort)
    runner.register_message(open_loop.MESSAGE, on_rate)
    runner.register_message(clock_sync.PING, on_clock_ping)
    gevent.spawn(ship_loop)
    gevent.spawn(sampler.run)

