"""The golden store: round trip, atomic writes, refusal to overwrite, integrity checks."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from parity import golden as golden_mod
from parity.errors import GoldenCorruptError, GoldenError, GoldenExistsError, GoldenMissingError
from parity.golden import GoldenStore
from tests.conftest import tree_bytes

INPUTS = {"x": np.arange(12, dtype=np.float32).reshape(4, 3)}
OUTPUTS = {"y": np.arange(8, dtype=np.float32).reshape(4, 2)}
MANIFEST = {"num_samples": 4, "weights_sha256": "0" * 64, "created": "now"}


def _store(tmp_path: Path) -> GoldenStore:
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", INPUTS, OUTPUTS, MANIFEST)
    return store


def test_round_trip(tmp_path: Path) -> None:
    golden = _store(tmp_path).load("m", "default")
    np.testing.assert_array_equal(golden.inputs["x"], INPUTS["x"])
    np.testing.assert_array_equal(golden.outputs["y"], OUTPUTS["y"])
    assert golden.num_samples == 4
    files = golden.manifest["files"]
    assert files["inputs.npz"]["sha256"] == golden_mod.sha256_file(golden.path / "inputs.npz")


def test_missing_golden_names_the_create_command(tmp_path: Path) -> None:
    with pytest.raises(GoldenMissingError, match="python -m parity mode=golden model=m"):
        GoldenStore(tmp_path).load("m", "default")


def test_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = tree_bytes(store.root)
    with pytest.raises(GoldenExistsError, match="golden.overwrite=true"):
        store.write("m", "default", {"x": INPUTS["x"] + 1}, OUTPUTS, MANIFEST)
    assert tree_bytes(store.root) == before
    store.write("m", "default", {"x": INPUTS["x"] + 1}, OUTPUTS, MANIFEST, overwrite=True)
    np.testing.assert_array_equal(store.load("m", "default").inputs["x"], INPUTS["x"] + 1)
    assert sorted(p.name for p in (store.root / "m").iterdir()) == ["default"]  # no staging/backup left


def test_interrupted_write_leaves_previous_golden_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    before = tree_bytes(store.root)
    calls = {"n": 0}
    real = np.savez_compressed

    def dies_on_second_file(*args, **kwargs):  # the process "dies" between the two array files
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(golden_mod.np, "savez_compressed", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        store.write("m", "default", {"x": INPUTS["x"] * 0}, OUTPUTS, MANIFEST, overwrite=True)
    assert tree_bytes(store.root) == before
    store.load("m", "default")


def test_failed_swap_restores_the_previous_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    before = tree_bytes(store.root)
    real = golden_mod.os.replace
    calls = {"n": 0}

    def second_rename_fails(src, dst):  # old -> backup succeeds, staging -> final fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(golden_mod.os, "replace", second_rename_fails)
    with pytest.raises(GoldenError, match="cannot write the golden .*disk full"):
        store.write("m", "default", {"x": INPUTS["x"] * 0}, OUTPUTS, MANIFEST, overwrite=True)
    monkeypatch.setattr(golden_mod.os, "replace", real)
    assert tree_bytes(store.root) == before


def test_golden_left_aside_by_a_killed_swap_is_recovered(tmp_path: Path) -> None:
    store = _store(tmp_path)
    final = store.path("m", "default")
    final.rename(final.parent / ".default.old-abc123")  # an older parity's backup, left by a kill mid-swap
    before = tree_bytes(store.root)
    golden = store.load("m", "default")  # read where it lies: a reader writes nothing
    np.testing.assert_array_equal(golden.inputs["x"], INPUTS["x"])
    assert tree_bytes(store.root) == before
    store.tidy("m", "default")  # what every write does first
    assert sorted(p.name for p in final.parent.iterdir()) == ["default"]
    np.testing.assert_array_equal(store.load("m", "default").inputs["x"], INPUTS["x"])


def test_readonly_roots_forbid_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(golden_mod.READONLY_ENV, str(tmp_path / "protected"))
    with pytest.raises(GoldenExistsError, match="disabled"):
        GoldenStore(tmp_path / "protected").write("m", "default", INPUTS, OUTPUTS, MANIFEST)
    assert not (tmp_path / "protected").exists()
    GoldenStore(tmp_path / "free").write("m", "default", INPUTS, OUTPUTS, MANIFEST)


def _refused_untouched(store: GoldenStore, match: str) -> None:
    """Loading raises GoldenCorruptError matching `match`, and no file below the root changes."""
    before = tree_bytes(store.root)
    with pytest.raises(GoldenCorruptError, match=match):
        store.load("m", "default")
    assert tree_bytes(store.root) == before


def test_flipped_byte_fails_hash_check(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = store.path("m", "default") / "outputs.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    _refused_untouched(store, "SHA-256")


def test_truncated_file_fails(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = store.path("m", "default") / "inputs.npz"
    path.write_bytes(path.read_bytes()[:40])
    _refused_untouched(store, "changed or truncated")


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        arr = io.BytesIO()
        np.save(arr, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        zf.writestr("x.npy", arr.getvalue())
    return buffer.getvalue()


def test_pickled_array_is_refused_even_with_a_matching_hash(tmp_path: Path) -> None:
    store = _store(tmp_path)
    gdir = store.path("m", "default")
    (gdir / "inputs.npz").write_bytes(_pickled_npz())
    manifest = json.loads((gdir / "manifest.json").read_text())
    manifest["files"]["inputs.npz"]["sha256"] = golden_mod.sha256_file(gdir / "inputs.npz")  # attacker fixes the hash
    (gdir / "manifest.json").write_text(json.dumps(manifest))
    _refused_untouched(store, "pickled")


def test_unreadable_manifest(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.path("m", "default") / "manifest.json").write_text("{not json")
    _refused_untouched(store, "unreadable")


def test_a_write_replaces_only_the_golden_of_the_same_model_and_set(tmp_path: Path) -> None:
    store = _store(tmp_path)
    other = store.root / "n" / "default"
    other.parent.mkdir()
    (store.root / "m" / "default").rename(other)  # a golden of model m, sitting where n's would go
    before = tree_bytes(store.root)
    with pytest.raises(GoldenExistsError, match="is the golden of model 'm', input set 'default', not of model 'n'"):
        store.write("n", "default", INPUTS, OUTPUTS, MANIFEST, overwrite=True)
    (store.root / "p" / "default").mkdir(parents=True)
    (store.root / "p" / "default" / "notes.txt").write_text("not a golden")
    before = tree_bytes(store.root)
    with pytest.raises(GoldenExistsError, match="holds no readable golden manifest"):
        store.write("p", "default", INPUTS, OUTPUTS, MANIFEST, overwrite=True)
    assert tree_bytes(store.root) == before


@pytest.mark.parametrize("model, input_set", [("m", ""), ("m", "."), ("", "default"), ("..", "x"), ("m/n", "d")])
def test_names_that_are_not_one_path_segment_are_refused(tmp_path: Path, model: str, input_set: str) -> None:
    from parity.errors import ConfigError

    store = _store(tmp_path)
    before = tree_bytes(store.root)
    with pytest.raises(ConfigError):
        store.write(model, input_set, INPUTS, OUTPUTS, MANIFEST, overwrite=True)
    with pytest.raises(ConfigError):
        store.load(model, input_set)
    assert tree_bytes(store.root) == before


def test_a_well_formed_npz_with_other_values_fails_the_hash_check(tmp_path: Path) -> None:
    """The npz CRC rejects flipped bytes by itself; only the SHA-256 catches a valid archive holding other values."""
    store = _store(tmp_path)
    gdir = store.path("m", "default")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, y=OUTPUTS["y"] + 1)
    (gdir / "outputs.npz").write_bytes(buffer.getvalue())
    _refused_untouched(store, "fails its SHA-256 check")


def test_symlinked_golden_directories_are_refused_even_inside_the_root(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.root / "a").symlink_to(store.root / "m")  # model a would read, or write, model m's goldens
    with pytest.raises(GoldenError, match="is a symlink"):
        store.load("a", "default")
    with pytest.raises(GoldenError, match="is a symlink"):
        store.write("a", "u2", INPUTS, OUTPUTS, MANIFEST)
    (store.root / "m" / "s").symlink_to(store.root / "m" / "default")
    with pytest.raises(GoldenError, match="is a symlink"):
        store.load("m", "s")
    assert not (store.root / "m" / "u2").exists()


def test_a_golden_read_under_another_name_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.root / "m" / "default").rename(store.root / "m" / "other")
    with pytest.raises(GoldenCorruptError, match="belongs to model 'm', input set 'default', not model 'm', "
                                                 "input set 'other'"):
        store.load("m", "other")
