import pytest

from uvd.config import load_config
from uvd.errors import ConfigError
from uvd.unit import make_source


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_relative_paths_resolve_against_the_config(tmp_path):
    (tmp_path / "imgs").mkdir()
    cfg = load_config(_write(tmp_path, "datasets:\n  - source: image_folder\n    source_args: {root: ./imgs}\n"))
    assert cfg.datasets[0].source_args["root"] == str(tmp_path / "imgs")
    assert cfg.image.size == 256 and cfg.image.resize == "center_crop"


@pytest.mark.parametrize("text, needle", [
    ("seed: 1\ndatasetz: []\n", "datasetz: unknown key"),
    ("seed: one\ndatasets: []\n", "seed"),
    ("image: {resize: stretch}\ndatasets: []\n", "image.resize"),
    ("datasets:\n  - source: image_folder\n    colour: red\n", "datasets.0.colour: unknown key"),
    ("datasets:\n  - {source: image_folder}\n  - {source: image_folder}\n", "unique"),
])
def test_config_errors_are_clear(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert needle in str(err.value)


def test_source_options_are_checked(tmp_path):
    cfg = load_config(_write(tmp_path, "datasets:\n  - source: image_folder\n    source_args: {root: /no/such/dir}\n"))
    with pytest.raises(ConfigError, match="path does not exist"):
        make_source(cfg, cfg.datasets[0])
    cfg = load_config(_write(tmp_path, "datasets:\n  - source: image_folder\n    source_args: {root: /, bogus: 1}\n"))
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        make_source(cfg, cfg.datasets[0])
    cfg = load_config(_write(tmp_path, "datasets:\n  - source: no_such_source\n"))
    with pytest.raises(ConfigError, match="unknown source 'no_such_source'"):
        make_source(cfg, cfg.datasets[0])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(_write(tmp_path, "datasets: [\n"))


def test_environment_variables_with_defaults(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    text = "datasets:\n  - source: image_folder\n    source_args: {root: ${UVD_T_ROOT:-./a}}\n"
    monkeypatch.delenv("UVD_T_ROOT", raising=False)
    assert load_config(_write(tmp_path, text)).datasets[0].source_args["root"] == str(tmp_path / "a")
    monkeypatch.setenv("UVD_T_ROOT", str(tmp_path / "b"))
    assert load_config(_write(tmp_path, text)).datasets[0].source_args["root"] == str(tmp_path / "b")
    with pytest.raises(ConfigError, match="UVD_T_UNSET"):
        load_config(_write(tmp_path, "seed: ${UVD_T_UNSET}\ndatasets: []\n"))
