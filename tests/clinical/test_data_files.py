"""The shipped reference data read the same with libyaml's fast loader as with PyYAML's own."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from bonecast.clinical._data import read_data

DATA = resources.files("bonecast.clinical").joinpath("data")


@pytest.mark.parametrize(
    "name", sorted(p.name for p in DATA.iterdir() if p.name.endswith((".yaml", ".yml")))
)
def test_every_data_file_decodes_as_with_the_pure_python_loader(name: str) -> None:
    """Rules, tables and sources are the same whichever YAML loader ``read_data`` uses."""
    assert read_data(name) == yaml.safe_load(DATA.joinpath(name).read_text("utf-8"))
