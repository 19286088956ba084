"""Shared helpers for the checks of deploy/: where the tools and the binary are, and how to
run them. .ci/run installs the tools; locally, point the variables below at your own."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Flags the deploy files use that the binary does not have yet (DESIGN.md fixes their names).
# They are removed before the binary checks a command line; test_pending_flags_are_pending
# fails once one of them lands, so that this list and docs/OPERATING.md are brought up to date.
PENDING_FLAGS = {
    "cache": (),
    "api": (),
}


def tool(env_var, name):
    """The path of a tool: $env_var, else `name` on PATH; the test is skipped outside CI if
    neither exists, and fails in CI."""
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing ({env_var} or PATH); .ci/run installs it")
        pytest.skip(f"{name} not installed (set {env_var})")
    return path


@pytest.fixture(scope="session")
def larder_bin():
    path = os.environ.get("LARDER_BIN") or str(ROOT / "target/release/larder")
    if not Path(path).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"no larder binary at {path}")
        pytest.skip(f"no larder binary at {path} (cargo build --release -p larder)")
    return path


@pytest.fixture(scope="session")
def promtool():
    return tool("PROMTOOL", "promtool")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def strip_pending(command, args):
    """`args` without the flags the binary does not have yet (both `--f=v` and `--f v`)."""
    pending = PENDING_FLAGS.get(command, ())
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in pending:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def check_with_binary(larder_bin, args, env, config_file):
    """Runs `larder ARGS --print-config` with the deploy file's configuration and the
    variables a deployment sets (secrets replaced by test values): the binary refuses unknown
    flags, unknown LARDER_* settings and invalid configuration. Returns the printed TOML."""
    command = args[0]
    args = strip_pending(command, list(args))
    assert "--config" not in args, "write --config=FILE, as the deploy files do"
    args = [f"--config={config_file}" if a.startswith("--config=") else a for a in args]
    base = {k: v for k, v in os.environ.items() if not k.startswith("LARDER_")}
    result = run([larder_bin, *args, "--print-config"], env={**base, **env})
    assert result.returncode == 0, f"larder {' '.join(args)}: {result.stderr}"
    return result.stdout
