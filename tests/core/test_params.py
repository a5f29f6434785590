import pytest
from ruamel.yaml import YAML

from musicgen_lora.__main__ import main
from musicgen_lora.core.params import ParamsError, load, parse_section

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


@pytest.mark.parametrize(
    "section,key,value,needle",
    [
        ("train", "rank", 0, "train.rank"),
        ("train", "rank", 2.5, "train.rank must be of type int"),
        ("train", "alpha", 0, "train.alpha"),
        ("train", "lr", -1e-4, "train.lr"),
        ("train", "dropout", 1.0, "train.dropout must be in [0, 1)"),
        ("train", "batch_size", 0, "train.batch_size"),
        ("train", "grad_accum", 0, "train.grad_accum"),
        ("train", "gradient_checkpointing_every", 0, "train.gradient_checkpointing_every must be an integer >= 1"),
        (
            "train",
            "gradient_checkpointing_every",
            4,
            "train.gradient_checkpointing_every must be 1 while train.gradient_checkpointing is false",
        ),
        ("model", "cpu_threads", 0, "model.cpu_threads must be an integer >= 1, or null"),
        ("train", "mask_padding", "yes", "train.mask_padding must be of type bool"),
        ("train", "bogus", 1, "unknown key train.bogus"),
        ("evaluate", "prompts", [], "evaluate.prompts"),
        ("encode", "pad_to_seconds", 10.0, "encode.pad_to_seconds"),
        ("generation", "guidance_scale", 0.5, "generation.guidance_scale must be >= 1"),
        ("generation", "temperature", 0, "generation.temperature must be finite and > 0"),
        ("generation", "top_k", -1, "generation.top_k must be >= 0"),
        ("evaluate", "guidance_scale", 3.0, "unknown key evaluate.guidance_scale"),  # moved to generation
    ],
)
def test_bad_value_exits_2_naming_key(tmp_path, monkeypatch, capsys, section, key, value, needle):
    write_params(tmp_path, monkeypatch, lambda d: d[section].__setitem__(key, value))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_unknown_section(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, monkeypatch, lambda d: d.__setitem__("trian", {"rank": 4}))
    assert main(["validate"]) == 2
    assert "unknown section 'trian'" in capsys.readouterr().err


def section(name: str, **changes) -> dict:
    """The project's params.yaml section `name`, with `changes`."""
    return {**YAML(typ="safe").load((ROOT / "params.yaml").read_text())[name], **changes}


def test_int_accepted_for_float():
    assert parse_section("train", section("train", alpha=24)).alpha == 24.0


def test_parse_rejects_bool_as_int():
    with pytest.raises(ParamsError, match="train.epochs"):
        parse_section("train", section("train", epochs=True))


@pytest.mark.parametrize(
    "text,needle",
    [
        ("model:\n  name: tiny\n  name: other\n", "line 3: found duplicate key"),
        ("model:\n  name: [tiny\n  revision: 2\n", "line 3:"),
    ],
)
def test_yaml_errors_are_one_line_with_the_line_number(tmp_path, monkeypatch, capsys, text, needle):
    (tmp_path / "params.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_a_missing_section_is_an_error_not_a_second_set_of_defaults(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, monkeypatch, lambda d: d.pop("train"))
    assert main(["validate"]) == 2
    assert "section 'train' is missing" in capsys.readouterr().err
    with pytest.raises(ParamsError, match="train.lr is missing"):
        parse_section("train", {k: v for k, v in section("train").items() if k != "lr"})


@pytest.mark.parametrize("lr", [float("inf"), 1e9, float("nan")])
def test_lr_has_an_upper_bound_and_must_be_finite(lr):
    with pytest.raises(ParamsError, match=r"train.lr must be in \(0, 1\]"):
        parse_section("train", section("train", lr=lr))


def test_validate_reports_every_problem_in_one_pass(tmp_path, monkeypatch, capsys):
    def edit(d):
        d["train"]["rank"] = 0
        d["evaluate"]["prompts"] = []
        d["segment"]["bogus"] = 1

    write_params(tmp_path, monkeypatch, edit)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert any("train.rank" in e for e in err) and any("evaluate.prompts" in e for e in err)
    assert any("unknown key segment.bogus" in e for e in err)


def test_help_lists_every_command(capsys):
    from musicgen_lora.__main__ import COMMANDS

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--help"])
    assert exc.value.code == 0 and "every problem" in capsys.readouterr().out


def test_generation_longer_than_the_decoder_reaches_is_refused(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, monkeypatch, lambda d: d["evaluate"].__setitem__("seconds", 100.0))
    (tmp_path / "assets").symlink_to(ROOT / "assets")  # `tiny` resolves relative to the project
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "evaluate.seconds must be <= 81.86" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "value",
    [
        "adapters/../models/best_model",
        "adapters/../../anything",
        "adapters",
        "/abs/adapters/x",
        "models/best_model",
        "adapters/escape",
    ],
)
def test_init_adapter_must_stay_inside_adapters(tmp_path, monkeypatch, capsys, value):
    """A start adapter outside adapters/ (by `..`, or by a link from adapters/ to elsewhere) would be
    trained from without DVC tracking it as a dependency."""
    (tmp_path / "adapters").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "adapters" / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    write_params(tmp_path, monkeypatch, lambda d: d["train"].__setitem__("init_adapter", value))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.init_adapter" in err and len(err.splitlines()) == 1


def test_a_manifest_of_another_shape_is_one_line(tmp_path):
    """core/artifacts: the manifest read by encode and evaluate is validated (keys and types), and
    a bad one names the file and line."""
    import json

    from musicgen_lora.core.artifacts import ClipRow, read_manifest
    from musicgen_lora.core.errors import UserError

    good = {
        "id": "000000",
        "file": "clips/000000.wav",
        "source": "a.wav",
        "offset_s": 0,
        "duration_s": 15.0,
        "padding_fraction": 0.0,
        "caption": "x",
        "caption_source": "sidecar",
        "split": "train",
    }
    (tmp_path / "manifest.jsonl").write_text(json.dumps(good) + "\n")
    assert read_manifest(tmp_path) == [ClipRow(**good)]
    for bad, needle in (
        ({**good, "extra": 1}, "line 1 has"),
        ({k: v for k, v in good.items() if k != "split"}, "line 1 has"),
        ({**good, "duration_s": "15"}, "duration_s is '15'"),
        ([1, 2], "line 1 has list"),
    ):
        (tmp_path / "manifest.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(UserError, match="regenerate") as exc:
            read_manifest(tmp_path)
        assert needle.replace("line 1", "line 2") in str(exc.value) and "manifest.jsonl" in str(exc.value)


@pytest.mark.parametrize(
    "section,key,value,needle",
    [
        ("train", "seed", -1, "train.seed must be an integer in [0, 2**32)"),
        ("train", "seed", 2**32, "train.seed must be an integer in [0, 2**32)"),
        ("evaluate", "seed", 2**64, "evaluate.seed must be an integer in [0, 2**32)"),
        ("segment", "seed", -5, "segment.seed must be an integer in [0, 2**32)"),
        ("train", "rank", 100000000, "train.rank must be an integer in [1, 4096]"),
        ("train", "rank", 512, "train.rank must be at most the decoder's width 128"),
        ("evaluate", "prompts", "x" * 100000, "evaluate.prompts must be of type"),
    ],
)
def test_values_the_code_cannot_use_are_refused(tmp_path, monkeypatch, capsys, section, key, value, needle):
    write_params(tmp_path, monkeypatch, lambda d: d[section].__setitem__(key, value))
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and len(err) < 400, err


def test_an_alias_bomb_and_a_folder_are_one_line(tmp_path, monkeypatch, capsys):
    """A billion-laughs params.yaml is refused before it expands; a params.yaml that is a folder
    is one line, not a traceback."""
    text = (ROOT / "params.yaml").read_text().replace("\n  prompts:\n", "\n  prompts: *l9\n  old:\n")
    assert "prompts: *l9" in text
    bomb = "a: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)
    )
    (tmp_path / "params.yaml").write_text(bomb + text)
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "alias bomb" in err and len(err.splitlines()) == 1
    (tmp_path / "params.yaml").unlink()
    (tmp_path / "params.yaml").mkdir()
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "params.yaml: not a file" in err and len(err.splitlines()) == 1
