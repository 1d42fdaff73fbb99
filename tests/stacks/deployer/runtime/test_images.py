"""Offline images: built from busybox-static, reused unless asked to rebuild."""

from __future__ import annotations

import subprocess

import pytest

from stacks.deployer.runtime.images import ImageBuildError, build_busybox_image
from stacks.deployer.runtime.podman import PODMAN_BASE

pytestmark = pytest.mark.podman


def image_id(tag: str) -> str:
    return subprocess.run(
        [*PODMAN_BASE, "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_example_image_runs_its_script_with_busybox(example_image: str) -> None:
    out = subprocess.run(
        [
            *PODMAN_BASE,
            "run",
            "--rm",
            "-e",
            "PORT=1",
            example_image,
            "/bin/sh",
            "-c",
            "echo $PATH; ls /bin/httpd",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["/bin", "/bin/httpd"]


def test_an_existing_tag_is_reused_unless_rebuild(example_image: str) -> None:
    before = image_id(example_image)
    assert build_busybox_image(example_image, "exit 0\n") == example_image
    assert image_id(example_image) == before


def test_a_bad_tag_is_one_clear_error() -> None:
    with pytest.raises(ImageBuildError, match="podman import of Not A Tag failed"):
        build_busybox_image("Not A Tag", "exit 0\n")
