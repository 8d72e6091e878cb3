import pytest

from sgdscope.config import RunConfig, config_reference, dump_config, load_config
from sgdscope.errors import ConfigError


def test_defaults_validate():
    cfg = load_config(None)
    assert isinstance(cfg, RunConfig)
    assert cfg.optim.lr == 0.1 and cfg.train.batch_size == 64


def test_unknown_key_names_key_and_suggestion():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optim\.lrr'; did you mean 'optim\.lr'"
    ):
        load_config({"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"'trian'; did you mean 'train'"):
        load_config({"trian": {}})
    with pytest.raises(ConfigError, match=r"'probes\.0\.evry'; did you mean 'probes\.0\.every'"):
        load_config({"probes": [{"name": "lr", "evry": 3}]})


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("optim.lr=-0.1", r"optim\.lr: Input should be greater than 0 \(got -0\.1\)"),
        ("optim.momentum=1.5", r"optim\.momentum: .*less than 1"),
        ("data.probe_fraction=0", r"data\.probe_fraction: .*greater than 0"),
        ("data.probe_fraction=1.5", r"data\.probe_fraction: .*less than or equal to 1"),
        ("data.val_fraction=1", r"data\.val_fraction"),
        ("train.batch_size=0", r"train\.batch_size: .*positive integer or 'full'"),
        (
            "train.batch_size=lots",
            r"train\.batch_size: .*positive integer or 'full' \(got 'lots'\)",
        ),
        ("train.epochs=ten", r"train\.epochs"),
        ("device=gpu7", r"device: .*auto, cpu, cuda"),
    ],
)
def test_wrong_types_and_ranges(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_overrides_apply_in_order_and_parse_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.5\nmodel:\n  options:\n    widths: [8]\n")
    cfg = load_config(
        path,
        [
            "optim.lr=0.05",
            "optim.lr=0.02",
            "model.options.widths=[32, 16]",
            "train.batch_size=full",
            "probes.1.every=7",
        ],
    )
    assert cfg.optim.lr == 0.02
    assert cfg.model.options["widths"] == [32, 16]
    assert cfg.train.batch_size == "full"
    assert cfg.probes[1].every == 7
    assert cfg.name == "c"  # from the file name


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["optim.lr=0.03", "data.name=mnist1d"])
    path = tmp_path / "r.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_batch_larger_than_train_set_is_rejected_before_training():
    from sgdscope.train import build_parts

    from ..helpers import tiny_config

    cfg = load_config(tiny_config(train__batch_size=100000))
    with pytest.raises(ConfigError, match=r"train\.batch_size=100000: larger than the 256"):
        build_parts(cfg)


def test_unknown_registry_names_suggest():
    from sgdscope.train import build_parts

    from ..helpers import tiny_config

    with pytest.raises(ConfigError, match="unknown model 'mpl'; did you mean 'mlp'"):
        build_parts(load_config(tiny_config(model__name="mpl")))
    with pytest.raises(ConfigError, match=r"data\.options\.num_clases.*did you mean 'num_classes'"):
        cfg = tiny_config()
        cfg["data"]["options"]["num_clases"] = 3
        build_parts(load_config(cfg))


def test_reference_lists_every_section():
    ref = config_reference()
    for key in ("data.name", "optim.lr", "train.batch_size", "probes[].every", "store.root"):
        assert f"`{key}`" in ref
