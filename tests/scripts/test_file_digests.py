"""scripts/file_digests.py: digests per shipped rate point, and a comparison that fails on a change."""

import json
import sys

from PIL import Image

from common.cli import run_cli
from tests.conftest import ROOT, random_image

sys.path.insert(0, str(ROOT / "scripts"))
import file_digests  # noqa: E402


def test_digests_repeat_and_a_changed_point_is_reported(tmp_path, rng, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(random_image(rng, 64, 64)).save(folder / "a.png")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert run_cli(file_digests.main, ["--dataset", str(folder), "--output", str(first)]) == 0
    digests = json.loads(first.read_text())
    assert digests and all(len(v) == 64 for v in digests.values())
    argv = ["--dataset", str(folder), "--output", str(second), "--compare", str(first)]
    assert run_cli(file_digests.main, argv) == 0
    assert f"{len(digests)} rate points byte-identical" in capsys.readouterr().out
    name = next(iter(digests))
    first.write_text(json.dumps(digests | {name: "0" * 64}))
    assert run_cli(file_digests.main, argv) == 1
    assert f"changed: {name}" in capsys.readouterr().out
