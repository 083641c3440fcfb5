from __future__ import annotations

import itertools
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from appliance import Appliance  # noqa: E402

_names = itertools.count(1)


@pytest.fixture(scope="session")
def appliance(tmp_path_factory):
    app = Appliance(tmp_path_factory.mktemp("appliance") / "data").start()
    yield app
    app.stop()


@pytest.fixture
def obs_server(appliance, request):
    """A fresh appliance-side server (its own id and key) per test: (server_id, api_key)."""
    name = f"{request.node.name[:60]}-{next(_names)}"
    return appliance.create_server(name)
