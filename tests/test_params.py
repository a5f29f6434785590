import pytest
from ruamel.yaml import YAML

from musicgen_lora.__main__ import main
from musicgen_lora.params import ParamsError, load, parse_section

from conftest import ROOT


def write_params(tmp_path, monkeypatch, edit):
    y = YAML()
    data = y.load((ROOT / "params.yaml").read_text())
    edit(data)
    with open(tmp_path / "params.yaml", "w") as f:
        y.dump(data, f)
    monkeypatch.chdir(tmp_path)


def test_defaults_load_typed(tmp_path, monkeypatch):
    write_params(tmp_path, monkeypatch, lambda d: None)
    model, train = load("model", "train")
    assert model.name == "tiny"
    assert isinstance(train.lr, float) and isinstance(train.rank, int)
    assert train.target_modules == ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


@pytest.mark.parametrize("section,key,value,needle", [
    ("train", "rank", 0, "train.rank"),
    ("train", "rank", 2.5, "train.rank must be of type int"),
    ("train", "alpha", 0, "train.alpha"),
    ("train", "lr", -1e-4, "train.lr"),
    ("train", "dropout", 1.0, "train.dropout must be in [0, 1)"),
    ("train", "batch_size", 0, "train.batch_size"),
    ("train", "grad_accum", 0, "train.grad_accum"),
    ("train", "mask_padding", "yes", "train.mask_padding must be of type bool"),
    ("train", "bogus", 1, "unknown key train.bogus"),
    ("evaluate", "prompts", [], "evaluate.prompts"),
    ("encode", "pad_to_seconds", 10.0, "encode.pad_to_seconds"),
])
def test_bad_value_exits_2_naming_key(tmp_path, monkeypatch, capsys, section, key, value, needle):
    write_params(tmp_path, monkeypatch, lambda d: d[section].__setitem__(key, value))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_unknown_section(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, monkeypatch, lambda d: d.__setitem__("trian", {"rank": 4}))
    assert main(["validate"]) == 2
    assert "unknown section 'trian'" in capsys.readouterr().err


def test_int_accepted_for_float():
    assert parse_section("train", {"alpha": 24}).alpha == 24.0


def test_parse_rejects_bool_as_int():
    with pytest.raises(ParamsError, match="train.epochs"):
        parse_section("train", {"epochs": True})
