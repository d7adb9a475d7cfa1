"""Local images built in pure Python, and `kates images import | ls | rm` against a real containerd."""
from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from kates.cli import images as cli
from kates.runtime import cri_available, images


def _layer(archive: bytes) -> tuple[dict, tarfile.TarFile]:
    outer = tarfile.open(fileobj=io.BytesIO(archive))
    manifest = json.load(outer.extractfile("manifest.json"))[0]
    config = json.load(outer.extractfile(manifest["Config"]))
    layer = tarfile.open(fileobj=io.BytesIO(outer.extractfile(manifest["Layers"][0]).read()))
    return {"manifest": manifest, "config": config}, layer


def test_busybox_image_is_reproducible_with_every_applet():
    first = images.build_busybox()
    assert first == images.build_busybox()        # fixed mtimes and order: same digest on every machine
    meta, layer = _layer(first)
    assert meta["manifest"]["RepoTags"] == ["localhost/busybox:latest"]
    assert meta["config"]["config"]["Cmd"] == ["sh"]
    members = {m.name: m for m in layer.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode & 0o111
    applets = subprocess.run(["busybox", "--list-full"], capture_output=True, text=True).stdout.split()
    for applet in applets:
        assert applet in members, applet
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    passwd = layer.extractfile("etc/passwd").read().decode()
    assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:65534:" in passwd
    assert "nobody:x:65534:" in layer.extractfile("etc/group").read().decode()


def test_pause_image_runs_catatonit_in_pause_mode():
    meta, layer = _layer(images.build_pause())
    assert meta["manifest"]["RepoTags"] == ["localhost/pause:3.9"]
    assert meta["config"]["config"]["Entrypoint"] == ["/pause", "-P"]
    assert layer.getmember("pause").size == Path(images.CATATONIT_BINARY).stat().st_size


@pytest.mark.skipif(not cri_available(), reason="needs root and containerd")
def test_images_cli_import_ls_rm(capsys):
    from kates.runtime.containerd import Containerd
    data_dir = Path(tempfile.mkdtemp(prefix="kt", dir="/tmp"))
    loop = asyncio.new_event_loop()
    containerd = Containerd(data_dir)
    loop.run_until_complete(containerd.start())
    try:
        busybox = images.ensure_archive(data_dir / "cache", images.BUSYBOX_IMAGE)
        named = data_dir / "named.tar"
        unnamed = data_dir / "unnamed.tar"
        subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{busybox}", f"oci-archive:{named}:localhost/app:2"],
                       check=True)
        subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{busybox}", f"oci-archive:{unnamed}"], check=True)
        assert cli.main(["import", str(busybox)], data_dir) == 0          # docker-archive
        assert cli.main(["import", str(named)], data_dir) == 0            # OCI archive with a name
        assert cli.main(["import", str(unnamed)], data_dir) == 2          # nameless OCI archive needs --name
        assert "--name" in capsys.readouterr().err
        assert cli.main(["import", str(unnamed), "--name", "localhost/other"], data_dir) == 0
        assert cli.main(["ls"], data_dir) == 0
        listing = capsys.readouterr().out
        for ref in ("localhost/busybox:latest", "localhost/app:2", "localhost/other:latest"):
            assert ref in listing
        assert cli.main(["rm", "localhost/app:2"], data_dir) == 0         # untags only: other shares the image
        assert cli.main(["rm", "localhost/nope:1"], data_dir) == 1
        capsys.readouterr()
        cli.main(["ls"], data_dir)
        listing = capsys.readouterr().out
        assert "localhost/app:2" not in listing and "localhost/other:latest" in listing
        assert cli.main(["ls"], data_dir / "missing") == 1
    finally:
        loop.run_until_complete(containerd.stop())
        loop.close()
        shutil.rmtree(data_dir, ignore_errors=True)
