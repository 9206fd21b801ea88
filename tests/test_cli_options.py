"""--provider, --threads, --workers and --log-level behave alike in every command: one default, help and check."""
from __future__ import annotations

import re
from types import ModuleType

import click
import pytest
from click.testing import CliRunner, Result

from hashtag.benchmarks import bench_batch, bench_bot, bench_serve, bench_spinning
from hashtag.runtime.cli import main
from hashtag.runtime.options import SharedOption, log_level_option, provider_option, threads_option, workers_option

# Each command and the shared options it takes (bench and bench_spinning describe theirs in their own words).
COMMANDS = {
    "predict": (main, ["predict"], (provider_option, threads_option)),
    "tag": (main, ["tag"], (provider_option, threads_option)),
    "serve": (main, ["serve"], (provider_option, threads_option, workers_option, log_level_option)),
    "bot": (main, ["bot"], (provider_option, threads_option, workers_option, log_level_option)),
    "bench": (main, ["bench"], (provider_option, threads_option)),
    "bench_batch": (bench_batch.main, [], (provider_option,)),
    "bench_spinning": (bench_spinning.main, [], (threads_option,)),
}
OWN_WORDS = {("bench", "--provider"), ("bench_spinning", "--threads")}
BAD_VALUE = {"--provider": "tpu", "--threads": "0", "--workers": "0", "--log-level": "loud"}
SAID = {"--provider": "unknown provider 'tpu' (choose from auto, cpu, cuda, openvino)",  # check_provider's words
        "--threads": "0 is not in the range x>=1", "--workers": "0 is not in the range x>=1",
        "--log-level": "'loud' is not one of 'debug', 'info', 'warning', 'error'"}


def _invoke(command: click.Command, args: list[str]) -> Result:
    return CliRunner().invoke(command, args)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_shared_text_and_default(name: str) -> None:
    command, prefix, options = COMMANDS[name]
    result = _invoke(command, [*prefix, "--help"])
    assert result.exit_code == 0, result.output
    shown = _flat(result.stdout)
    for option in options:
        assert option.flag in shown
        if (name, option.flag) not in OWN_WORDS:
            assert _flat(option.help) in shown, (name, option.flag)
        if option.default is not None:
            assert f"[default: {option.default}]" in shown


@pytest.mark.parametrize(("name", "flag"), [(n, o.flag) for n, (_, _, opts) in COMMANDS.items() for o in opts])
def test_a_bad_value_is_a_usage_error_with_the_same_message(name: str, flag: str) -> None:
    command, prefix, _ = COMMANDS[name]
    result = _invoke(command, [*prefix, flag, BAD_VALUE[flag]])  # checked before a missing PATHS is noticed
    assert result.exit_code == 2, result.output
    assert SAID[flag] in _flat(result.stderr) and f"'{flag}'" in result.stderr


@pytest.mark.parametrize(("script", "options"), [(bench_bot, (provider_option, threads_option, workers_option)),
                                                 (bench_serve, (provider_option,))])
def test_argparse_scripts_take_the_same_options(script: ModuleType, options: tuple[SharedOption, ...],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = script.parse_args(["--provider", "cpu"])
    assert args.provider == "cpu"
    assert all(getattr(script.parse_args([]), o.dest) == o.default for o in options)
    for option in options:
        with pytest.raises(SystemExit) as info:
            script.parse_args([option.flag, BAD_VALUE[option.flag]])
        assert info.value.code == 2 and SAID[option.flag] in _flat(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    shown = _flat(capsys.readouterr().out)
    assert all(_flat(o.help) in shown for o in options)
