"""Write derf_zoo/data/assets/digits.npz from scikit-learn's copy of the UCI handwritten digits.

The 1,797 real 8x8 images (pixel values 0..16) and labels are embedded in the package so the demo and
the tests need neither scikit-learn nor a download. Source: E. Alpaydin and C. Kaynak, "Optical
Recognition of Handwritten Digits", UCI Machine Learning Repository (CC BY 4.0), as shipped in
scikit-learn's sklearn/datasets/data/digits.csv.gz.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

if __name__ == "__main__":
    digits = load_digits()
    out = Path(__file__).resolve().parents[1] / "derf_zoo" / "data" / "assets" / "digits.npz"
    np.savez_compressed(out, images=digits.images.astype(np.uint8), labels=digits.target.astype(np.uint8))
    print(f"wrote {out} ({out.stat().st_size} bytes): images {digits.images.shape}, labels {digits.target.shape}")
