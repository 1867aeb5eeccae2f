"""The CycloneDX SBOM that scripts/security-scan writes (artifacts/sbom.cdx.json) lists the
runtime dependencies, at the releases this venv runs, with the hashes of the lock."""

from __future__ import annotations

import importlib.metadata

import pytest

from tests.security import scan


@pytest.fixture(scope="module")
def bom(tmp_path_factory):
    return scan.write_sbom(tmp_path_factory.mktemp("sbom") / "sbom.cdx.json")


def components(bom: dict) -> dict[str, dict]:
    return {c["name"].lower(): c for c in bom["components"]}


def test_sbom_is_cyclonedx_about_authsvc(bom):
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"].startswith("1.")
    assert bom["metadata"]["component"]["name"] == "authsvc"


@pytest.mark.parametrize("distribution", ["Flask", "argon2-cffi", "Werkzeug", "SQLAlchemy"])
def test_runtime_dependencies_are_components_at_the_installed_release(bom, distribution):
    component = components(bom).get(distribution.lower())
    assert component, f"{distribution} is not in the SBOM"
    assert component["version"] == importlib.metadata.version(distribution)
    assert component["purl"] == f"pkg:pypi/{distribution.lower()}@{component['version']}"
    hashes = [h for ref in component.get("externalReferences", []) for h in ref.get("hashes", [])]
    assert hashes and all(h["alg"] == "SHA-256" for h in hashes)


def test_test_tools_are_not_runtime_components(bom):
    assert not {"pytest", "bandit", "cyclonedx-bom", "uv"} & set(components(bom))


def test_security_scan_writes_the_sbom(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scan, "scan", lambda root, audit=True: [])
    out = tmp_path / "artifacts" / "sbom.cdx.json"
    assert scan.main(["--no-audit", "--sbom", str(out)]) == 0
    assert out.is_file() and f"written to {out}" in capsys.readouterr().out


def test_an_sbom_that_cannot_be_written_fails_the_scan(tmp_path, capsys, monkeypatch):
    with pytest.raises(RuntimeError, match="cyclonedx-py did not write the SBOM"):
        scan.write_sbom(tmp_path / "sbom.cdx.json", lock=tmp_path / "missing.lock")

    def broken(out):
        raise RuntimeError("cyclonedx-py did not write the SBOM: boom")
    monkeypatch.setattr(scan, "scan", lambda root, audit=True: [])
    monkeypatch.setattr(scan, "write_sbom", broken)
    assert scan.main(["--no-audit", "--sbom", str(tmp_path / "sbom.cdx.json")]) == 1
    out = capsys.readouterr().out
    assert "== sbom: ERROR" in out and "boom" in out and "security scan: FAILED" in out
