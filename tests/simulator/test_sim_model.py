"""The simulator's pure parts: timing model, settings table, deterministic text."""

import json
import math

import pytest

from ollama_locust import simulator
from ollama_locust.simulator.config import (SETTINGS, ConfigError, SimConfig, config_from_args, parse_go_duration,
                              parse_keep_alive, settings_markdown)
from ollama_locust.simulator.profiles import PROFILES, markdown_table, plan_single, prefill_time, step_time, throughput
from ollama_locust.simulator.text import reply_tokens, tokenize


def test_public_surface_is_sorted_and_importable():
    assert simulator.__all__ == sorted(simulator.__all__)
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None


def test_step_time_follows_t1_times_one_plus_beta_n_minus_one():
    p = PROFILES["gpu-llama3-8b"]
    assert step_time(p, 1) == pytest.approx(0.01)
    assert step_time(p, 4) == pytest.approx(0.01 * (1 + 0.3 * 3))
    assert step_time(p, 0) == 0
    assert throughput(p, 4) / throughput(p, 1) == pytest.approx(4 / 1.9)


def test_pi5_profile_takes_about_35_s_for_a_recipe():
    p = PROFILES["pi5-llama3.2-3b"]
    plan = plan_single(p, prompt_tokens=100, output_tokens=150)
    assert 30 <= plan[-1] <= 40
    assert p.beta == pytest.approx(0.9)


def test_cpu_profiles_are_nearly_flat_and_instant_is_instant():
    cpu = PROFILES["cpu2-qwen2.5-1.5b"]
    assert throughput(cpu, 8) / throughput(cpu, 1) < 1.2
    inst = PROFILES["instant"]
    assert plan_single(inst, 1000, 5) == [0.0] * 5
    assert prefill_time(inst, 10**6) == 0
    assert math.isinf(throughput(inst, 3))


def test_plan_single_n_tokens_at_r_takes_n_over_r():
    p = SimConfig(profile="instant", decode_tps=50).timing()
    plan = plan_single(p, 0, 100)
    assert plan[-1] == pytest.approx(2.0)
    assert plan[1] - plan[0] == pytest.approx(0.02)


def test_profile_table_lists_every_profile():
    table = markdown_table()
    for name in PROFILES:
        assert f"`{name}`" in table


def test_settings_table_matches_simconfig_and_docs():
    cfg = SimConfig()
    for s in SETTINGS:
        assert getattr(cfg, s.name) == s.default
    md = settings_markdown()
    for s in SETTINGS:
        assert "--" + s.name.replace("_", "-") in md


@pytest.mark.parametrize("argv,message", [
    (["--fail-rate", "2"], "--fail-rate must be between 0 and 1, got 2"),
    (["--num-parallel", "0"], "--num-parallel must be at least 1, got 0"),
    (["--port", "70000"], "--port must be between 0 and 65535, got 70000"),
    (["--keep-alive", "soon"], "--keep-alive must be seconds or a duration"),
    (["--profile", "nope"], "available: pi5-llama3.2-3b"),
    (["--stall-rate", "0.5"], "--stall-rate needs --stall"),
    (["--decode-tps", "0"], "--decode-tps must be a positive number"),
])
def test_bad_values_give_one_line_messages(argv, message):
    with pytest.raises(ConfigError) as e:
        config_from_args(argv)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_go_durations_and_keep_alive_values():
    assert parse_go_duration("5m") == 300
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("250ms") == 0.25
    assert parse_keep_alive(10) == 10
    assert parse_keep_alive("1s") == 1
    assert parse_keep_alive("30") == 30
    assert math.isinf(parse_keep_alive(-1))
    assert math.isinf(parse_keep_alive("-1m"))
    with pytest.raises(ValueError, match='time: invalid duration "soon"'):
        parse_keep_alive("soon")
    with pytest.raises(TypeError):
        parse_keep_alive(True)


def test_replies_are_deterministic_and_json_when_asked():
    a = reply_tokens("a recipe with lentils", seed=1, model="m", length=150)
    assert a == reply_tokens("a recipe with lentils", seed=1, model="m", length=150)
    assert a != reply_tokens("a recipe with lentils", seed=2, model="m", length=150)
    obj = json.loads("".join(reply_tokens("a recipe with lentils", seed=1, model="m", length=150, fmt="json")))
    assert isinstance(obj["title"], str) and isinstance(obj["ingredients"], list) and isinstance(obj["steps"], list)
    other = json.loads("".join(reply_tokens("why is the sky blue", seed=1, model="m", length=40, fmt="json")))
    assert isinstance(other, dict)
    assert "".join(tokenize("Hello, world")) == "Hello, world"


def test_docs_tables_are_generated_from_the_code():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text()
    assert settings_markdown() in doc, "regenerate the flag table in docs/simulator.md"
    assert markdown_table() in doc, "regenerate the profile table in docs/simulator.md"


def test_simulator_imports_neither_locust_nor_gevent():
    import subprocess
    import sys
    code = ("import sys, ollama_locust.simulator, ollama_locust.simulator.cli, ollama_locust.simulator.api; "
            "bad = [m for m in ('locust', 'gevent', 'ollama_locust.scenarios', 'ollama_locust.reports') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/").stdout.strip()
    assert out == "[]"
