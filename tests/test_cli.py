"""The CLI conventions (README: CLI conventions): one-line usage errors, exit 2, one argparse parser."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import ROOT
from tfodkit.errors import ArgumentParser, cli

# Every `python -m` entry point with an argparse main(argv) -> int, and its prog.
CLIS = {
    "tfodkit.zoo": "python -m tfodkit.zoo",
    "tfodkit.config": "readconfig.py",
    "tfodkit.synthetic": "python -m tfodkit.synthetic",
    "tfodkit.artifacts": "python -m tfodkit.artifacts",
    "tfodkit.demo": "python -m tfodkit.demo",
    "tfodkit.runtask": "python -m tfodkit.runtask",
    "tfodkit.predict": "predict.py",
    "tfodkit.dataset.cli": "python -m tfodkit.dataset",
    "tfodkit.run": "train.sh",
    "tfodkit.train": "python -m tfodkit.train",
    "tfodkit.evaluate": "python -m tfodkit.evaluate",
}


@pytest.mark.parametrize("module", list(CLIS))
def test_an_unknown_flag_is_one_line_and_exit_2(module, capsys):
    main = importlib.import_module(module).main
    assert main(["--no-such-flag"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert re.fullmatch(rf"error: .+ \(see: {re.escape(CLIS[module])}( \w+)? --help\)", lines[0])


@pytest.mark.parametrize("module", ["tfodkit.train", "tfodkit.evaluate", "tfodkit.export"])
def test_the_training_dir_tools_share_their_first_two_flags(module, capsys):
    main = importlib.import_module(module).main
    assert main([]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: the following arguments are required: --pipeline_config, --model_dir"), error
    assert f"(see: python -m {module} --help)" in error


def test_a_subcommand_names_itself_in_the_hint(capsys):
    from tfodkit import zoo

    assert zoo.main(["fetch"]) == 2
    assert capsys.readouterr().err == ("error: the following arguments are required: name "
                                       "(see: python -m tfodkit.zoo fetch --help)\n")


def test_outside_cli_the_error_still_ends_the_process_with_2(capsys):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--n", "x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: argument --n: invalid int value: 'x' (see: tool --help)\n"

    @cli
    def main(argv=None) -> int:
        parser.parse_args(argv)
        return 0

    assert main(["--n", "x"]) == 2


def test_every_cli_uses_the_shared_parser():
    """grep: no module builds a plain argparse.ArgumentParser (its errors are a usage block, not one line)."""
    plain = [str(p.relative_to(ROOT)) for folder in ("tfodkit", "bench") for p in sorted((ROOT / folder).rglob("*.py"))
             if "argparse.ArgumentParser(" in p.read_text()]
    assert plain == [], plain


SCRIPTS = ["train.sh", "runtask.sh", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.sh"))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_uses_the_one_die_with_an_explicit_status(script):
    text = (ROOT / script).read_text()
    assert "tfodkit/lib.sh" in text and re.search(r"^\s*source ", text, re.M), "source tfodkit/lib.sh"
    assert not re.search(r"^\s*die\s*\(\)", text, re.M), "no die of its own"
    statuses = re.findall(r"\bdie (\S+) ", text)
    assert set(statuses) <= {"1", "2"}, statuses  # README: 2 nothing was done, 1 the work failed


def test_die_prints_one_line_and_exits_with_its_status():
    import subprocess

    out = subprocess.run(["bash", "-c", f'source "{ROOT}/tfodkit/lib.sh"; die 2 "no such thing (make one)"; echo no'],
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", "error: no such thing (make one)\n")
