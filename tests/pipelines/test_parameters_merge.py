"""Runtime parameters (``kedro run --params``) change only the keys they name.

Kedro merges the runtime parameters into conf/base and into conf/local separately; with its
default "destructive" merge conf/local then replaces whole top-level keys, so that
``--params=threshold.method.keep_fraction=…`` would leave ``threshold`` with nothing but that
key and ``--params=model.architecture=conv6`` would drop every other ``model`` key.
settings.py asks for a soft (deep) merge of the parameters.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from kedro.framework.session import KedroSession



def _params(project: Path, runtime_params: dict) -> dict:
    with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
        return session.load_context().params


def test_nested_runtime_parameter_keeps_its_siblings(project: Path) -> None:
    # Any parameters file in conf/local (here one that sets only the seed) triggered the loss.
    (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump({"seed": 1}))
    base = yaml.safe_load((project / "conf" / "base" / "parameters_threshold.yml").read_text())
    params = _params(project, {"threshold": {"method": {"activation": "elu"}}, "defaults": {"training": {"epochs": 3}}})
    assert params["threshold"]["method"] == {**base["threshold"]["method"], "activation": "elu"}
    assert set(params["threshold"]) == set(base["threshold"])
    assert params["defaults"]["training"]["epochs"] == 3
    assert params["defaults"]["training"]["eval_batch_size"] == 2000  # from conf/base/parameters.yml
    assert params["seed"] == 1


def test_local_parameters_and_runtime_parameters_merge_deeply(project: Path) -> None:
    local = {"dense": {"training": {"epochs": 3}}, "aslp": {"training": {"epochs": 4}}}
    (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(local))
    base = yaml.safe_load((project / "conf" / "base" / "parameters_dense.yml").read_text())["dense"]
    runtime = {"dense": {"training": {"batch_size": 7}}, "aslp": {"method": {"temperature": 0.5}}}
    params = _params(project, runtime)
    assert params["dense"]["training"]["epochs"] == 3  # conf/local
    assert params["dense"]["training"]["batch_size"] == 7  # --params
    untouched = set(base["training"]) - {"epochs", "batch_size"}
    assert untouched and all(params["dense"]["training"][k] == base["training"][k] for k in untouched)
    assert params["dense"]["init"] == base["init"]
    assert params["aslp"]["training"]["epochs"] == 4
    assert params["aslp"]["method"]["temperature"] == 0.5
    assert params["aslp"]["method"]["name"] == "aslp"
