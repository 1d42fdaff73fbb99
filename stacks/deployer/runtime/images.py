"""Container images built offline from the host's busybox-static binary.

No registry is reachable from the machines pier runs its local environment and tests on, so the
example service (and the test images) are a busybox rootfs imported with `podman import`.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from stacks.deployer.runtime.podman import PODMAN_BASE

BUSYBOX = Path("/bin/busybox")
EXAMPLE_IMAGE = "localhost/pier-example:1"
EXAMPLE_HEALTH_PATH = "/healthz"

# Applets the images' scripts use; each becomes a symlink to busybox in /bin.
_APPLETS = ("sh", "httpd", "echo", "cat", "sleep", "mkdir", "date", "env")

# Serves `/` (body: $GREETING) and /healthz on $PORT. busybox httpd as PID 1 ignores SIGTERM,
# which is why the driver stops containers with a zero timeout.
EXAMPLE_SCRIPT = """\
mkdir -p /www
echo "${GREETING:-hello from pier}" > /www/index.html
echo ok > /www/healthz
echo "example: serving on port ${PORT:?PORT is not set}"
exec httpd -f -v -p "$PORT" -h /www
"""


class ImageBuildError(RuntimeError):
    """The image could not be built; the message says why."""


def build_busybox_image(tag: str, script: str, *, rebuild: bool = False) -> str:
    """Build `tag` from busybox-static running `script` with sh; returns `tag`.

    An existing image with that tag is reused unless `rebuild` is set, so repeated `invoke up`
    runs do not pile up image layers.
    """
    if not BUSYBOX.exists():
        raise ImageBuildError(
            f"{BUSYBOX} is missing: install it with `apt-get install -y busybox-static`"
        )
    if not rebuild and _image_exists(tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="pier-image-") as tmp:
        root = Path(tmp) / "rootfs"
        (root / "bin").mkdir(parents=True)
        (root / "tmp").mkdir()
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for applet in _APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "entrypoint.sh").write_text(script)
        tarball = Path(tmp) / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(root, arcname=".")
        result = subprocess.run(
            [
                *PODMAN_BASE,
                "import",
                "--change",
                'CMD ["/bin/sh", "/entrypoint.sh"]',
                "--change",
                "ENV PATH=/bin",
                str(tarball),
                tag,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise ImageBuildError(f"podman import of {tag} failed: {result.stderr.strip()}")
    return tag


def build_example_image(tag: str = EXAMPLE_IMAGE) -> str:
    """Build pier's example HTTP service offline; returns the image reference."""
    return build_busybox_image(tag, EXAMPLE_SCRIPT)


def _image_exists(tag: str) -> bool:
    return (
        subprocess.run([*PODMAN_BASE, "image", "exists", tag], capture_output=True).returncode == 0
    )
