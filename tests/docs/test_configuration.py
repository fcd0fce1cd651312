"""docs/configuration.md lists every setting settings.py has (regenerate it when this fails)."""

from __future__ import annotations

import runpy

from tests.conftest import ROOT


def test_configuration_doc_is_current() -> None:
    generator = runpy.run_path(str(ROOT / "scripts" / "configuration_doc.py"))
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == generator["render"](), "run: python scripts/configuration_doc.py"
    for env, *_ in generator["rows"]():
        assert f"`{env}`" in written
