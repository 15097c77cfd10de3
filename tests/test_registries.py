"""The registries (engines, conversion targets, datasets): every entry is tested here for free.

A new engine module in ``edgepose/runtimes/engines/``, target module in ``converters/targets/`` or dataset module
in ``edgepose/datasets/`` gets these checks without a line added here: what each declares must hold together
(a target's files open with a runtime of the same format; an engine's install group exists in pyproject.toml;
a dataset's scorer gives its headline metric, 1.0 for the ground truth itself).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tomllib

from edgepose.datasets import DATASET_KINDS, load_dataset
from edgepose.errors import EdgeposeError
from edgepose.runtimes import RUNTIMES, RuntimeOptions, engine_for, format_label, runtime_for
from edgepose.spec import DATASETS, MODELS, get_spec
from tests.helpers import REPO, SAMPLES, require

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
GROUPS = PYPROJECT["project"]["optional-dependencies"]


# ------------------------------------------------------------------------------------------ engines
@pytest.mark.parametrize("engine", sorted(RUNTIMES))
def test_engine_declares_its_facts(engine):
    cls = RUNTIMES[engine]
    assert cls.engine == engine and cls.format and cls.label and cls.suffixes and cls.modules
    assert cls.distributions and cls.install in GROUPS, f"{engine}: install group {cls.install!r} not in pyproject"
    assert all(re.fullmatch(r"\.[a-z0-9]+", s) for s in (*cls.suffixes, *cls.companions))
    for s in cls.suffixes:
        assert engine_for(f"model{s}") == engine and runtime_for(f"x{s.upper()}") is cls
    assert format_label(cls.format) == cls.label
    assert "cpu" in cls.devices() and cls.has_device("cpu")
    assert dataclasses.is_dataclass(cls.Options) and issubclass(cls.Options, RuntimeOptions)


def test_suffixes_belong_to_one_engine():
    owners = [s for cls in RUNTIMES.values() for s in cls.suffixes]
    assert len(owners) == len(set(owners))


@pytest.mark.parametrize("engine", sorted(RUNTIMES))
def test_engine_rejects_unknown_options_by_name(engine):
    cls = RUNTIMES[engine]
    with pytest.raises(EdgeposeError, match=rf"unknown option 'typo_option' for the {engine} runtime \(known: .*"):
        cls.parse_options({"typo_option": 1})
    assert cls.parse_options({"allow_fallback": True}).allow_fallback is True


@pytest.mark.parametrize("engine", sorted(RUNTIMES))
def test_engine_rejects_bad_threads(engine, tmp_path):
    path = tmp_path / f"m{RUNTIMES[engine].suffixes[0]}"
    path.write_bytes(b"0")
    with pytest.raises(EdgeposeError, match="--threads -1: must be a whole number of at least 1"):
        RUNTIMES[engine](path, threads=-1)


# ------------------------------------------------------------------------------------------ targets
def _targets():
    pytest.importorskip("onnx")
    from edgepose.converters import targets  # noqa: F401  (registers them)
    from edgepose.converters.base import PRECISIONS, TARGETS

    return TARGETS, PRECISIONS


def test_every_target_is_registered_and_runnable():
    targets, precisions = _targets()
    assert targets, "no conversion target registered"
    for name, t in targets.items():
        cls = runtime_for(f"x{t.suffix}")
        assert cls is not None and cls.format == name, f"{name}: no runtime opens {t.suffix} files as {name}"
        assert set(t.precisions) <= set(precisions) and t.embed is not None and t.requires


def test_the_int8_package_names_no_target():
    """converters/int8/ is format-free (a new target touches only its folder): none of its modules imports a
    target module or holds a registered target's name as a string or a name; what differs per format comes
    from the registry (mixed=, graph=, float_model=, controls=)."""
    import ast

    from edgepose.converters import int8

    targets, _ = _targets()
    files = sorted(Path(int8.__file__).parent.glob("*.py"))
    assert {f.name for f in files} >= {"control.py", "check.py", "search.py", "ranking.py", "report.py"}
    for f in files:
        tree = ast.parse(f.read_text())
        # a library imported by name (``import onnx``: the exported graph every target starts from) is not a target
        libraries = {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "targets" not in (node.module or "").split("."), f"{f.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(".targets" in a.name for a in node.names), f"{f.name} imports a target"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in targets, f"{f.name} names the target {node.value!r}"
            elif isinstance(node, (ast.Name, ast.Attribute)):
                name = node.id if isinstance(node, ast.Name) else node.attr
                assert name not in targets or (isinstance(node, ast.Name) and name in libraries), \
                    f"{f.name} names the target {name!r}"
    for name, t in targets.items():  # each target of this repository brings its INT8 parts
        assert callable(t.mixed) and callable(t.graph), f"{name}: no mixed-precision builder or graph reader"


# ------------------------------------------------------------------------------------------ datasets
def test_every_zoo_dataset_has_a_reader_and_scorer():
    assert {m.dataset for m in MODELS.values()} <= set(DATASET_KINDS)
    assert set(DATASET_KINDS) <= set(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASET_KINDS))
def test_ground_truth_scores_perfect_on_the_headline_metric(name):
    """Read the sample set in its own format, hand the ground truth back as predictions: the dataset's own
    scorer must give its headline metric 1.0 (score 1 at every annotated keypoint)."""
    ann = require(SAMPLES / name / f"test_{name}.json")
    spec = get_spec(next(m.name for m in MODELS.values() if m.dataset == name))
    ds = load_dataset(name, ann, ann.parent, spec)
    kind = DATASET_KINDS[name]
    gt = ds.stack("keypoints").astype(np.float32)
    preds = np.concatenate([gt[..., :2], np.ones_like(gt[..., :1])], axis=-1)
    metrics = kind.score(ds, preds)
    assert kind.headline in metrics, (name, sorted(metrics))
    assert metrics[kind.headline] == pytest.approx(1.0), (name, metrics)
    assert json.loads(json.dumps(metrics)) == metrics  # plain JSON numbers


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--model", "bogus"],
        ["predict", "img.jpg", "--model", "bogus", "--out", "x.png"],
        ["eval", "--model", "bogus", "--out", "m.json"],
        ["convert", "--model", "bogus"],
        ["calibrate", "--model", "bogus", "--images", ".", "--out", "c.npz"],
    ],
    ids=lambda a: a[0],
)
def test_unknown_model_is_one_line_naming_the_known_ones(argv, capsys, tmp_path, monkeypatch):
    from edgepose.cli import main

    monkeypatch.chdir(tmp_path)
    if argv[0] == "predict":
        import cv2

        cv2.imwrite("img.jpg", np.zeros((8, 8, 3), np.uint8))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgepose: error: unknown model 'bogus'; known models: ")
    assert "coco_256x192" in err[0] and list(tmp_path.iterdir()) in ([], [tmp_path / "img.jpg"])
