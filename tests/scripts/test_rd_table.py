"""scripts/rd_table.py: codec values read at a model's bpp, n/a outside a codec's range, clear errors."""

import importlib.util
import json

import pytest

from common.errors import VAEGANError
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("rd_table_script", ROOT / "scripts" / "rd_table.py")
rd_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rd_table)
main, tables = rd_table.main, rd_table.tables

SUMMARY = {
    "curves": [
        {
            "kind": "model",
            "name": "m",
            "points": ["m-q1", "m-q2"],
            "results": {"bpp": [0.2, 0.5], "psnr-rgb": [25.0, 28.0], "kid": [0.05, 0.02]},
        },
        {"kind": "codec", "id": "c", "name": "C", "results": {"bpp": [0.1, 0.3], "psnr-rgb": [24.0, 30.0]}},
    ]
}


def test_values_at_equal_and_scaled_bpp():
    text = tables(SUMMARY, ["psnr-rgb", "kid"])
    assert "| m-q1 | 0.200 | 25.00 | 27.00 |" in text  # halfway between 24 and 30
    assert "| m-q2 | 0.500 | 28.00 | n/a |" in text  # beyond the codec's range: no extrapolation
    assert "| m-q1 | 0.200 | 0.050 | – |" in text  # the codec has no KID
    assert "| m-q1 | 0.200 | 25.00 | 28.50 |" in tables(SUMMARY, ["psnr-rgb"], scale=1.25)


def test_cli_and_errors(tmp_path, capsys):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(SUMMARY))
    assert main([str(path), "--metrics", "psnr-rgb", "--codecs", "c"]) == 0
    assert "| point | bpp | psnr-rgb | C |" in capsys.readouterr().out
    path.write_text("{}")
    with pytest.raises(VAEGANError, match="not a compare_models.py summary.json"):
        main([str(path)])
    with pytest.raises(VAEGANError, match="--scale must be positive"):
        main([str(path), "--scale", "0"])
