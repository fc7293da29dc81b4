"""Bad CLI input: one clear line on stderr, exit code 2, never a traceback."""

import subprocess
import sys

import pytest

from shadowline.cli.main import main


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["worker", "nope"], "unknown stage(s) nope"),
        (["replay", "--rate", "-1", "x.jsonl"], "--rate"),
        (["replay", "/definitely/missing.jsonl"], "cannot read /definitely/missing.jsonl"),
        (["publish", "hello"], "--conversation"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_setting_from_environment_is_one_line():
    env = {"SHADOWLINE_PARTITIONS": "zero", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "shadowline", "topics", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: invalid setting partitions")
    assert "Traceback" not in proc.stderr


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("infra", "topics", "worker", "publish", "replay", "demo"):
        assert cmd in out
