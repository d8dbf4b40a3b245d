"""The project's own promises: the README's commands, CI, lint configuration."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command.*?-->\s*```sh\n(.+?)\n```", text, re.S)
    assert match, "README.md must mark its test command"
    return match.group(1)


def test_ci_runs_the_readme_test_command():
    command = _test_command()
    assert "pytest" in command and 'pip install -e ".[test]"' in command
    assert "cmd=$(.ci/test-command)" in (ROOT / ".ci" / "run").read_text()
    extracted = subprocess.run([str(ROOT / ".ci" / "test-command")], capture_output=True, text=True,
                               check=True).stdout.strip()
    assert extracted == command


def test_readme_lists_every_study():
    from bayesdl.experiments import STUDIES

    text = (ROOT / "README.md").read_text()
    for name in STUDIES:
        assert f"`{name}`" in text
