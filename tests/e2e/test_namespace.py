"""One installed namespace (issue 19, item 1): the product runs from a folder outside the repository
that holds the user's own ``reports.py`` and ``scenarios.py`` beside a copy of the locustfile.

Locust puts the locustfile's folder first on ``sys.path``; with the old top-level packages those two
files shadowed ours. Both runs below are real: ``locust -f locustfile.py`` and ``ollama-locust step``
against the simulator, a short step each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.e2e.helpers import LOAD, REPO, SIM_ARGS, assert_no_traceback, ollama_locust, only_run_dir, run

USER_FILE = "raise ImportError('the user\\'s own {name}.py was imported instead of ollama-locust\\'s')\n"


def user_folder(tmp_path):
    folder = tmp_path / "my-load-test"
    folder.mkdir()
    shutil.copy(os.path.join(REPO, "locustfile.py"), folder / "locustfile.py")
    for name in ("reports", "scenarios", "simulator", "schema", "options"):
        (folder / f"{name}.py").write_text(USER_FILE.format(name=name))
    return folder


def test_installed_names_are_one_namespace(tmp_path):
    folder = user_folder(tmp_path)
    code = ("import importlib.util, json, ollama_locust.scenarios.locustfile as lf, ollama_locust.reports, "
            "ollama_locust.simulator, ollama_locust.contract;"
            "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in ('scenarios', 'reports', 'simulator')}))")
    result = run([sys.executable, "-c", code], tmp_path, cwd=folder, timeout=60, name="imports")
    assert result.code == 0, result.text[-2000:]
    # the user's files are the only top-level modules of those names: nothing of ours shadows them
    assert json.loads(result.out.strip().splitlines()[-1]) == {"scenarios": True, "reports": True, "simulator": True}
    spec = run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('scenarios').origin)"],
               tmp_path, cwd=folder, timeout=30, name="origin")
    assert spec.out.strip() == str(folder / "scenarios.py")


def test_locust_and_step_run_beside_the_users_files(tmp_path, sim_process):
    folder = user_folder(tmp_path)
    sim = sim_process(*SIM_ARGS)
    run_dir = tmp_path / "locust-run"
    plain = run([sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless", "--host", sim.url,
                 "--model", "llama3.2", "--shape", "step", "--steps", "1", "--step-time", "3s",
                 "--run-dir", str(run_dir), *LOAD], tmp_path, cwd=folder, timeout=90, name="locust")
    assert_no_traceback(plain)
    assert plain.code == 0, plain.text[-3000:]
    assert (run_dir / "requests.csv").read_text().count("\n") > 1

    step = run(ollama_locust("step", "--sim", "instant", "--sim-args", " ".join(SIM_ARGS[2:]), "--steps", "1",
                             "--step-time", "3s", "--out", str(tmp_path / "runs"), *LOAD),
               tmp_path, cwd=folder, timeout=120, name="step")
    assert_no_traceback(step)
    assert step.code == 0, step.text[-3000:]
    assert "| Concurrent users |" in step.out
    assert os.path.exists(os.path.join(only_run_dir(tmp_path / "runs"), "results.md"))


def test_a_regular_install_has_one_top_level_name_and_runs(tmp_path, sim_process):
    """A regular build: the wheel holds ollama_locust/ alone (its scenarios/, reports/, simulator/ inside);
    installed into a virtualenv (its dependencies from this interpreter's site-packages), the locustfile
    copied beside the user's own files runs a short step from it."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                             "-w", str(tmp_path), REPO], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    import zipfile

    wheel = next(tmp_path.glob("ollama_locust-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"ollama_locust"}, tops
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["ollama_locust"]
    for path in ("ollama_locust/scenarios/locustfile.py", "ollama_locust/reports/_report.py",
                 "ollama_locust/simulator/api.py", "ollama_locust/contract.py",
                 "ollama_locust/scenarios/prompts/school.json", "ollama_locust/scenarios/webui_static/llm.js"):
        assert path in names, path

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    folder = user_folder(tmp_path)
    where = run([python, "-c", "import ollama_locust.scenarios.locustfile as m; print(m.__file__)"],
                tmp_path, cwd=folder, timeout=60, name="where")
    assert where.out.strip().startswith(str(venv)), where.text
    sim = sim_process(*SIM_ARGS)
    run_dir = tmp_path / "wheel-run"
    result = run([python, "-m", "locust", "-f", "locustfile.py", "--headless", "--host", sim.url, "--model", "llama3.2",
                  "--shape", "step", "--steps", "1", "--step-time", "3s", "--run-dir", str(run_dir), *LOAD],
                 tmp_path, cwd=folder, timeout=90, name="wheel-locust")
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    assert (run_dir / "requests.csv").read_text().count("\n") > 1
