"""A search over a head's parts (depth, widths, batch norm, dropout, activation) as separate Optuna parameters."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml

from lightning_hw import reports
from lightning_hw.errors import ConfigError
from lightning_hw.nets.heads import build_head, split_pooling
from lightning_hw.studies import search
from lightning_hw.studies.head_space import compose_head

from conftest import REPO

HEAD = "model.init_args.net.init_args.head"


def test_compose_head_writes_the_reports_heads():
    assert compose_head("flatten", [1024, 64, 0], False, 0.0, "relu") == ["flatten", 1024, "relu", 64, "relu"]
    assert compose_head("flatten", [256, 0], True, 0.0, "linear") == ["flatten", 256, "batchnorm"]
    assert compose_head("gap", [512, 0, 32], True, 0.3, "relu") == ["gap", 512, "batchnorm", "relu", "dropout:0.3"]
    assert compose_head("flatten", [0, 64], False, 0.5, "relu") == ["flatten"]  # 0 first: a linear classifier
    # A float dropout from a stepped distribution is written as the rate, not 0.30000000000000004.
    assert compose_head("gap", [8], False, 0.1 + 0.2, "tanh") == ["gap", 8, "tanh", "dropout:0.3"]


def _every_spec(spec: search.SearchStudy) -> list[list]:
    """Every head a shipped search can compose (its categorical parts, and each float range's ends)."""
    (head,) = spec.heads
    grids = search.grid_choices(head.searched, "shipped")  # categorical choices, stepped ranges
    return [head.spec(dict(zip(grids, values))) for values in itertools.product(*grids.values())]


@pytest.mark.parametrize(
    ("study", "grid", "hand_picked"),
    [
        ("resnet152_head_search", "resnet152_heads", "d1024_d64"),
        ("densenet201_head_search", None, None),
        ("transfer_demo_head_search", None, None),
    ],
)
def test_shipped_head_searches_compose_heads_that_build_and_hold_the_hand_picked_one(study, grid, hand_picked):
    spec = search.load_search(REPO / "configs" / "studies" / f"{study}.yaml")
    assert {h.option for h in spec.heads} == {HEAD}
    assert {"head.layer1", "head.layer2", "head.batchnorm", "head.dropout"} <= set(spec.space)
    composed = _every_spec(spec)
    assert len({json.dumps(c) for c in composed}) >= 20  # separate parameters, not a handful of specs
    for head_spec in composed[:: max(1, len(composed) // 40)]:
        pooling, layers = split_pooling(head_spec)
        shape = (8, 2, 2) if pooling == "flatten" else (8,)  # gap/gmp: the backbone pools the map
        net = build_head(layers, shape, 2, flatten=pooling == "flatten")
        net.eval()
        assert net(torch.zeros(2, *shape)).shape == (2, 2)
    # The base config's head (the reports' or the demo's choice) and its lr are points of the space.
    base = yaml.safe_load(Path(spec.study.configs[0]).read_text())
    chosen = base["model"]["init_args"]["net"]["init_args"]["head"]
    if hand_picked:
        grid_file = yaml.safe_load((REPO / "configs" / "studies" / f"{grid}.yaml").read_text())
        assert grid_file["variants"][hand_picked][HEAD] == chosen
    assert chosen in composed
    lr = spec.space["model.init_args.lr"]
    assert lr.low <= base["optimizer"]["init_args"]["lr"] <= lr.high


def test_the_fold_check_compares_points_of_the_search_space_under_the_searchs_settings():
    """transfer_demo_heads_cv.yaml re-trains the search's winner and both hand-picked heads on folds: each
    variant must be a head and lr the search could have picked, trained as its trials were."""
    from lightning_hw.studies import grid

    spec = search.load_search(REPO / "configs" / "studies" / "transfer_demo_head_search.yaml")
    composed = _every_spec(spec)
    lr = spec.space["model.init_args.lr"]
    cv_file = REPO / "configs" / "studies" / "transfer_demo_heads_cv.yaml"
    cv = yaml.safe_load(cv_file.read_text())
    search_file = yaml.safe_load((REPO / "configs" / "studies" / "transfer_demo_head_search.yaml").read_text())
    assert cv["config"] == search_file["config"] and cv["args"] == search_file["args"] and cv["folds"] == 5
    base = yaml.safe_load((REPO / cv["config"]).read_text())
    assert cv["variants"]["demo"][HEAD] == base["model"]["init_args"]["net"]["init_args"]["head"]
    assert cv["variants"]["reports"][HEAD] == ["flatten", 1024, "relu", 64, "relu"]
    for name, variant in cv["variants"].items():
        assert variant[HEAD] in composed, name
        assert lr.low <= variant["model.init_args.lr"] <= lr.high, name
    jobs = grid.plan(grid.load_study(cv_file))
    assert sorted(job.name for job in jobs) == sorted(f"{v}-fold{i}" for v in cv["variants"] for i in range(5))


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"layers": [{"categorical": [8, 16]}], "dropuot": 0.1}, "unknown part 'dropuot'"),
        ({"layers": [{"categorical": [8, -1]}]}, "layer1: -1 is not a width of 0 or more"),
        ({"layers": [8], "dropout": {"float": [0.0, 1.0]}}, "dropout: 1.0 is not a rate in [0, 1)"),
        ({"layers": [8], "activation": "rleu"}, "activation: 'rleu' is not one of linear, relu"),
        ({"layers": [8], "pooling": {"categorical": ["flatten", "avg"]}}, "pooling: 'avg' is not one of flatten, gap, gmp"),
        ({"layers": []}, "layers must list the hidden widths"),
        ({"layers": [{"float": [8, 64]}]}, "layer1: 8.0 is not a width"),
    ],
)
def test_bad_head_parts_are_one_line(workdir, parts, message):
    path = workdir / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "config": str(REPO / "configs" / "transfer_demo.yaml"), "search": {HEAD: {"head": parts}}}))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as err:
        search.load_search(path)
    assert "\n" not in str(err.value)


def test_a_head_parameter_named_twice_is_refused(workdir):
    path = workdir / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "config": str(REPO / "configs" / "transfer_demo.yaml"), "search": {
        HEAD: {"head": {"layers": [{"categorical": [8, 16]}]}},
        "other.head": {"head": {"layers": [{"categorical": [8, 16]}]}},
    }}))
    with pytest.raises(ConfigError, match="'head.layer1' is named twice"):
        search.load_search(path)


def test_study_trains_the_composed_heads_and_reports_them(workdir, monkeypatch, capsys):
    """Two trials on the transfer demo (LFW faces, a small frozen ResNet18): each `fit` trains the head its
    parameters compose, the report lists the spec beside the parameters and best.yaml holds it."""
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    path = workdir / "heads.yaml"
    path.write_text(yaml.safe_dump({
        "name": "heads",
        "config": str(REPO / "configs" / "transfer_demo.yaml"),
        "args": {
            "trainer.max_epochs": 2, "data.init_args.image_size": 32,
            "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False,
            "run.wandb": "disabled", "run.test_after_fit": False,
        },
        "search": {
            HEAD: {"head": {
                "pooling": "gap",
                "layers": [{"categorical": [8, 16]}, {"categorical": [0, 4]}],
                "batchnorm": {"categorical": [False, True]},
                "dropout": {"float": [0.0, 0.4], "step": 0.2},
            }},
            "model.init_args.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        },
        "sampler": "random", "seed": 3, "pruner": "none", "trials": 2,
    }, sort_keys=False))
    from lightning_hw.studies import grid as studies  # the study in this process: each trial is a fit process of its own

    assert studies.main([str(path)]) == 0
    printed = capsys.readouterr().out
    study = search.load_search(path)
    (head,) = study.heads
    import optuna

    trials = optuna.load_study(study_name="heads", storage=search.open_storage(study.storage)).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    specs = []
    for trial in trials:
        expected = head.spec(trial.params)
        specs.append(expected)
        run = workdir / "runs" / "heads" / f"trial-{trial.number}"
        recorded = yaml.safe_load((run / "config.yaml").read_text())
        assert recorded["model"]["init_args"]["net"]["init_args"]["head"] == expected
        assert json.dumps(expected) in printed  # the runner prints the head it starts
        # The checkpoint's head has the composed layers: Linear widths and BatchNorm where asked.
        state = torch.load(next((run / "checkpoints").glob("last.ckpt")), map_location="cpu", weights_only=False)["state_dict"]
        linear = [v.shape[0] for k, v in state.items() if k.startswith("net.head.") and k.endswith(".weight") and v.dim() == 2]
        widths = [w for w in expected if isinstance(w, int)]
        assert linear == [*widths, 1]  # binary_bce: one logit
        has_bn = any(k.endswith("running_mean") and k.startswith("net.head.") for k in state)
        assert has_bn == ("batchnorm" in expected)
    assert reports.main([str(workdir / "runs" / "heads")]) == 0
    rows = list(csv.DictReader((workdir / "runs" / "heads" / "report" / "trials.csv").open()))
    assert [json.loads(r[HEAD]) for r in rows] == specs
    assert {"head.layer1", "head.layer2", "head.batchnorm", "head.dropout"} <= set(rows[0])
    best = yaml.safe_load((workdir / "runs" / "heads" / "best.yaml").read_text())
    assert best["model"]["init_args"]["net"]["init_args"]["head"] in specs
    assert all(str(r["head.dropout"]) in ("0.0", "0.2", "0.4") for r in rows)  # not 0.30000000000000004-style floats

    # Editing a fixed part afterwards (not an Optuna parameter) must not rewrite what the trials ran.
    edited = yaml.safe_load(path.read_text())
    edited["search"][HEAD]["head"]["activation"] = "tanh"
    path.write_text(yaml.safe_dump(edited, sort_keys=False))
    capsys.readouterr()
    assert studies.main([str(path)]) == 0
    again = capsys.readouterr().out
    assert "2 of 2 trials finished" in again, again
    assert "tanh" not in again and json.dumps(best["model"]["init_args"]["net"]["init_args"]["head"]) in again
    assert reports.main([str(workdir / "runs" / "heads")]) == 0
    rows = list(csv.DictReader((workdir / "runs" / "heads" / "report" / "trials.csv").open()))
    assert [json.loads(r[HEAD]) for r in rows] == specs


@pytest.mark.parametrize(
    ("option", "entry", "message"),
    [
        ("data.init_args.batch_size", {"head": {"layers": [8]}}, "data.init_args.batch_size is not a head option"),
        ("model.init_args.head", {"head": {"layers": [8]}}, "that is the task's output head (a loss such as softmax_ce)"),
        (HEAD, {"head": {"layers": [8]}, "categorical": [[8]]}, "give either a head: entry or a distribution, not both"),
    ],
)
def test_a_head_entry_in_the_wrong_place_is_one_line_before_anything_runs(workdir, option, entry, message, capsys):
    from lightning_hw.cli import main  # `python -m lightning_hw study`, in this process

    path = workdir / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "config": str(REPO / "configs" / "transfer_demo.yaml"), "search": {option: entry}}))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["study", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().count("\n") == 0, err
    assert err.startswith("error: ") and message in err
    assert not (workdir / "runs").exists()
