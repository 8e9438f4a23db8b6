"""Every command's --help: one line of help per flag, each default shown once, allowed values listed."""

import argparse
import contextlib
import io
import re

import pytest

from common import evaluation, report, train_config
from common.registry import model_class
from tests.conftest import ROOT

FAMILIES = ("beta_vae_gan", "vq_vae_gan", "hierarchical_vae_gan")


def _help_of(main, argv=("--help",)) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 0
    return out.getvalue()


def _script(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(parser: argparse.ArgumentParser, text: str) -> None:
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings[0]} has no help text"
    # argparse wraps long lines: join every option's help into one line before counting
    entries = re.split(r"\n  (?=-)", text)
    for entry in entries:
        assert entry.count("(default") <= 1, entry
        assert "(default: None)" not in entry, entry


@pytest.mark.parametrize("family", FAMILIES)
def test_training_help_explains_every_flag(family):
    parser = train_config.build_parser("t", model_class(family).Config)
    text = parser.format_help()
    _check(parser, text)
    for flag, values in {
        "--amp": "{none,bf16}",
        "--distortion": "{mse,ms-ssim}",
        "--perceptual": "{auto,lpips,feature_matching}",
    }.items():
        assert f"{flag} {values}" in text
    assert "auto (CUDA when available), cpu, cuda or cuda:N" in " ".join(text.split())
    # what users type is still accepted, and a wrong value is refused by argparse itself
    args = parser.parse_args(["--amp", "bf16", "--perceptual", "lpips"])
    assert args.amp == "bf16" and args.perceptual == "lpips"
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parser.parse_args(["--amp", "fp16"])


@pytest.mark.parametrize("family", FAMILIES)
def test_main_and_evaluate_help_through_the_scripts(family):
    for name in ("main.py", "evaluate.py"):
        text = _help_of(_script(ROOT / family / name).main)
        entries = re.split(r"\n  (?=-)", text)
        assert all(e.count("(default") <= 1 and "(default: None)" not in e for e in entries), name


def test_evaluation_compare_and_baselines_help():
    _check(evaluation.build_parser("beta_vae_gan"), evaluation.build_parser("beta_vae_gan").format_help())
    _check(report.build_parser(), report.build_parser().format_help())
    text = _help_of(_script(ROOT / "scripts" / "run_baselines.py").main)
    assert all(e.count("(default") <= 1 for e in re.split(r"\n  (?=-)", text))


SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_and_subcommand_prints_its_help(name):
    """A '%' in a help text is a format directive to argparse: --help would end in a traceback."""
    module = _script(ROOT / "scripts" / name)
    if not hasattr(module, "main"):
        pytest.skip(f"{name} has no main()")
    text = _help_of(module.main)
    subcommands = re.search(r"\{([a-z_,-]+)\}", text.split("\n\n")[0])
    for sub in subcommands.group(1).split(",") if subcommands else []:
        assert "usage:" in _help_of(module.main, (sub, "--help"))


def test_the_codec_help_gives_the_shipped_models_quality_ranges():
    """The ranges in codec.py's --quality help are the shipped checkpoints' own (they went stale once)."""
    from common import zoo

    text = " ".join(_help_of(_script(ROOT / "scripts" / "codec.py").main, ("compress", "--help")).split())
    for family in FAMILIES:
        model = zoo.shipped_model(family)
        span = model.quality_range()
        lo, hi = span if span is not None else (1, len(model.rate_points()))
        assert re.search(rf"{family}( takes)? {lo:g}-{hi:g}\b", text), family


def test_the_codec_help_names_a_shipped_file_with_a_realism_decoder():
    """decompress --realism's help names the file to compress with; it must be shipped and have one."""
    from common import zoo

    text = " ".join(_help_of(_script(ROOT / "scripts" / "codec.py").main, ("decompress", "--help")).split())
    named = re.search(r"shipped: (\S+\.pth)", text.replace("- ", "-"))  # argparse wraps at hyphens
    assert named, text
    assert ROOT / named.group(1) in zoo.with_realism("beta_vae_gan")
