"""Checkpoints in mmpose's published layout load strictly; anything else fails naming what is wrong."""

from __future__ import annotations

import hashlib

import pytest

torch = pytest.importorskip("torch")

from edgepose import MODELS, EdgeposeError  # noqa: E402
from edgepose.checkpoint import download_checkpoint, read_state_dict, resolve_checkpoint  # noqa: E402
from edgepose.models import build_model, load_model  # noqa: E402
from tests.helpers import mmpose_checkpoint, mmpose_keys  # noqa: E402

REAL_MODELS = [n for n in MODELS if not n.startswith("demo_")]


def test_key_list_matches_model_exactly():
    expected = mmpose_keys(17)
    state = build_model("coco_256x192").state_dict()
    assert len(expected) == 332
    assert [(k, list(v.shape)) for k, v in state.items()] == expected


@pytest.mark.parametrize("name", REAL_MODELS)
def test_mmpose_layout_checkpoint_loads_strictly(tmp_path, name):
    spec = MODELS[name]
    path = mmpose_checkpoint(tmp_path / f"{name}.pth", spec.num_keypoints, seed=1)
    model = load_model(spec, str(path))
    ref = torch.load(path, weights_only=True)["state_dict"]
    got = model.state_dict()
    assert set(got) == set(ref)
    keys = ("backbone.conv1.conv.weight", "keypoint_head.final_layer.bias", "backbone.layer7.0.conv.2.bn.running_var")
    for k in keys:
        assert torch.equal(got[k], ref[k])
    assert got["keypoint_head.final_layer.weight"].shape[0] == spec.num_keypoints
    # parameter counts from the spec (K=17: 9,569,809; K=16: 9,569,552; K=21: 9,570,837)
    counts = {17: 9_569_809, 16: 9_569_552, 21: 9_570_837}
    assert sum(p.numel() for p in model.parameters()) == counts[spec.num_keypoints]


def test_bare_state_dict_and_module_prefix_load(tmp_path):
    path = mmpose_checkpoint(tmp_path / "a.pth")
    state = torch.load(path, weights_only=True)["state_dict"]
    torch.save(state, tmp_path / "bare.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    for p in ("bare.pth", "ddp.pth"):
        m = load_model("coco_256x192", str(tmp_path / p))
        assert torch.equal(m.state_dict()["backbone.conv2.conv.weight"], state["backbone.conv2.conv.weight"])


def _renamed(state):
    state["backbone.conv1.conv.kernel"] = state.pop("backbone.conv1.conv.weight")
    return state


def _reshaped(state):
    state["backbone.layer3.1.conv.1.conv.weight"] = torch.zeros(192, 1, 5, 5)
    return state


@pytest.mark.parametrize(
    "mutate, words",
    [
        (_renamed, ["missing key(s): backbone.conv1.conv.weight", "unexpected key(s): backbone.conv1.conv.kernel"]),
        (_reshaped, ["backbone.layer3.1.conv.1.conv.weight [192, 1, 5, 5] (model expects [192, 1, 3, 3])"]),
    ],
)
def test_mismatched_checkpoint_names_the_key(tmp_path, mutate, words):
    path = mmpose_checkpoint(tmp_path / "bad.pth", mutate=mutate)
    with pytest.raises(EdgeposeError) as e:
        load_model("coco_256x192", str(path))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_wrong_keypoint_count_is_explained(tmp_path):
    path = mmpose_checkpoint(tmp_path / "hand.pth", num_keypoints=21)
    pattern = r"keypoint_head\.final_layer\.weight.*checkpoint has 21 keypoints, model expects 17"
    with pytest.raises(EdgeposeError, match=pattern):
        load_model("coco_256x192", str(path))


def test_truncated_and_foreign_files_fail_cleanly(tmp_path):
    good = mmpose_checkpoint(tmp_path / "good.pth")
    data = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("this is not a checkpoint\n")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    for name, pattern in [("trunc.pth", "damaged or truncated PyTorch checkpoint"),
                          ("text.pth", r"not a PyTorch checkpoint \(neither a zip archive nor a pickle\)"),
                          ("list.pth", "holds no state_dict")]:  # fmt: skip
        with pytest.raises(EdgeposeError, match=pattern) as e:
            read_state_dict(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on unpickling is rejected, not executed."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(EdgeposeError, match="refused") as e:
        read_state_dict(path)
    assert "weights_only" not in str(e.value)  # never advise the unsafe loader


def _named_with_hash(tmp_path, data: bytes, good: bool):
    digest = hashlib.sha256(data).hexdigest()[:8]
    prefix = digest if good else ("0" * 8 if digest != "0" * 8 else "1" * 8)
    src = tmp_path / "src" / f"mobilenetv2_test-{prefix}_20200727.pth"
    src.parent.mkdir()
    src.write_bytes(data)
    return src


@pytest.fixture
def serve(tmp_path):
    """``serve(path)``: an http:// URL for a file under ``tmp_path``, from a real HTTP server on loopback."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield lambda path: f"http://127.0.0.1:{server.server_address[1]}/{path.relative_to(tmp_path).as_posix()}"
    server.shutdown()


def _tiny_checkpoint(path, value: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.tensor([value])}}, path)
    return path


def test_download_verifies_hash_prefix_and_caches(tmp_path, monkeypatch, serve):
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    data = mmpose_checkpoint(tmp_path / "c.pth").read_bytes()
    src = _named_with_hash(tmp_path, data, good=True)
    url = serve(src)
    path = resolve_checkpoint(url, progress=False)
    assert path.parent.parent == tmp_path / "cache" / "checkpoints" and path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not torch.hub's private temp-file mode
    src.unlink()  # a second call uses the cache
    assert resolve_checkpoint(url, progress=False) == path
    load_model("coco_256x192", url)


def test_file_urls_are_read_in_place_and_checked(tmp_path, monkeypatch):
    """A file:// source is a local file: never copied into the cache; its name's hash prefix is still checked."""
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    data = mmpose_checkpoint(tmp_path / "c.pth").read_bytes()
    good = _named_with_hash(tmp_path, data, good=True)
    assert resolve_checkpoint(good.as_uri(), progress=False) == good
    (tmp_path / "b").mkdir()
    bad = _named_with_hash(tmp_path / "b", data, good=False)
    with pytest.raises(EdgeposeError, match="does not match the expected"):
        resolve_checkpoint(bad.as_uri(), progress=False)
    assert not (tmp_path / "cache" / "checkpoints").exists()  # (the cache of file hashes may be there)


def test_a_download_that_does_not_load_is_not_cached(tmp_path, monkeypatch, serve):
    """A pickle that would run code, downloaded: refused, and no file, record or folder stays in the cache."""
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "srv" / "code.pth"
    src.parent.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": print}, src)
    with pytest.raises(EdgeposeError, match="refused: it holds Python objects"):
        resolve_checkpoint(serve(src), progress=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*"))


def _umask() -> int:
    import os

    m = os.umask(0)
    os.umask(m)
    return m


def test_cache_is_keyed_by_url_and_rechecked(tmp_path, monkeypatch, serve):
    """Two URLs with one file name get two cache files; a cache file changed on disk is fetched again."""
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    a = _tiny_checkpoint(tmp_path / "a" / "weights.pth", 1.0)
    b = _tiny_checkpoint(tmp_path / "b" / "weights.pth", 2.0)
    pa = download_checkpoint(serve(a), progress=False)
    pb = download_checkpoint(serve(b), progress=False)
    assert pa != pb and pa.read_bytes() == a.read_bytes() and pb.read_bytes() == b.read_bytes()
    pa.write_bytes(b"tampered")  # the recorded sha256 no longer matches: downloaded again
    assert download_checkpoint(serve(a), progress=False).read_bytes() == a.read_bytes()


def test_explicit_sha256_is_checked(tmp_path, monkeypatch, serve):
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "cache"))
    src = _tiny_checkpoint(tmp_path / "w.pth", 3.0)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    assert download_checkpoint(serve(src), progress=False, sha256=good).read_bytes() == src.read_bytes()
    with pytest.raises(EdgeposeError, match="does not match"):
        resolve_checkpoint(str(src), sha256="0" * 64)
    with pytest.raises(EdgeposeError, match="expected a hex sha256"):
        resolve_checkpoint(str(src), sha256="xyz")


def test_download_refuses_hash_mismatch_and_leaves_nothing(tmp_path):
    src = _named_with_hash(tmp_path, b"corrupted bytes", good=False)
    dest = tmp_path / "cache"
    with pytest.raises(EdgeposeError, match="does not match the expected prefix"):
        download_checkpoint(src.as_uri(), dest_dir=dest, progress=False)
    assert not dest.exists()  # not even the folder it made


def test_offline_url_says_to_pass_checkpoint(tmp_path):
    # port 9 (discard) on loopback is closed: the connection is refused at once, as offline
    with pytest.raises(EdgeposeError, match=r"cannot download checkpoint .*pass --checkpoint PATH"):
        download_checkpoint("http://127.0.0.1:9/mobilenetv2_x-d1e58e7b_20200727.pth", dest_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
